from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml
from cryptography.fernet import Fernet
from django.core.management import get_commands

from aibo.logging import JsonFormatter, RequestIdFilter
from tests.servers import free_port, skip_or_fail

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_healthz_says_alive(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_the_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "exchange_keys": "ok"}


@pytest.mark.django_db
def test_readyz_checks_redis_when_configured(client, settings, redis_url):
    settings.REDIS_URL = redis_url
    assert client.get("/readyz").json()["checks"]["redis"] == "ok"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"]["redis"].startswith("error")


@pytest.mark.django_db
def test_every_response_carries_a_request_id_and_logs_are_tagged(client, caplog):
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert generated["X-Request-ID"] != "bad id with spaces"
    assert len(generated["X-Request-ID"]) == 32


def test_json_log_lines_carry_the_request_id():
    from aibo.logging import current_request_id

    record = logging.LogRecord("aibo", logging.INFO, __file__, 1, "bot %s started", (7,), None)
    token = current_request_id.set("req-42")
    try:
        RequestIdFilter().filter(record)
    finally:
        current_request_id.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "bot 7 started"
    assert line["request_id"] == "req-42"
    assert line["level"] == "INFO"


def _django(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "aibo.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_embedded_default_needs_nothing_set(tmp_path):
    result = _django(
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND'], "
        "s.HUEY['huey_class'], s.DEBUG)",
        AIBO_DATA_DIR=str(tmp_path),
        SECRET_KEY="",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.sqlite3",
        "channels.layers.InMemoryChannelLayer",
        "huey.SqliteHuey",
        "False",
    ]
    # The generated secret key is kept, so sessions survive restarts.
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_database_and_redis_urls_switch_to_the_scaled_stack(tmp_path):
    result = _django(
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND'], "
        "s.HUEY['huey_class'], s.DEBUG)",
        AIBO_DATA_DIR=str(tmp_path),
        DATABASE_URL="postgres://u:p@db.internal:5432/aibo",
        REDIS_URL="redis://cache.internal:6379/0",
        SECRET_KEY="k" * 60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "channels_redis.pubsub.RedisPubSubChannelLayer",
        "huey.PriorityRedisHuey",
        "False",
    ]


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    # The scaled deployment's processes must share one key: none is made up for them.
    result = _django(
        "", AIBO_DATA_DIR=str(tmp_path), DATABASE_URL="postgres://u:p@db/aibo", SECRET_KEY=""
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
    assert not (tmp_path / "secret_key").exists()


def test_check_deploy_is_clean_in_production(tmp_path):
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            # The browser tests allow sync ORM calls in their thread; production never does.
            if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
        },
        "AIBO_DATA_DIR": str(tmp_path),
        "DEBUG": "0",
        "SECRET_KEY": "s3cr3t-" + "Zq9" * 20,
        "CREDENTIALS_KEY": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "aibo.example.com",
        "DATABASE_URL": "postgres://aibo:Pg-s3cr3t@db.internal:5432/aibo",
        "REDIS_URL": "redis://:R3dis-s3cr3t@cache.internal:6379/0",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_names_the_scaled_services_with_healthchecks():
    services = COMPOSE["services"]
    assert {"web", "worker", "feed", "postgres", "redis"} <= set(services)
    assert "timescale" in services["postgres"]["image"]
    for name in ("web", "postgres", "redis"):
        assert "healthcheck" in services[name], name
    assert (ROOT / ".env.example").exists()


def test_every_command_compose_runs_exists():
    commands = get_commands()
    for name, service in COMPOSE["services"].items():
        command = service.get("command")
        if not command or "image" in service and "build" not in service:
            continue
        if command[:2] == ["python", "manage.py"]:
            assert command[2] in commands, f"{name}: manage.py {command[2]} does not exist"
        elif command[0] == "uvicorn":
            module, attr = command[1].split(":")
            assert hasattr(__import__(module, fromlist=[attr]), attr), name
        else:
            pytest.fail(f"{name}: unexpected command {command}")


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not installed")
def test_docker_compose_config_accepts_the_file(tmp_path):
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed; the YAML-level checks ran")
    for name in ("compose.yaml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")  # compose reads env_file: .env
    result = subprocess.run(
        ["docker", "compose", "config", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``, filled in as compose does
    (a missing ``:?`` variable stops compose: KeyError here)."""

    def fill(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", fill, value)


@pytest.mark.redis
def test_compose_redis_requires_a_password(tmp_path):
    binary = shutil.which("redis-server")
    if not binary:
        skip_or_fail("redis-server is not installed: cannot run compose's Redis command")
    redis_service = COMPOSE["services"]["redis"]
    assert "--requirepass" in redis_service["command"]
    with pytest.raises(KeyError, match="REDIS_PASSWORD"):  # no password, no deployment
        _interpolate(" ".join(redis_service["command"]), {})
    env = {"REDIS_PASSWORD": "t3st-" + "pw" * 8}
    command = [_interpolate(part, env) for part in redis_service["command"]]
    assert command[0] == "redis-server"
    port = free_port()
    server = subprocess.Popen(
        [binary, *command[1:], "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "compose's redis-server did not start"
                time.sleep(0.05)
        with pytest.raises(redis.RedisError, match="(?i)auth"):
            redis.Redis(port=port).ping()
        # Every app container (web, worker, feed, migrate) gets the URL with the password.
        for name in ("web", "worker", "feed", "migrate"):
            url = _interpolate(COMPOSE["services"][name]["environment"]["REDIS_URL"], env)
            assert url.startswith(f"redis://:{env['REDIS_PASSWORD']}@redis:6379/"), name
        url = url.replace("@redis:6379", f"@127.0.0.1:{port}")
        assert redis.Redis.from_url(url).ping() is True
        # The healthcheck authenticates too (redis-cli reads REDISCLI_AUTH).
        if shutil.which("redis-cli"):
            test = redis_service["healthcheck"]["test"]
            check = ["sh", "-c", test[1].replace("redis-cli", f"redis-cli -p {port}")]
            auth = {k: _interpolate(v, env) for k, v in redis_service["environment"].items()}
            assert subprocess.run(check, env={**os.environ, **auth}, timeout=10).returncode == 0
            plain = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
            refused = subprocess.run(check, env=plain, capture_output=True, timeout=10)
            assert refused.returncode != 0
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_env_example_gives_redis_a_password():
    example = (ROOT / ".env.example").read_text()
    assert re.search(r"^REDIS_PASSWORD=\S+", example, re.M)
    assert re.search(r"^# REDIS_URL=redis://:REDIS_PASSWORD@", example, re.M)
