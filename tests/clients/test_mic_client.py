"""`captiond mic`'s code path fed by a WAV file that plays like a microphone
(`WavInputStream`: same callback interface as a sounddevice stream, real-time
pace). Whisper tiny.en, so finals are real English."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time

from clients.audio_input import WavInputStream
from clients.mic import CLEAR_LINE, CaptionPrinter, MicOptions, run_mic
from tests.conftest import DATA, references
from tests.server.conftest import url
from tests.wer import wer


async def test_finals_from_the_microphone_are_printed(start_server, whisper_engine):
    server = await start_server(whisper_engine)
    out, stop, streams = io.StringIO(), asyncio.Event(), []

    def open_stream(callback):  # a quiet room after the sentence: the endpoint ends it
        streams.append(WavInputStream(DATA / "utt02.wav", callback, after_end="silence"))
        return streams[0]

    mic = asyncio.create_task(
        run_mic(MicOptions(url(server)), open_stream, out, stop, handle_signals=False))
    while "\n" not in out.getvalue():
        assert not mic.done(), mic
        await asyncio.sleep(0.05)
    stop.set()
    transcript = await asyncio.wait_for(mic, 30)
    assert streams[0].samplerate == 16000
    assert wer(references()["utt02.wav"], out.getvalue()) == 0.0
    assert len(transcript.finals) == 1 and transcript.messages[-1]["is_final"] is True


async def test_ctrl_c_finalises_the_utterance_being_spoken(start_server, whisper_engine, tmp_path):
    server = await start_server(whisper_engine)
    out, streams = io.StringIO(), []

    def open_stream(callback):  # the mic goes quiet at once: no endpoint before Ctrl-C
        streams.append(WavInputStream(DATA / "utt01.wav", callback, after_end="stop"))
        return streams[0]

    srt = tmp_path / "mic.srt"
    started = time.monotonic()
    mic = asyncio.create_task(run_mic(MicOptions(url(server), outputs=[str(srt)]), open_stream,
                                      out, handle_signals=True))
    while not (streams and streams[0].finished.is_set()):
        await asyncio.sleep(0.05)
    assert time.monotonic() - started > 3.0  # the WAV played at real-time pace (3.3 s)
    assert "\n" not in out.getvalue(), "no final yet: the utterance is still open"
    os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does
    transcript = await asyncio.wait_for(mic, 30)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("finishing the last utterance")
    assert wer(references()["utt01.wav"], lines[1]) == 0.0
    assert transcript.finals[-1]["is_final"] is True
    assert wer(references()["utt01.wav"], srt.read_text().split("\n", 2)[2]) == 0.0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler removed


def test_partials_rewrite_one_terminal_line_and_finals_stay():
    out = io.StringIO()
    printer = CaptionPrinter(out, live=True)
    base = {"wav_name": "mic", "segment": 0, "is_final": False}
    printer.receive({**base, "mode": "2pass-online", "text": "good", "stable": "good",
                     "unstable": "morning"})
    printer.receive({**base, "mode": "2pass-online", "text": "morning",
                     "stable": "good morning", "unstable": ""})
    printer.receive({**base, "mode": "2pass-offline", "text": "Good morning.", "start": 0,
                     "end": 900})
    written = out.getvalue()
    assert written.count("\n") == 1 and written.endswith(CLEAR_LINE + "Good morning.\n")
    assert f"{CLEAR_LINE}good \x1b[2mmorning\x1b[0m{CLEAR_LINE}good morning" in written


def test_without_a_terminal_only_finals_are_printed():
    out = io.StringIO()  # not a tty
    printer = CaptionPrinter(out)
    printer.receive({"mode": "online", "wav_name": "mic", "segment": 0, "text": "hi",
                     "stable": "hi", "unstable": ""})
    printer.receive({"mode": "online", "wav_name": "mic", "segment": 0, "text": "",
                     "stable": "hi there", "unstable": "", "final": True})
    assert out.getvalue() == "hi there\n"
