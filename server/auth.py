"""Who may do what: tokens with roles, signed viewer links, Origin checks.

Theory of operation (docs/security.md)
--------------------------------------
With no token configured the server trusts whoever reaches it: it listens on
localhost only unless told `--insecure-open`. With tokens, each grants roles:

- speaker: may stream, into the rooms the token names (all, if it names none);
- viewer: may watch the rooms it names;
- admin: /health details and figures.

A client presents a token as `?token=`, as `Authorization: Bearer`, or (speakers;
FunASR clients cannot set headers) as the config message's `token`. A display
or OBS overlay can instead hold a *signed link*, `?t=<expiry>.<mac>`: an HMAC
over the room and the expiry, keyed by a token allowed to view the room, so
the link opens one room until it expires and the token itself never leaves the
operator. Tokens and MACs are compared in constant time (hmac.compare_digest),
against every configured token, so timing tells nothing about which matched.

Browsers send an `Origin` header; a page on another site could otherwise open
ws://localhost:10095 with the user's network position. Same-origin pages (the
ones captiond serves) and the configured allow-list pass; clients that send no
Origin (every non-browser client) are not browsers and pass.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import http
import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from websockets.http11 import Request


class Role(str, enum.Enum):
    SPEAKER = "speaker"
    VIEWER = "viewer"
    ADMIN = "admin"


ALL_ROLES = frozenset(Role)
PUBLIC_EVERYWHERE = "*"  # in public_rooms: every room may be watched without a token


class TokenSpecError(ValueError):
    """A --token value that cannot be read; the message shows the accepted forms."""


@dataclass(frozen=True)
class TokenGrant:
    secret: str = field(repr=False)
    roles: frozenset[Role] = ALL_ROLES
    rooms: frozenset[str] | None = None  # None: every room

    @property
    def label(self) -> str:
        """A name for logs and per-token counts that does not reveal the secret."""
        return "token-" + hashlib.sha256(self.secret.encode()).hexdigest()[:8]

    def allows(self, role: Role, room: str | None) -> bool:
        if role not in self.roles:
            return False
        return room is None or self.rooms is None or room in self.rooms


def parse_token_spec(spec: str) -> TokenGrant:
    """`SECRET` (every role, every room), `SECRET:ROLE+ROLE` or
    `SECRET:ROLE+ROLE:ROOM,ROOM`, e.g. `s3cret:speaker+viewer:hall,lobby`."""
    secret, _, rest = spec.partition(":")
    if len(secret) < 8:
        raise TokenSpecError("a token needs at least 8 characters (use a random string)")
    if not rest:
        return TokenGrant(secret)
    role_part, _, room_part = rest.partition(":")
    try:
        roles = frozenset(Role(name) for name in role_part.split("+"))
    except ValueError:
        raise TokenSpecError(
            f"unknown role in {role_part!r}: roles are speaker, viewer, admin "
            "(form: SECRET or SECRET:ROLE+ROLE[:ROOM,ROOM])"
        ) from None
    rooms = frozenset(r for r in room_part.split(",") if r) if room_part else None
    return TokenGrant(secret, roles, rooms)


@dataclass(frozen=True)
class AccessPolicy:
    tokens: tuple[TokenGrant, ...] = ()
    public_rooms: frozenset[str] = frozenset()  # watchable without a token; "*": all
    allowed_origins: frozenset[str] = frozenset()  # besides same-origin; "*": any
    insecure_open: bool = False  # listen beyond localhost without tokens, knowingly

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)


def exposure_problem(host: str, policy: AccessPolicy) -> str | None:
    """Why listening on `host` with `policy` would expose an open server, or None."""
    if policy.enabled or policy.insecure_open or _is_loopback(host):
        return None
    return (
        f"refusing to listen on {host} without a token: anyone who reaches this port "
        "could stream into and read every room. Add one with --token SECRET (or the "
        "CAPTIOND_TOKEN environment variable), or pass --insecure-open to run open "
        "knowingly (e.g. on an isolated network)."
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:  # "" and "0.0.0.0" mean every interface: not loopback
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


# ---- signed viewer links ----------------------------------------------------

def _link_key(secret: str) -> bytes:
    # A key of its own, so a link MAC is never a value the token is used for elsewhere.
    return hmac.new(secret.encode(), b"captiond signed viewer link", hashlib.sha256).digest()


def _link_mac(secret: str, room: str, expires_at: int) -> str:
    digest = hmac.new(_link_key(secret), f"{room}\n{expires_at}".encode(),
                      hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_link(secret: str, room: str, expires_at: int) -> str:
    """The `t` of a signed viewer link: `<expiry, unix seconds>.<mac>`."""
    return f"{expires_at}.{_link_mac(secret, room, expires_at)}"


def parse_ttl(text: str) -> int:
    """`8h`, `30m`, `2d`, `90s` or plain seconds → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    if not number.isdigit() or int(number) <= 0:
        raise ValueError(f"--ttl takes a duration like 8h, 30m, 2d or 3600; got {text!r}")
    return int(number) * units[unit]


# ---- decisions ----------------------------------------------------------------

@dataclass(frozen=True)
class Refusal:
    status: http.HTTPStatus  # at the handshake
    code: str  # machine code, also the key of the refusal counts
    message: str


def _unauthorized(message: str) -> Refusal:
    return Refusal(http.HTTPStatus.UNAUTHORIZED, "unauthorized", message)


def _forbidden(message: str) -> Refusal:
    return Refusal(http.HTTPStatus.FORBIDDEN, "forbidden", message)


class AccessControl:
    """The access decisions of one server; pure apart from the clock it is given."""

    def __init__(self, policy: AccessPolicy, clock: Callable[[], float] = time.time) -> None:
        self.policy = policy
        self.clock = clock

    def grant(self, token: str | None) -> TokenGrant | None:
        """The grant of `token`, comparing against every token in constant time."""
        if token is None:
            return None
        found = None
        for grant in self.policy.tokens:
            if hmac.compare_digest(grant.secret.encode(), token.encode()):
                found = grant
        return found

    def origin_refusal(self, request: Request) -> Refusal | None:
        origin = request.headers.get("Origin")
        if origin is None:
            return None  # not a browser
        allowed = self.policy.allowed_origins
        if PUBLIC_EVERYWHERE in allowed or origin.rstrip("/") in allowed:
            return None
        if urlsplit(origin).netloc.lower() == request.headers.get("Host", "").lower():
            return None  # same-origin: a page this server served
        return Refusal(http.HTTPStatus.FORBIDDEN, "origin_not_allowed",
                       f"origin {origin} is not allowed (captiond serve --allow-origin)")

    def viewer_refusal(self, request: Request, room: str) -> Refusal | None:
        if not self.policy.enabled or self._public(room):
            return None
        link = query_value(request, "t")
        if link is not None:
            return None if self.link_valid(room, link) else _unauthorized(
                "this viewer link has expired or is not valid for this room")
        grant = self.grant(presented_token(request))
        if grant is None:
            return _unauthorized(self._missing_or_wrong(request, "watch this room"))
        if not grant.allows(Role.VIEWER, room):
            return _forbidden(f"this token may not watch room {room!r}")
        return None

    def speaker_handshake_refusal(self, request: Request) -> Refusal | None:
        """A token at the handshake is checked now; without one, the config's
        `token` is checked when the stream starts (FunASR clients send no headers)."""
        token = presented_token(request)
        if not self.policy.enabled or token is None:
            return None
        grant = self.grant(token)
        if grant is None:
            return _unauthorized("the token is not valid")
        if Role.SPEAKER not in grant.roles:
            return _forbidden("this token may not stream audio (it has no speaker role)")
        return None

    def stream_refusal(self, request: Request, config_token: str | None,
                       room: str | None) -> tuple[str, str] | None:
        """(code, message) refusing a stream about to start, or None (close 1008)."""
        if not self.policy.enabled:
            return None
        grant = self.stream_grant(request, config_token)
        if grant is None:
            wrong = config_token is not None or presented_token(request) is not None
            return ("unauthorized", "the token is not valid" if wrong else
                    "a token is required: send it as ?token=, Authorization: Bearer, "
                    "or the config's \"token\"")
        if not grant.allows(Role.SPEAKER, room):
            where = f"into room {room!r}" if room else "audio"
            return "forbidden", f"this token may not stream {where}"
        return None

    def stream_grant(self, request: Request, config_token: str | None) -> TokenGrant | None:
        return self.grant(config_token if config_token is not None
                          else presented_token(request))

    def is_admin(self, request: Request) -> bool:
        if not self.policy.enabled:
            return True
        grant = self.grant(presented_token(request))
        return grant is not None and Role.ADMIN in grant.roles

    def link_valid(self, room: str, link: str) -> bool:
        expiry_text, _, mac = link.partition(".")
        if not expiry_text.isdigit() or int(expiry_text) < self.clock():
            return False
        expires_at = int(expiry_text)
        valid = False
        for grant in self._viewers_of(room):
            expected = _link_mac(grant.secret, room, expires_at)
            valid |= hmac.compare_digest(expected.encode(), mac.encode())
        return valid

    def _viewers_of(self, room: str) -> Iterable[TokenGrant]:
        return [g for g in self.policy.tokens if g.allows(Role.VIEWER, room)]

    def _public(self, room: str) -> bool:
        public = self.policy.public_rooms
        return PUBLIC_EVERYWHERE in public or room in public

    @staticmethod
    def _missing_or_wrong(request: Request, action: str) -> str:
        if presented_token(request) is None:
            return f"a token or signed link is required to {action}"
        return "the token is not valid"


def query_value(request: Request, key: str) -> str | None:
    values = parse_qs(urlsplit(request.path).query).get(key)
    return values[0] if values else None


def presented_token(request: Request) -> str | None:
    """The token of `?token=` or `Authorization: Bearer`, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return query_value(request, "token")
