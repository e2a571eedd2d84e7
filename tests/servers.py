"""Throwaway PostgreSQL and Redis servers for the test suite, started from installed binaries.

Loaded as a pytest plugin (`-p tests.servers`) so PostgreSQL is up and `DATABASE_URL` points at
it before pytest-django reads the settings: the model and view tests then run on PostgreSQL
whenever it is installed. Without the binaries the suite falls back to SQLite and says so; the
tests that need a server are skipped with the reason.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_started: dict[str, str] = {}
_notes: list[str] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; CI and dev machines here run as root.
    if os.geteuid() == 0 and shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def start_postgres() -> str | None:
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if not (initdb and pg_ctl):
        return None
    root = Path(tempfile.mkdtemp(prefix="aibo-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    subprocess.run(
        _as_postgres_user(
            [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    subprocess.run(
        _as_postgres_user(
            [pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            _as_postgres_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    return f"postgres://postgres@127.0.0.1:{port}/aibo"


def start_redis() -> str | None:
    binary = shutil.which("redis-server")
    if not binary:
        return None
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    atexit.register(proc.terminate)
    return f"redis://127.0.0.1:{port}/0"


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: object, args: list) -> None:
    data_dir = tempfile.mkdtemp(prefix="aibo-test-data-")
    atexit.register(shutil.rmtree, data_dir, True)
    os.environ["AIBO_DATA_DIR"] = data_dir
    os.environ.setdefault("SECRET_KEY", "test-" + "x" * 60)
    os.environ["DEBUG"] = "1"
    # Close connections after each request, so no server thread holds the test database open
    # (a pool would keep them open: the compose test runs the services with the pool on).
    os.environ["DB_CONN_MAX_AGE"] = "0"
    os.environ["DB_POOL"] = "0"
    os.environ.pop("REDIS_URL", None)  # the suite's default is the embedded stack
    if os.environ.get("AIBO_TEST_DATABASE", "postgres") == "sqlite":
        _notes.append("database: SQLite (AIBO_TEST_DATABASE=sqlite)")
        os.environ.pop("DATABASE_URL", None)
        return
    if not os.environ.get("DATABASE_URL"):
        url = start_postgres()
        if url:
            os.environ["DATABASE_URL"] = url
            _started["postgres"] = url
            _notes.append(f"database: throwaway PostgreSQL at {url}")
        elif servers_required():
            raise pytest.UsageError("AIBO_REQUIRE_SERVERS=1 but PostgreSQL (initdb) is missing")
        else:
            _notes.append("database: SQLite — PostgreSQL binaries (initdb, pg_ctl) not found")


def servers_required() -> bool:
    """CI sets AIBO_REQUIRE_SERVERS=1: a missing server is then a failure, not a skip."""
    return os.environ.get("AIBO_REQUIRE_SERVERS") == "1"


def skip_or_fail(reason: str) -> None:
    if servers_required():
        pytest.fail(f"{reason} (AIBO_REQUIRE_SERVERS=1)", pytrace=False)
    pytest.skip(reason)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return list(_notes)


def postgres_available() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith("postgres")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A throwaway Redis server for the tests that need one (skipped when not installed)."""
    if "redis" not in _started:
        url = start_redis()
        if not url:
            skip_or_fail("redis-server is not installed: the Redis tests cannot run")
        _started["redis"] = url
    yield _started["redis"]
