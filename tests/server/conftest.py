"""Real servers on port 0 for socket-level tests (after uvicorn's tests/utils.py)."""

from __future__ import annotations

import pytest

from server.app import CaptionServer
from server.config import ServerConfig
from tests.server.services import postgres_url, redis_url  # noqa: F401 — fixtures


@pytest.fixture
async def start_server():
    servers: list[CaptionServer] = []

    async def start(engine, **overrides) -> CaptionServer:
        overrides.setdefault("calibrate", False)  # tests that need it ask for it
        server = CaptionServer(ServerConfig(host="127.0.0.1", port=0, **overrides), engine)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def url(server: CaptionServer, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


ENGINES = ["paraformer", "whisper"]


@pytest.fixture(params=ENGINES)
def engine(request):
    """Every real engine, so each meets the same server contract (docs/design.md §7)."""
    return request.getfixturevalue(f"{request.param}_engine")


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory):
    """A test CA and a localhost certificate it signed (tests/server/certificates.py)."""
    from tests.server.certificates import make_certificates

    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(autouse=True)
def data_dir_in_tmp(tmp_path, monkeypatch):
    """`captiond serve` keeps transcripts under the user's data directory by
    default; tests' servers keep theirs in the test's tmp_path."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
