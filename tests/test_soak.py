"""Issue 16: bench/soak.py runs in the suite at a small size: the deployed processes (the feed
replaying fast, a Huey worker) trade paper bots on PostgreSQL and Redis with no error, no
duplicate order and no bot in error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import postgres_available, skip_or_fail

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.redis
def test_a_small_soak_finds_no_error_and_no_duplicate_order(redis_url: str) -> None:
    if not postgres_available():
        skip_or_fail("PostgreSQL is not installed: the soak needs it")
    env = {**os.environ, "REDIS_URL": redis_url.rsplit("/", 1)[0] + "/12"}
    run = subprocess.run(
        [sys.executable, "bench/soak.py", "--bots", "12", "--workers", "1", "--minutes", "0.5",
         "--speed", "30"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "soak: errors 0, duplicate orders 0, bots in error 0" in run.stdout
    assert " round trips" in run.stdout and "database growth:" in run.stdout
