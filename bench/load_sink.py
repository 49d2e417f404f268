"""A stand-in server that costs almost nothing, to measure the load generator.

`python -m bench.load --configs sink` runs the clients against this instead
of captiond: it speaks just enough of the protocol (docs/design.md §4) for the
clients' timing, answering every 600 ms of audio with a partial whose `end`
is the audio received so far and `is_speaking:false` with `is_final:true`.
What the clients then report (their CPU per stream, how late their frame
clocks tick) is the generator's own cost, with no model competing for cores.

    python -m bench.load_sink --port 0    # prints "listening on ws://HOST:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import http
import json
import sys

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

CHUNK_BYTES = 2 * 16000 * 600 // 1000  # 600 ms of 16 kHz PCM16
FRAMES = {"frames": 0}


async def _handle(websocket: ServerConnection) -> None:
    received = 0
    mode = "2pass"
    try:
        async for message in websocket:
            if isinstance(message, str):
                config = json.loads(message)
                mode = config.get("mode", mode)
                if config.get("is_speaking") is False:
                    await websocket.send(json.dumps(
                        {"mode": mode, "text": "", "is_final": True}))
                    received = 0
                continue
            FRAMES["frames"] += 1
            before, received = received, received + len(message)
            if received // CHUNK_BYTES > before // CHUNK_BYTES:
                end_ms = received // CHUNK_BYTES * 600
                partial_mode = "online" if mode == "online" else "2pass-online"
                await websocket.send(json.dumps(
                    {"mode": partial_mode, "text": "", "is_final": False, "end": end_ms}))
    except ConnectionClosed:
        pass


def _health(connection: ServerConnection, request: Request) -> Response | None:
    if request.path.split("?")[0] != "/health":
        return None
    response = connection.respond(http.HTTPStatus.OK, json.dumps(
        {"engine": "sink", **FRAMES}) + "\n")
    response.headers["Content-Type"] = "application/json"
    return response


async def _serve(host: str, port: int) -> None:
    async with serve(_handle, host, port, process_request=_health, compression=None,
                     select_subprotocol=lambda _, offered: "binary" if "binary" in offered
                     else None) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"sink listening on ws://{host}:{bound}", file=sys.stderr, flush=True)
        await asyncio.Future()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(args.host, args.port))
    else:
        uvloop.run(_serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
