"""The final pass in a process of its own (`--final-pass process`, the server's
default with an offline model): same finals as on a thread, a crashed child is
started again without losing the batch, and `captiond serve` runs and stops it."""

from __future__ import annotations

import asyncio
import os
import signal

import numpy as np
import psutil
import pytest
import soundfile

from server.config import ModelConfig, ParaformerOptions
from server.final_process import FinalPassProcess
from streaming.engine import FinalRequest, StreamOptions
from tests.conftest import DATA
from tests.server.test_cli import (
    ROOT,
    _listening_port,
    caption_one_utterance,
    run_captiond,
    serve_generated_models,
)

FIXTURES = ("utt01.wav", "utt02.wav", "utt03.wav", "multi.wav")


def _requests() -> list[FinalRequest]:
    requests = []
    for name in FIXTURES:
        samples, rate = soundfile.read(DATA / name, dtype="float32")
        assert rate == 16000
        requests.append(FinalRequest(np.ascontiguousarray(samples)))
    return requests


@pytest.fixture(scope="module")
def final_process(test_models_dir):
    options = ParaformerOptions(
        str(test_models_dir / "paraformer-streaming"),
        str(test_models_dir / "paraformer-offline"),
        str(test_models_dir / "ct-punc"),
    )
    finals = FinalPassProcess(ModelConfig(device="cpu", paraformer=options), threads=1)
    finals.start()
    finals.wait_ready()
    yield finals
    finals.close()


def test_finals_from_the_process_equal_the_in_process_final_pass(final_process,
                                                                  paraformer_engine):
    requests = _requests()
    expected = paraformer_engine.finalize(requests)
    assert [r.text for r in expected if r.text], "the tiny model recognised nothing"
    assert final_process.finalize(requests) == expected


def test_a_killed_final_pass_process_is_started_again_and_the_batch_still_answered(
        final_process, paraformer_engine):
    requests = _requests()[:2]
    before = final_process.restarts
    os.kill(final_process.pid(), signal.SIGKILL)
    assert final_process.finalize(requests) == paraformer_engine.finalize(requests)
    assert final_process.restarts == before + 1


def test_an_error_in_the_child_reaches_the_caller_and_the_child_keeps_serving(
        final_process, paraformer_engine):
    requests = _requests()[:1]
    broken = FinalRequest(requests[0].samples, StreamOptions(hotwords=[1, 2]))  # not words
    with pytest.raises(AttributeError):
        final_process.finalize([broken])
    assert final_process.finalize(requests) == paraformer_engine.finalize(requests)


async def test_serve_runs_finals_in_a_child_process_and_stops_it(test_models_dir):
    process = await asyncio.create_subprocess_exec(
        *serve_generated_models(test_models_dir), cwd=ROOT, stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL)
    try:
        port = await asyncio.wait_for(_listening_port(process), timeout=180)
        # multiprocessing's spawned children run `spawn_main` (its resource tracker does not)
        children = [child for child in psutil.Process(process.pid).children()
                    if "spawn_main" in " ".join(child.cmdline())]
        assert len(children) == 1, "no final-pass child process"
        # its OpenMP threads must not spin long on the cores the server's online pass needs
        environ = children[0].environ()
        assert (environ.get("OMP_WAIT_POLICY"), environ.get("GOMP_SPINCOUNT")) == (
            "PASSIVE", "10000")
        await caption_one_utterance(f"ws://127.0.0.1:{port}")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=60) == 0
    assert not [child for child in children if child.is_running()
                and child.status() != psutil.STATUS_ZOMBIE]


def test_a_missing_offline_model_fails_start_with_one_clear_message(test_models_dir, tmp_path):
    missing = tmp_path / "no-such-offline-model"
    done = run_captiond(
        "serve", "--port", "0", "--device", "cpu",
        "--online-model", str(test_models_dir / "paraformer-streaming"),
        "--offline-model", str(missing), "--punc-model", "none", timeout=180)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert str(missing) in done.stderr and "final-pass process" in done.stderr
