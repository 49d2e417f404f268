"""Per-client limits the server enforces at the connection (docs/security.md).

The per-stream limits (duration, audio ahead of real time, hotwords, upload
size) are the core's (`streaming.session.SessionLimits`); these need to see
every connection of the process: how many each client address holds, and how
many streams each token has open. Each refusal is counted by its code, and
/health shows the counts to an admin.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class ConnectionLimits:
    # Phones behind one meeting-room NAT share an address: keep this generous.
    max_connections_per_address: int | None = 64
    max_streams_per_token: int | None = None  # None: no cap (e.g. one shared --token)


class AddressCounter:
    """Open connections per client address, taken and given back in the
    handler's try/finally (docs/design.md §8: a failed handshake never leaks)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def take(self, address: str) -> bool:
        """Count one more connection from `address`; False (and nothing counted)
        when it already holds the limit."""
        if self.limit is not None and self._open[address] >= self.limit:
            return False
        self._open[address] += 1
        return True

    def give_back(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def __getitem__(self, address: str) -> int:
        return self._open[address]


def client_address(remote_address: tuple | None) -> str:
    return str(remote_address[0]) if remote_address else "unknown"
