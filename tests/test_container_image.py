"""The CPU image builds, and the container it starts reports itself healthy
(its HEALTHCHECK polls /healthz), runs as a non-root user and answers /readyz.

Needs a running Docker daemon and the network (base image, PyPI, PyTorch's
CPU index); skipped otherwise, saying which is missing."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "captiond-test:cpu"


def _docker_unavailable() -> str | None:
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return f"no Docker daemon answers ({last})"
    return None


@pytest.fixture(scope="module")
def docker():
    reason = _docker_unavailable()
    if reason is not None:
        pytest.skip(f"container test needs Docker: {reason}")


def test_cpu_image_builds_and_its_container_becomes_healthy(docker):
    subprocess.run(["docker", "build", "-t", IMAGE, "."], cwd=ROOT, check=True, timeout=3600)
    user = subprocess.run(["docker", "image", "inspect", "-f", "{{.Config.User}}", IMAGE],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert user and user != "root"
    serve = ["serve", "--engine", "whisper", "--no-calibrate", "--insecure-open"]
    container = subprocess.run(["docker", "run", "-d", "-p", "127.0.0.1::10095", IMAGE, *serve],
                               capture_output=True, text=True, check=True).stdout.strip()
    try:
        health = ""
        deadline = time.monotonic() + 600
        while health != "healthy" and time.monotonic() < deadline:
            time.sleep(3)
            health = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", container],
                capture_output=True, text=True).stdout.strip()
            assert health != "unhealthy"
        assert health == "healthy"
        port = subprocess.run(["docker", "port", container, "10095"], capture_output=True,
                              text=True, check=True).stdout.split(":")[-1].strip()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as answer:
            assert answer.status == 200
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)
