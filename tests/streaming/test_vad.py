"""EndpointDetector: start, trailing silence, forced cut — on frame decisions alone."""

from __future__ import annotations

from streaming.vad import (
    FRAME_MS,
    FRAME_SAMPLES,
    EndpointDetector,
    EndpointOptions,
    FrameClassifier,
    SpeechEnded,
    SpeechStarted,
)

OPTS = EndpointOptions(start_window_ms=150, start_ratio=0.6, end_silence_ms=300,
                       pre_roll_ms=90, max_segment_ms=3000)


def run(decisions: list[bool], options: EndpointOptions = OPTS):
    detector = EndpointDetector(options)
    events = []
    for voiced in decisions:
        events.extend(detector.update(voiced))
    return detector, events


def frames(ms: int, voiced: bool) -> list[bool]:
    return [voiced] * (ms // FRAME_MS)


def test_speech_starts_once_enough_of_the_window_is_voiced_with_pre_roll():
    _, events = run(frames(600, False) + frames(300, True))
    assert len(events) == 1 and isinstance(events[0], SpeechStarted)
    first_voiced = 600 // FRAME_MS * FRAME_SAMPLES
    assert events[0].start == first_voiced - 90 * 16


def test_isolated_clicks_do_not_start_speech():
    _, events = run((frames(30, True) + frames(120, False)) * 10)
    assert events == []


def test_utterance_ends_after_the_configured_trailing_silence():
    _, events = run(frames(300, False) + frames(900, True) + frames(600, False))
    started, ended = events
    assert isinstance(ended, SpeechEnded) and not ended.forced
    speech_end = 1200 // FRAME_MS * FRAME_SAMPLES
    assert ended.speech_end == speech_end
    assert ended.end == speech_end + 300 * 16  # exactly end_silence_ms later


def test_pause_shorter_than_end_silence_keeps_one_utterance():
    _, events = run(frames(900, True) + frames(240, False) + frames(900, True) + frames(600, False))
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]


def test_long_speech_is_cut_at_max_length_and_continues():
    _, events = run(frames(7000, True))
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, SpeechEnded, SpeechStarted, SpeechEnded, SpeechStarted]
    cut = events[1]
    assert cut.forced and cut.end - events[0].start == 3000 * 16
    assert events[2].start == cut.end  # no gap, no overlap


def test_next_utterance_never_overlaps_the_previous_one():
    _, events = run(frames(600, True) + frames(300, False) + frames(600, True))
    ended, restarted = events[1], events[2]
    assert restarted.start >= ended.end


def test_flush_closes_an_open_utterance_at_stream_end():
    detector, events = run(frames(600, True))
    (ended,) = detector.flush(stream_end=12345)
    assert ended.end == 12345 and not ended.forced
    assert detector.flush(20000) == []


def test_vad_on_client_pcm16_decides_as_on_its_float_conversion():
    """16 kHz clients' bytes go to webrtcvad as they are (no float round trip):
    the decisions must be those of the float path, frame for frame."""
    from pathlib import Path

    import soundfile

    from streaming.audio import pcm16_to_float

    pcm, _ = soundfile.read(Path(__file__).parents[1] / "data" / "multi.wav", dtype="int16")
    data = pcm.tobytes()[: 2 * FRAME_SAMPLES * (len(pcm) // FRAME_SAMPLES)]
    from_bytes = FrameClassifier(2).classify_pcm(data)  # webrtcvad keeps state: one each
    assert from_bytes == FrameClassifier(2).classify(pcm16_to_float(data))
    assert 0 < sum(from_bytes) < len(from_bytes)  # speech and pauses both present
