"""The CPU image builds, and the container it starts reports itself healthy
(its HEALTHCHECK polls /healthz), runs as a non-root user that can write its
data volume, answers /readyz and captions speech through the published port.

Needs a container engine (a Docker daemon, or Podman), the image's base image
(present or pullable) and the package indexes; skipped otherwise, saying which
is missing. To build from a mirror or a local wheelhouse, set PIP_INDEX_URL,
PIP_TRUSTED_HOST and TORCH_INDEX_URL: they are passed on as build arguments."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from clients.client import CaptionClient
from tests.conftest import references, wav_pcm16
from tests.wer import wer

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "captiond-test:cpu"
BUILD_ARGS = ("PIP_INDEX_URL", "PIP_TRUSTED_HOST", "TORCH_INDEX_URL")


def _last_line(done: subprocess.CompletedProcess, fallback: str) -> str:
    return (done.stderr.strip().splitlines() or [fallback])[-1]


def _available_engine() -> str:
    """docker when its daemon answers, else podman; skips the test otherwise."""
    missing = []
    for engine in ("docker", "podman"):
        if shutil.which(engine) is None:
            missing.append(f"no {engine} command")
            continue
        info = subprocess.run([engine, "info"], capture_output=True, text=True, timeout=30)
        if info.returncode == 0:
            return engine
        missing.append(f"{engine} info failed ({_last_line(info, 'no message')})")
    pytest.skip("container test needs Docker or Podman: " + "; ".join(missing))


def _require_base_image(engine: str) -> None:
    base = re.search(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)[1]
    present = subprocess.run([engine, "image", "inspect", base], capture_output=True)
    if present.returncode == 0:
        return
    pull = subprocess.run([engine, "pull", base], capture_output=True, text=True, timeout=1800)
    if pull.returncode != 0:
        pytest.skip(f"base image {base} cannot be pulled: {_last_line(pull, 'pull failed')}")


@pytest.fixture(scope="module")
def engine() -> str:
    engine = _available_engine()
    _require_base_image(engine)
    return engine


def _health(engine: str, container: str) -> str:
    if engine == "podman":
        # Podman runs health checks from systemd timers; without systemd they
        # run only when asked. The check run is still the image's HEALTHCHECK.
        subprocess.run(["podman", "healthcheck", "run", container], capture_output=True)
    return subprocess.run([engine, "inspect", "-f", "{{.State.Health.Status}}", container],
                          capture_output=True, text=True).stdout.strip()


async def _caption(port: int) -> str:
    pcm, _ = wav_pcm16("utt01.wav")
    async with CaptionClient.connect(f"ws://127.0.0.1:{port}") as client:
        await client.start(mode="2pass")
        await client.send_audio(pcm)
        await client.end()
        result = await client.collect()
    return " ".join(final["text"] for final in result.finals)


@pytest.mark.timeout(4800)  # an uncached build downloads and installs GBs
def test_cpu_image_builds_and_its_container_becomes_healthy(engine):
    build = [engine, "build", "-t", IMAGE]
    if engine == "podman":
        build += ["--format", "docker"]  # the OCI format has no HEALTHCHECK
    build += [arg for name in BUILD_ARGS if name in os.environ for arg in ("--build-arg", name)]
    subprocess.run([*build, "."], cwd=ROOT, check=True, timeout=3600)
    inspect = [engine, "image", "inspect", "-f", "{{json .Config}}", IMAGE]
    config = json.loads(subprocess.run(inspect, capture_output=True, text=True, check=True).stdout)
    assert config.get("User") not in (None, "", "root", "0")
    assert {"/models", "/data"} <= set(config.get("Volumes") or {})

    serve = ["serve", "--engine", "whisper", "--no-calibrate", "--insecure-open"]
    container = subprocess.run([engine, "run", "-d", "-p", "127.0.0.1::10095", IMAGE, *serve],
                               capture_output=True, text=True, check=True).stdout.strip()
    try:
        health = ""
        deadline = time.monotonic() + 600
        while health != "healthy" and time.monotonic() < deadline:
            time.sleep(3)
            health = _health(engine, container)
            assert health != "unhealthy"
        assert health == "healthy"
        whoami = subprocess.run([engine, "exec", container, "id", "-u"], capture_output=True,
                                text=True, check=True).stdout.strip()
        assert whoami != "0"
        # The transcript store sits in the /data volume, written by that user.
        store = subprocess.run([engine, "exec", container, "test", "-s",
                                "/data/transcripts.sqlite3"])
        assert store.returncode == 0
        port = int(subprocess.run([engine, "port", container, "10095"], capture_output=True,
                                  text=True, check=True).stdout.split(":")[-1])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as answer:
            assert answer.status == 200
        text = asyncio.run(_caption(port))
        assert wer(references()["utt01.wav"], text) <= 0.2, text
    finally:
        subprocess.run([engine, "rm", "-f", "-v", container], capture_output=True)
