"""`captiond serve` answers on its port while the models load: /healthz 200,
/readyz 503, a WebSocket 503; once loaded, /readyz 200 and streams work."""

from __future__ import annotations

import asyncio
import re
import signal

from clients.client import CaptionClient
from tests.server.test_cli import CAPTIOND, ROOT
from tests.server.test_operations_routes import UPGRADE


async def http_get(port: int, path: str, headers: str = "") -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n".encode())
    raw = await reader.read()
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_readyz_is_503_while_the_models_load_then_200(test_models_dir):
    process = await asyncio.create_subprocess_exec(
        *CAPTIOND, "serve", "--port", "0", "--device", "cpu", "--workers", "1", "--no-calibrate",
        "--online-model", str(test_models_dir / "paraformer-streaming"),
        "--offline-model", str(test_models_dir / "paraformer-offline"),
        "--punc-model", str(test_models_dir / "ct-punc"),
        cwd=ROOT, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(240):
            while line := (await process.stderr.readline()).decode():
                if match := re.search(r"captiond starting on ws://[\d.]+:(\d+)", line):
                    port = int(match.group(1))
                    break
            # Loading (FunASR's import alone takes seconds) and calibration follow.
            starting = await http_get(port, "/readyz")
            alive = await http_get(port, "/healthz")
            stream = await http_get(port, "/", UPGRADE)
            logs = asyncio.create_task(process.stderr.read())
            while (ready := await http_get(port, "/readyz"))[0] != 200:
                await asyncio.sleep(0.1)
        async with CaptionClient.connect(f"ws://127.0.0.1:{port}") as client:
            await client.start(mode="online")
            await client.end()
            await client.collect()
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    assert starting == (503, "starting: loading models\n")
    assert alive == (200, "ok\n")
    assert stream[0] == 503
    assert ready == (200, "ready\n")
    assert "listening on" in (await logs).decode()
