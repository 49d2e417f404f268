"""An async client for the captiond / FunASR-runtime WebSocket protocol (docs/design.md §4).

    async with CaptionClient.connect("ws://127.0.0.1:10095") as client:
        await client.start(mode="2pass", audio_fs=16000)
        await client.send_audio(pcm_bytes)
        await client.end()
        async for message in client.messages():   # stops after is_final
            ...
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from streaming.errors import TRY_AGAIN_LATER  # the wire's close codes live in one place


class ConnectError(Exception):
    """The server could not be reached, or refused the WebSocket handshake."""


class ServerError(Exception):
    """The server refused the stream: its message, machine code and close code."""

    def __init__(self, message: str, code: str, close_code: int | None) -> None:
        super().__init__(f"{message} ({code}, close {close_code})")
        self.message, self.code, self.close_code = message, code, close_code

    @property
    def overloaded(self) -> bool:
        return self.close_code == TRY_AGAIN_LATER or self.code == "overloaded"

    def describe(self) -> str:
        """One line for a terminal user."""
        if self.overloaded:
            return f"server is overloaded, try again later: {self.message}"
        if self.code == "closed":
            return f"the server closed the connection (close code {self.close_code})"
        return f"server error: {self.message} ({self.code})"


@dataclass
class Transcript:
    """What one stream produced, message by message."""

    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finals(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if is_utterance_final(m)]

    @property
    def partials(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("mode") in ("online", "2pass-online")]

    @property
    def text(self) -> str:
        return " ".join(m["text"] for m in self.finals if m.get("text"))


def is_utterance_final(message: dict[str, Any]) -> bool:
    """docs/design.md §4: finals are recognised by mode, or by `final: true` in online mode."""
    if message.get("mode") in ("offline", "2pass-offline"):
        return bool(message.get("text")) or "segment" in message
    return message.get("mode") == "online" and bool(message.get("final"))


class CaptionClient:
    def __init__(self, websocket: ClientConnection) -> None:
        self.websocket = websocket

    @classmethod
    def connect(cls, url: str, **kwargs: Any) -> _Connecting:
        return _Connecting(url, kwargs)

    async def start(self, **config: Any) -> None:
        config.setdefault("mode", "2pass")
        config.setdefault("wav_name", "captiond-client")
        config.setdefault("is_speaking", True)
        await self.websocket.send(json.dumps(config, ensure_ascii=False))

    async def send_audio(self, data: bytes) -> None:
        await self.websocket.send(data)

    async def end(self) -> None:
        await self.websocket.send(json.dumps({"is_speaking": False}))

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Server messages of the current stream, ending after `is_final: true`.

        Raises ServerError if the server sends an error (it then closes)."""
        while True:
            try:
                raw = await self.websocket.recv()
            except ConnectionClosed as exc:
                raise ServerError("connection closed", "closed", _close_code(exc)) from None
            message = json.loads(raw)
            if "error" in message:
                raise ServerError(message["error"], message.get("code", ""),
                                  await self._close_code())
            yield message
            if message.get("is_final"):
                return

    async def collect(self) -> Transcript:
        transcript = Transcript()
        async for message in self.messages():
            transcript.messages.append(message)
        return transcript

    async def _close_code(self) -> int | None:
        await self.websocket.wait_closed()
        return self.websocket.close_code

    async def close(self) -> None:
        await self.websocket.close()

    async def stream(
        self,
        audio: AsyncIterable[bytes],
        on_message: Callable[[dict[str, Any]], None] | None = None,
        **config: Any,
    ) -> Transcript:
        """Start a stream, send `audio` while receiving, end it, and return what the
        server sent once its last message (`is_final`) arrived.

        Receiving runs alongside sending so partials show while audio flows."""
        await self.start(**config)
        sender = asyncio.create_task(self._send_all(audio))
        transcript = Transcript()
        try:
            async for message in self.messages():
                transcript.messages.append(message)
                if on_message is not None:
                    on_message(message)
        finally:
            if not sender.done():
                sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return transcript

    async def _send_all(self, audio: AsyncIterable[bytes]) -> None:
        try:
            async for data in audio:
                await self.send_audio(data)
            await self.end()  # docs/design.md §4: flush the last segment, then is_final
        except ConnectionClosed:
            pass  # the receiving side reports why


class _Connecting:
    """`async with CaptionClient.connect(url)` support."""

    def __init__(self, url: str, kwargs: dict[str, Any]) -> None:
        kwargs.setdefault("subprotocols", ["binary"])
        kwargs.setdefault("max_size", None)
        self._url = url
        try:
            self._connect = connect(url, **kwargs)
        except InvalidURI as exc:
            raise ConnectError(str(exc)) from None

    async def __aenter__(self) -> CaptionClient:
        try:
            return CaptionClient(await self._connect.__aenter__())
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ConnectError(f"cannot connect to {self._url}: {_reason(exc)}") from None

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._connect.__aexit__(*exc_info)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is `captiond serve` running there?)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _close_code(exc: ConnectionClosed) -> int | None:
    return exc.rcvd.code if exc.rcvd is not None else None
