"""Issue 16: the compose deployment runs. Without the docker CLI, the compose model is built from
``compose.yaml`` and ``.env.example`` as compose would, and each app service's own command line
runs here against real local servers (PostgreSQL and Redis), its healthcheck included."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
import yaml

from tests.aibo.test_operations import _interpolate
from tests.servers import free_port, postgres_available, skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
APP_SERVICES = ("migrate", "web", "worker", "feed")


def _dotenv(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    return env


def test_every_service_has_a_healthcheck_or_runs_once() -> None:
    for name, service in COMPOSE["services"].items():
        assert "healthcheck" in service or service.get("restart") == "no", name
    assert {"web", "worker", "feed", "migrate", "postgres", "redis", "caddy"} <= set(
        COMPOSE["services"]
    )
    caddy = COMPOSE["services"]["caddy"]
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    assert "reverse_proxy web:8000" in (ROOT / "Caddyfile").read_text()
    # web is reached through Caddy only, and believes only Caddy's forwarded headers
    assert "ports" not in COMPOSE["services"]["web"]
    proxy = caddy["networks"]["default"]["ipv4_address"]
    assert COMPOSE["services"]["web"]["environment"]["TRUSTED_PROXIES"] == proxy


def test_the_image_is_multi_stage_slim_and_not_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and all("slim" in stage for stage in stages)
    final = dockerfile[dockerfile.rindex("FROM ") :]
    assert "USER aibo" in final and "npm" not in final and "--from=build" in final
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "node_modules", "var", ".env", ".git"} <= set(ignored)


@pytest.fixture
def deployment(redis_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment compose gives the app services (.env.example, then each service's own
    ``environment``), pointed at a fresh database on the test's PostgreSQL and at its Redis."""
    if not postgres_available():
        skip_or_fail("PostgreSQL is not installed: the compose services cannot run here")
    env = _dotenv(ROOT / ".env.example")
    env["REDIS_PASSWORD"] = "compose-" + secrets.token_hex(8)
    env["CREDENTIALS_KEYS"] = "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    env["SECRET_KEY"] = secrets.token_urlsafe(64)
    server = urlsplit(os.environ["DATABASE_URL"])
    name = "compose_" + secrets.token_hex(4)
    admin = f"{server.scheme}://{server.netloc}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    data_dir = tmp_path / "data"
    # A Redis database of its own: other tests' workers beat into the session's database 0.
    own_redis = redis_url.rsplit("/", 1)[0] + "/11"
    redis.Redis.from_url(own_redis).flushdb()
    yield {
        **env,
        "compose_database": f"{server.scheme}://{server.netloc}/{name}",
        "compose_redis": own_redis,
        "AIBO_DATA_DIR": str(data_dir),
    }
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _service_env(name: str, deployment: dict[str, str]) -> dict[str, str]:
    service = COMPOSE["services"][name]
    env = {k: v for k, v in deployment.items() if not k.startswith("compose_")}
    for key, value in service.get("environment", {}).items():
        env[key] = _interpolate(str(value), deployment)
    # The compose network's names, here: postgres and redis are the test's servers.
    assert env["DATABASE_URL"].startswith("postgres://aibo:")
    env["DATABASE_URL"] = deployment["compose_database"]
    assert env["REDIS_URL"] == f"redis://:{deployment['REDIS_PASSWORD']}@redis:6379/0"
    env["REDIS_URL"] = deployment["compose_redis"]
    env["MARKET_FEED"] = "replay"  # no network here
    keep = ("PATH", "HOME", "LANG")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, **env}


def _command(argv: list[str]) -> list[str]:
    return [sys.executable, *argv[1:]] if argv[0] == "python" else argv


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = _command(argv) if argv[0] == "python" else [sys.executable, "-m", *argv]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _run_healthcheck(name: str, env: dict[str, str], port: int | None = None) -> int:
    test = COMPOSE["services"][name]["healthcheck"]["test"]
    assert test[0] == "CMD", test
    argv = _command(test[1:])
    if port is not None:
        argv = [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in argv]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=60).returncode


def _until(check: Any, seconds: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"{what}: the process ended ({proc.returncode}):\n{out[-3000:]}")
        assert time.monotonic() < deadline, f"{what} did not come up in {seconds} s"
        time.sleep(0.5)


@pytest.mark.redis
def test_each_service_runs_its_own_command_against_real_servers(
    deployment: dict[str, str],
) -> None:
    # migrate: a one-shot that must succeed before the others start
    env = _service_env("migrate", deployment)
    done = subprocess.run(_command(COMPOSE["services"]["migrate"]["command"]), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    running: list[subprocess.Popen[bytes]] = []
    try:
        # web: its uvicorn line, on a free port instead of 8000; healthy through /readyz
        env = _service_env("web", deployment)
        port = free_port()
        argv = [a if a != "8000" else str(port) for a in COMPOSE["services"]["web"]["command"]]
        argv = [a if a != "0.0.0.0" else "127.0.0.1" for a in argv]
        web = _start(argv, env)
        running.append(web)
        _until(lambda: _run_healthcheck("web", env, port) == 0, 60, "web's healthcheck", web)
        answer = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert answer.status == 200

        # worker: run_huey; healthy once its consumer has said it is alive
        env = _service_env("worker", deployment)
        assert _run_healthcheck("worker", env) != 0  # nothing runs yet: unhealthy
        worker = _start(COMPOSE["services"]["worker"]["command"], env)
        running.append(worker)
        _until(lambda: _run_healthcheck("worker", env) == 0, 60, "worker's healthcheck", worker)

        # feed: run_market_feed (the replay here); healthy once it says where prices come from
        env = _service_env("feed", deployment)
        feed = _start(COMPOSE["services"]["feed"]["command"], env)
        running.append(feed)
        _until(lambda: _run_healthcheck("feed", env) == 0, 90, "feed's healthcheck", feed)
    finally:
        for proc in running:
            proc.terminate()
        for proc in running:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
