"""Real Redis and PostgreSQL servers for scale-out tests: Debian's
`redis-server` and PostgreSQL binaries, each started on a free port in a
temporary directory and stopped after the test (skipped where absent)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS = shutil.which("redis-server")
PG_BIN = next((d for d in [Path("/usr/local/bin"),
                            *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
               if (d / "initdb").exists() and (d / "pg_ctl").exists()), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:
    if REDIS is None:
        pytest.skip("needs redis-server (Debian package redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if PG_BIN is None:
        pytest.skip("needs PostgreSQL's initdb and pg_ctl (Debian package postgresql)")
    # Not under pytest's tmp_path: its parents are private to this user, and
    # as root the server runs as another one.
    directory = Path(tempfile.mkdtemp(prefix="captiond-pg-"))
    try:
        yield from _postgres(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _postgres(directory: Path) -> Iterator[str]:
    data = directory / "data"
    run_as = _unprivileged_user()  # PostgreSQL refuses to run as root
    if run_as is not None:
        os.chown(directory, run_as.pw_uid, run_as.pw_gid)
    port = free_port()

    def pg(*args: str) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if run_as is not None:
            command = ["runuser", "-u", run_as.pw_name, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120, cwd=directory)

    pg("initdb", "-D", str(data), "-U", "captiond", "--auth=trust", "-E", "UTF8")
    pg("pg_ctl", "-D", str(data), "-l", str(directory / "log"), "-w", "-o",
       f"-p {port} -k {directory} -c listen_addresses=127.0.0.1", "start")
    try:
        yield f"postgresql://captiond@127.0.0.1:{port}/postgres"
    finally:
        pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")


def _unprivileged_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ["postgres", "nobody"]:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.skip("running as root with no user to run PostgreSQL as")
