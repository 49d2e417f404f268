"""`captiond serve` exposed as the README says: all interfaces, a token from
CAPTIOND_TOKEN, TLS from --certfile/--keyfile; real process, generated models."""

from __future__ import annotations

import asyncio
import os
import re
import signal

import pytest

from clients.client import CaptionClient, ConnectError
from tests.server.test_cli import CAPTIOND, ROOT, caption_one_utterance

TOKEN = "serve-token-42"


async def _listening_port(process: asyncio.subprocess.Process) -> int:
    while line := (await process.stderr.readline()).decode():
        if match := re.search(r"listening on wss://0\.0\.0\.0:(\d+)", line):
            return int(match.group(1))
    raise AssertionError("captiond exited before listening on wss://0.0.0.0")


async def test_serve_on_all_interfaces_with_env_token_and_tls(test_models_dir, certificates):
    process = await asyncio.create_subprocess_exec(
        *CAPTIOND, "serve", "--host", "0.0.0.0", "--port", "0", "--device", "cpu",
        "--no-calibrate", "--workers", "1",
        "--online-model", str(test_models_dir / "paraformer-streaming"),
        "--offline-model", str(test_models_dir / "paraformer-offline"),
        "--punc-model", str(test_models_dir / "ct-punc"),
        "--certfile", str(certificates.certfile), "--keyfile", str(certificates.keyfile),
        cwd=ROOT, env={**os.environ, "CAPTIOND_TOKEN": TOKEN},
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        port = await asyncio.wait_for(_listening_port(process), timeout=180)
        uri = f"wss://localhost:{port}/"
        tls = certificates.client_context()
        with pytest.raises(ConnectError) as refused:
            async with CaptionClient.connect(f"{uri}?token=wrong-token", ssl=tls):
                pass
        assert "401" in str(refused.value)  # refused at the handshake
        await caption_one_utterance(f"{uri}?token={TOKEN}", ssl=tls)
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=60) == 0
