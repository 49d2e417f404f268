"""Client tests run real servers on port 0, like the server tests."""

from __future__ import annotations

from tests.server.conftest import start_server  # noqa: F401 — the shared fixture
