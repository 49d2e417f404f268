"""The server's door: every access and limit decision about a connection, in
one place the app calls at three moments (docs/security.md):

1. the HTTP handshake (`handshake_refusal`): Origin, then the token or signed
   link the request carries for what its path asks (watch a room, stream);
2. the connection handler (`take_address` / `give_back_address`): connections
   per client address, counted inside the handler's try/finally;
3. each stream's start (`stream_refusal`): the speaker's token (it may come in
   the config message), the room it may stream into, streams per token.

Every refusal and every error sent to a client is counted by its code
(`counts`, in /health for an admin).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from urllib.parse import unquote

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from server.auth import AccessControl, AccessPolicy, Refusal
from server.limits import AddressCounter, ConnectionLimits, client_address
from streaming.session import CaptionSession, SessionState

log = logging.getLogger("captiond.gate")

ROOMS_PREFIX = "/rooms/"


class Gate:
    def __init__(self, policy: AccessPolicy, limits: ConnectionLimits) -> None:
        self.access = AccessControl(policy)
        self.limits = limits
        self.addresses = AddressCounter(limits.max_connections_per_address)
        self.counts: Counter[str] = Counter()  # refusals and client errors, by code
        self._stream_tokens: dict[CaptionSession, str] = {}  # session → its token's label

    # ---- 1. handshake ---------------------------------------------------------

    def handshake_refusal(self, connection: ServerConnection,
                          request: Request) -> Response | None:
        """An HTTP 401/403 for a WebSocket request that may not proceed."""
        refusal = self.access.origin_refusal(request) or self._path_refusal(request)
        if refusal is None:
            return None
        self.counts[refusal.code] += 1
        log.info("refused %s %s at the handshake: %s (%d)", client_address(
            connection.remote_address), request.path.split("?", 1)[0], refusal.code,
            refusal.status)
        response = connection.respond(
            refusal.status, json.dumps({"error": refusal.message, "code": refusal.code}) + "\n")
        response.headers["Content-Type"] = "application/json"
        if refusal.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="captiond"'
        return response

    def _path_refusal(self, request: Request) -> Refusal | None:
        room = viewer_room(request.path)
        if room is not None:
            return self.access.viewer_refusal(request, room)
        return self.access.speaker_handshake_refusal(request)

    def health_view(self, request: Request, full: dict) -> dict:
        """Everything for an admin (or an open server); the status alone otherwise."""
        if self.access.is_admin(request):
            return {**full, "refused": dict(self.counts)}
        return {"status": full["status"]}

    # ---- 2. connections per address -------------------------------------------

    def take_address(self, websocket: ServerConnection) -> bool:
        if self.addresses.take(client_address(websocket.remote_address)):
            return True
        self.counts["too_many_connections"] += 1
        return False

    def give_back_address(self, websocket: ServerConnection) -> None:
        self.addresses.give_back(client_address(websocket.remote_address))

    # ---- 3. stream start ---------------------------------------------------------

    def stream_refusal(self, request: Request, session: CaptionSession) -> tuple[str, str] | None:
        """(code, message) refusing the stream the session just started (close 1008)."""
        config = session.config
        refusal = self.access.stream_refusal(request, config.token, config.room)
        if refusal is None:
            refusal = self._streams_per_token(request, session)
        return refusal  # counted when its error is sent (count_error)

    def _streams_per_token(self, request: Request,
                           session: CaptionSession) -> tuple[str, str] | None:
        grant = self.access.stream_grant(request, session.config.token)
        if grant is None:
            return None  # an open server: nothing to count by
        self._stream_tokens[session] = grant.label
        limit = self.limits.max_streams_per_token
        if limit is None:
            return None
        open_streams = sum(
            1 for other, label in self._stream_tokens.items()
            if label == grant.label and other is not session
            and other.state is SessionState.STREAMING
        )
        if open_streams >= limit:
            return ("too_many_streams",
                    f"this token already has {open_streams} open streams (at most {limit})")
        return None

    def forget(self, session: CaptionSession) -> None:
        self._stream_tokens.pop(session, None)

    def count_error(self, code: str) -> None:
        self.counts[code] += 1


def viewer_room(path: str) -> str | None:
    """The room of a `/rooms/<room>` path, or None."""
    path = path.split("?", 1)[0]
    return unquote(path[len(ROOMS_PREFIX):]) if path.startswith(ROOMS_PREFIX) else None
