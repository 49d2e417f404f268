"""CaptionSession driven synchronously: bytes in, jobs run inline, events out."""

from __future__ import annotations

import json

import pytest

from streaming.errors import INVALID_PAYLOAD, MESSAGE_TOO_BIG, POLICY_VIOLATION, TRY_AGAIN_LATER
from streaming.events import Error, Final, Partial, StreamEnd, StreamStarted
from streaming.session import CaptionSession, SessionLimits, SessionState
from tests.conftest import DATA, wav_pcm16
from tests.session_driver import decode_upload, run_jobs, stream_session
from tests.streaming.engine_double import StrideCountingEngine


def stream(pcm: bytes, frame_bytes: int, mode: str = "2pass", rate: int = 16000, **cfg):
    return stream_session(StrideCountingEngine(), pcm, frame_bytes, mode, rate, **cfg)


@pytest.fixture(scope="module")
def multi() -> bytes:
    return wav_pcm16("multi.wav")[0]


def test_2pass_stream_gives_partials_then_one_final_per_utterance(multi):
    _, events = stream(multi, 3200)
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.segment for f in finals] == [0, 1, 2]
    assert all(f.mode == "2pass-offline" for f in finals)
    for final in finals:  # every partial of an utterance comes before its final
        partial_positions = [i for i, e in enumerate(events)
                             if isinstance(e, Partial) and e.segment == final.segment]
        assert partial_positions and max(partial_positions) < events.index(final)
    assert all(p.mode == "2pass-online" for p in events if isinstance(p, Partial))
    # docs/design.md §4: is_final only on the very last message (multi.wav ends 0.5 s after
    # the speech, before the 0.7 s endpoint, so the last final closes the stream).
    assert [e.end_of_stream for e in events] == [False] * (len(events) - 1) + [True]
    assert events[-1] is finals[-1]


@pytest.mark.parametrize("mode, live", [("2pass", True), ("online", True), ("offline", False)])
def test_every_stream_reports_its_start_before_anything_else(mode, live):
    session = CaptionSession(StrideCountingEngine())
    session.receive_text(json.dumps({"mode": mode, "wav_name": "w"}), now=0.0)
    # authorisation (every stream) and admission (live ones) are decided on it
    assert session.events() == [StreamStarted(mode, "w", live=live)]
    session.receive_text(json.dumps({"is_speaking": False}), now=1.0)
    session.receive_text(json.dumps({"mode": mode, "wav_name": "x"}), now=2.0)
    assert [e for e in session.events() if isinstance(e, StreamStarted)] == [
        StreamStarted(mode, "x", live=live)]


def test_stream_ending_in_silence_closes_with_an_empty_message(multi):
    silence = b"\x00\x00" * 16000
    _, events = stream(multi + silence, 3200)
    assert isinstance(events[-1], StreamEnd) and events[-1].mode == "2pass-offline"
    assert not any(getattr(e, "end_of_stream", False) for e in events[:-1])


def test_utterance_boundaries_follow_the_pauses(multi):
    _, events = stream(multi, 3200)
    spans = [(f.start_ms, f.end_ms) for f in events if isinstance(f, Final)]
    speech = [(500, 3090), (4290, 6950), (8150, 10580)]  # tests/data/README.md
    for (start, end), (s_ref, e_ref) in zip(spans, speech, strict=True):
        assert s_ref - 400 <= start <= s_ref and e_ref - 100 <= end <= e_ref + 250
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # monotonic, no overlap


@pytest.mark.parametrize("frame_bytes", [320, 1234, 3200, 32000])
def test_results_do_not_depend_on_how_the_client_splits_bytes(multi, frame_bytes):
    _, reference = stream(multi, 32000)
    _, events = stream(multi, frame_bytes)
    assert events == reference


def test_partial_text_is_the_new_part_and_stable_holds_everything(multi):
    _, events = stream(multi, 3200)
    first = [e for e in events if isinstance(e, Partial) and e.segment == 0]
    appended = "".join(f"{p.text} " for p in first).split()
    assert appended == first[-1].stable.split()
    assert all(p.unstable == "~" for p in first)


def test_online_mode_has_no_final_pass_and_marks_utterance_ends(multi):
    session, events = stream(multi, 3200, mode="online")
    assert not any(isinstance(e, Final) for e in events)
    ends = [e for e in events if isinstance(e, Partial) and e.final]
    assert [e.segment for e in ends] == [0, 1, 2]
    assert all(e.text.endswith("<end>") for e in ends)
    assert session.engine.finals == []


def test_offline_mode_sends_only_finals(multi):
    session, events = stream(multi, 3200, mode="offline")
    assert [type(e) for e in events] == [Final, Final, Final]
    assert events[-1].end_of_stream
    assert session.engine.step_batches == []


def test_final_pass_gets_the_whole_utterance_audio(multi):
    session, events = stream(multi, 3200)
    for request, final in zip(session.engine.finals, (e for e in events if isinstance(e, Final))):
        assert final.text == f"{len(request.samples)} samples."
        assert len(request.samples) / 16 >= final.end_ms - final.start_ms


def test_stream_ending_mid_utterance_flags_that_final_as_last():
    pcm, _ = wav_pcm16("utt01.wav")
    cut = pcm[: len(pcm) * 3 // 4]  # ends while still speaking
    _, events = stream(cut, 3200)
    assert isinstance(events[-1], Final) and events[-1].end_of_stream
    assert not any(isinstance(e, StreamEnd) for e in events)


def test_resampled_48k_stream_finds_the_same_utterances(multi):
    pcm48, rate = wav_pcm16("multi_48k.wav")
    assert rate == 48000
    _, ref = stream(multi, 3200)
    _, events = stream(pcm48, 9600, rate=48000)
    spans = [(f.start_ms, f.end_ms) for f in events if isinstance(f, Final)]
    ref_spans = [(f.start_ms, f.end_ms) for f in ref if isinstance(f, Final)]
    assert len(spans) == len(ref_spans) == 3
    for (a, b), (c, d) in zip(spans, ref_spans):
        assert abs(a - c) <= 60 and abs(b - d) <= 60


@pytest.mark.parametrize("name", ["utt01.mp3", "utt01.flac", "utt01.wav"])
def test_encoded_upload_is_decoded_at_the_end(name):
    data = (DATA / name).read_bytes()
    fmt = name.rsplit(".", 1)[1]
    _, events = stream(data, 65536, mode="offline", wav_format=fmt)
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1 and finals[0].end_ms > 2000
    assert events[-1].end_of_stream or isinstance(events[-1], StreamEnd)


def test_a_new_config_after_the_end_starts_a_new_stream(multi):
    session, first = stream(multi[: 32000 * 4], 3200)
    session.receive_text(json.dumps({"mode": "offline", "wav_name": "second"}), now=200.0)
    session.receive_audio(multi, now=200.0)
    session.receive_text('{"is_speaking": false}', now=201.0)
    run_jobs(session)
    second = session.events()
    assert {e.wav_name for e in second} == {"second"}
    assert [e.segment for e in second if isinstance(e, Final)] == [0, 1, 2]


def test_disconnect_mid_utterance_still_finalises_it():
    pcm, _ = wav_pcm16("utt01.wav")
    session = CaptionSession(StrideCountingEngine())
    session.receive_text('{"mode": "2pass"}', now=0.0)
    session.receive_audio(pcm[: len(pcm) // 2], now=1.0)
    session.disconnect(now=2.0)
    run_jobs(session)
    finals = [e for e in session.events() if isinstance(e, Final)]
    assert len(finals) == 1 and finals[0].end_of_stream
    assert session.state is SessionState.CLOSED


# ---- bad input: each gives one clear Error event and closes ----------------


def error_of(session: CaptionSession) -> Error:
    errors = [e for e in session.events() if isinstance(e, Error)]
    assert len(errors) == 1 and session.state is SessionState.CLOSED
    return errors[0]


def configured(**cfg) -> CaptionSession:
    session = CaptionSession(StrideCountingEngine())
    session.receive_text(json.dumps({"mode": "2pass", **cfg}), now=0.0)
    return session


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"hi"', "{"])
def test_text_that_is_not_a_json_object_is_refused(text):
    session = CaptionSession(StrideCountingEngine())
    session.receive_text(text, now=0.0)
    error = error_of(session)
    assert error.code == "invalid_json" and error.close_code == INVALID_PAYLOAD


def test_audio_before_config_is_refused():
    session = CaptionSession(StrideCountingEngine())
    session.receive_audio(b"\x00\x00" * 100, now=0.0)
    error = error_of(session)
    assert error.code == "audio_before_config" and error.close_code == POLICY_VIOLATION
    assert "config" in error.message


@pytest.mark.parametrize(
    "cfg, field",
    [
        ({"audio_fs": 0}, "audio_fs"),
        ({"audio_fs": -16000}, "audio_fs"),
        ({"audio_fs": 10**9}, "audio_fs"),
        ({"audio_fs": "16k"}, "audio_fs"),
        ({"mode": "realtime"}, "mode"),
        ({"chunk_size": [5, 10]}, "chunk_size"),
        ({"chunk_size": "a,b,c"}, "chunk_size"),
        ({"chunk_size": [5, 0, 5]}, "chunk_size"),
        ({"chunk_size": [5, -10, 5]}, "chunk_size"),
        ({"chunk_size": 10}, "chunk_size"),
        # no look-ahead: FunASR's model then keeps no look-back (docs/design.md §4)
        ({"chunk_size": [5, 10, 0]}, "chunk_size"),
        ({"chunk_size": "0,10,0"}, "chunk_size"),
        ({"hotwords": "{not json"}, "hotwords"),
        ({"hotwords": '{"word": "heavy"}'}, "hotword"),
        ({"hotwords": 42}, "hotwords"),
        ({"wav_format": "exe"}, "wav_format"),
        ({"itn": "maybe"}, "itn"),
        # found by tests/server/test_protocol_fuzz.py: JSON allows NaN and Infinity
        ({"audio_fs": float("nan")}, "audio_fs"),
        ({"audio_fs": float("inf")}, "audio_fs"),
        ({"hotwords": '{"word": NaN}'}, "hotword"),
        ({"hotwords": '{"word": -Infinity}'}, "hotword"),
        ({"hotwords": '{"word": ' + "[" * 100_000 + "]" * 100_000 + "}"}, "hotwords"),
        ({"audio_fs": 10**400}, "audio_fs"),
        ({"hotwords": '{"word": ' + "9" * 5000 + "}"}, "hotwords"),
    ],
)
def test_invalid_config_names_the_field(cfg, field):
    session = configured(**cfg)
    error = error_of(session)
    assert error.code == "invalid_config" and error.close_code == INVALID_PAYLOAD
    assert field in error.message


def test_a_number_too_long_to_parse_is_invalid_json():
    session = CaptionSession(StrideCountingEngine())
    session.receive_text('{"audio_fs": ' + "9" * 5000 + "}", now=0.0)
    assert error_of(session).code == "invalid_json"


def test_odd_byte_count_is_refused():
    session = configured()
    session.receive_audio(b"\x00" * 321, now=0.0)
    error = error_of(session)
    assert error.code == "invalid_audio" and "odd" in error.message


def test_empty_frame_is_refused():
    session = configured()
    session.receive_audio(b"", now=0.0)
    assert error_of(session).code == "invalid_audio"


def test_frame_over_the_limit_is_refused_with_1009():
    session = CaptionSession(StrideCountingEngine(), limits=SessionLimits(max_frame_bytes=1000))
    session.receive_text("{}", now=0.0)
    session.receive_audio(b"\x00\x00" * 501, now=0.0)
    error = error_of(session)
    assert error.code == "too_big" and error.close_code == MESSAGE_TOO_BIG


def test_undecodable_upload_is_refused():
    session = configured(mode="offline", wav_format="mp3")
    session.receive_audio(b"definitely not an mp3" * 50, now=0.0)
    session.receive_text('{"is_speaking": false}', now=1.0)
    assert session.upload_ended
    decode_upload(session, now=1.0)
    error = error_of(session)
    assert error.code == "unsupported_format" and "decode" in error.message


def test_error_mid_utterance_still_finalises_what_was_accepted():
    pcm, _ = wav_pcm16("utt01.wav")
    session = configured()
    session.receive_audio(pcm[: len(pcm) // 2], now=0.0)
    session.receive_audio(b"\x01", now=1.0)  # odd: refused
    run_jobs(session)
    events = session.events()
    assert any(isinstance(e, Error) for e in events)
    assert len(session.engine.finals) == 1  # the half utterance went to the final pass


def test_flood_faster_than_the_model_is_refused_as_overload():
    pcm, _ = wav_pcm16("multi.wav")
    session = CaptionSession(StrideCountingEngine(), limits=SessionLimits(max_queued_jobs=5))
    session.receive_text("{}", now=0.0)
    session.receive_audio(pcm, now=0.0)  # 11 s at once, no job has run
    error = error_of(session)
    assert error.code == "overloaded" and error.close_code == TRY_AGAIN_LATER


def test_input_after_close_is_ignored():
    session = CaptionSession(StrideCountingEngine())
    session.receive_text("nope", now=0.0)
    session.events()
    session.receive_text("{}", now=1.0)
    session.receive_audio(b"\x00\x00", now=1.0)
    assert session.events() == [] and session.state is SessionState.CLOSED


def test_idle_connection_expires_only_when_nothing_is_pending():
    session = CaptionSession(StrideCountingEngine(), now=0.0)
    assert not session.expire_if_idle(now=59.0, timeout_s=60)
    assert session.expire_if_idle(now=60.0, timeout_s=60)
    error = error_of(session)
    assert error.code == "idle_timeout" and error.close_code == POLICY_VIOLATION


def test_a_session_waiting_for_the_model_is_not_idle():
    pcm, _ = wav_pcm16("utt01.wav")
    session = CaptionSession(StrideCountingEngine(), now=0.0)
    session.receive_text("{}", now=0.0)
    session.receive_audio(pcm, now=0.0)
    assert session.busy
    assert not session.expire_if_idle(now=1000.0, timeout_s=60)


def ended_2pass_session(multi: bytes):
    """A 2pass session that received multi.wav (three utterances) and its end, and
    `run(job)`, which runs one job on its engine and completes it."""
    engine = StrideCountingEngine()
    session = CaptionSession(engine)
    session.receive_text(json.dumps({"mode": "2pass", "wav_name": "t"}), now=0.0)
    session.receive_audio(multi, now=0.0)
    session.receive_text('{"is_speaking": false}', now=1.0)

    def run(job):
        (result,) = (engine.step if job.kind == "online" else engine.finalize)([job.request])
        session.complete(job, result)

    return session, run


def assert_finals_in_order_after_their_partials(session: CaptionSession) -> None:
    events = session.events()
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.segment for f in finals] == [0, 1, 2]
    for final in finals:  # each utterance's partials still precede its final
        partials = [i for i, e in enumerate(events)
                    if isinstance(e, Partial) and e.segment == final.segment]
        assert max(partials) < events.index(final)
    assert events[-1].end_of_stream and not session.busy


def test_a_final_in_flight_lets_the_next_utterance_chunks_run_but_not_the_next_final(multi):
    """Partials of the next sentence must not wait behind the previous final pass
    (~1 s of a CPU); finals and the closing message still come out in order."""
    session, run = ended_2pass_session(multi)

    while (job := session.take_job()).kind == "online":
        run(job)
    first_final = job  # segment 0's final pass, held in flight
    overlapped = []
    while session.peek_kind() == "online":
        overlapped.append(session.take_job())
        run(overlapped[-1])
    # the later utterances' chunks pass segment 1's final, which waits for segment 0's
    assert overlapped and {j.utterance.segment for j in overlapped} == {1, 2}
    assert session.peek_kind() is None
    run(first_final)
    run_jobs(session)
    assert_finals_in_order_after_their_partials(session)


def test_the_next_utterance_chunks_pass_a_final_that_waits_for_the_final_lane(multi):
    """A busy final lane must not hold the next sentence's partials either: while
    a final waits to be taken, the next utterance's chunks may be; the final may
    run beside them once its own utterance's chunks are done; finals stay in order."""
    session, run = ended_2pass_session(multi)

    while session.peek_kind() == "online":
        last_chunk = session.take_job("online")
        assert "final" not in session.ready_kinds()  # its own utterance's chunk still runs
        run(last_chunk)
    assert last_chunk.utterance.segment == 0 and session.ready_kinds()[0] == "final"
    passed = []  # segment 0's final is left waiting, as behind a busy final lane
    while (chunk := session.take_job("online")) is not None:
        assert "final" in session.ready_kinds()  # segment 0's final may run beside it
        passed.append(chunk)
        run(chunk)
    assert {j.utterance.segment for j in passed} == {1, 2}
    assert session.ready_kinds() == ["final"]  # the three finals, in order, from the front
    run_jobs(session)
    assert_finals_in_order_after_their_partials(session)


def test_only_an_upload_with_enough_waiting_asks_to_be_read_no_further(multi):
    limits = SessionLimits(upload_backlog_jobs=2)
    for mode, held in (("offline", True), ("2pass", False)):
        session = CaptionSession(StrideCountingEngine(), limits=limits)
        session.receive_text(json.dumps({"mode": mode, "audio_fs": 16000}), 0.0)
        session.receive_audio(multi[: 8 * 32000], 0.0)  # two utterances ended by 8 s
        assert session.backlogged is held, mode
        if held:
            job = session.take_job()
            assert session.backlogged  # one in the model still counts
            session.complete(job, session.engine.finalize([job.request])[0])
            assert not session.backlogged  # one done: read on
