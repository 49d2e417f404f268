"""The `captiond` command as a user runs it: real processes, real models."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from clients.client import CaptionClient
from tests.conftest import wav_pcm16

CAPTIOND = [sys.executable, "-m", "server.cli"]
ROOT = Path(__file__).resolve().parents[2]


def run_captiond(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CAPTIOND, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_missing_model_directory_gives_one_clear_message(tmp_path):
    missing = tmp_path / "no-such-model"
    done = run_captiond("serve", "--port", "0", "--online-model", str(missing))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    message = done.stderr
    assert str(missing) in message and "online" in message
    assert "make-test-models" in message or "download" in message


def test_missing_hub_model_names_the_cache_and_how_to_predownload(tmp_path):
    env = {**os.environ, "MODELSCOPE_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [*CAPTIOND, "serve", "--port", "0", "--online-model", "iic/no-such-model-for-captiond"],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "iic/no-such-model-for-captiond" in done.stderr
    assert str(tmp_path / "cache") in done.stderr
    assert "modelscope download" in done.stderr


def serve_generated_models(models: Path) -> list[str]:
    """`captiond serve` on a free port with the generated models in `models`, on the CPU."""
    return [*CAPTIOND, "serve", "--port", "0", "--device", "cpu",
            "--online-model", str(models / "paraformer-streaming"),
            "--offline-model", str(models / "paraformer-offline"),
            "--punc-model", str(models / "ct-punc")]


async def test_serve_with_generated_models_captions_a_stream(test_models_dir):
    process = await asyncio.create_subprocess_exec(
        *serve_generated_models(test_models_dir), cwd=ROOT, stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL
    )
    try:
        port = await asyncio.wait_for(_listening_port(process), timeout=120)
        await caption_one_utterance(f"ws://127.0.0.1:{port}")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=60) == 0


async def caption_one_utterance(uri: str, **connect) -> None:
    """utt02 through a running `captiond serve`: exactly one final, with text."""
    pcm, _ = wav_pcm16("utt02.wav")
    async with CaptionClient.connect(uri, **connect) as client:
        await client.start(mode="2pass")
        await client.send_audio(pcm)
        await client.end()
        result = await client.collect()
    assert len(result.finals) == 1 and result.finals[0]["text"]


async def _listening_port(process: asyncio.subprocess.Process) -> int:
    while line := (await process.stderr.readline()).decode():
        if match := re.search(r"listening on ws://[\d.]+:(\d+)", line):
            return int(match.group(1))
    raise AssertionError("captiond exited before listening")


def test_make_test_models_writes_loadable_model_dirs(tmp_path):
    done = run_captiond("make-test-models", str(tmp_path), "--size", "tiny")
    assert done.returncode == 0, done.stderr
    for name in ("paraformer-streaming", "paraformer-offline", "ct-punc"):
        assert (tmp_path / name / "config.yaml").is_file()
        assert (tmp_path / name / "model.pt").is_file()


def test_openmp_spins_briefly_unless_the_user_chose_a_wait_policy():
    from server.cli import openmp_defaults

    environ: dict[str, str] = {}
    openmp_defaults(environ)
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "0"}):
        environ = dict(chosen)
        openmp_defaults(environ)
        assert environ == chosen
