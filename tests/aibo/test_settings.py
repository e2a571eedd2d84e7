"""The embedded default is production-like (issue 10, findings 4 and 9): DEBUG off unless asked
for, static files still served, a persisted secret key, and a private data directory."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _django(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``code`` after django.setup() in a fresh process with only ``env`` set of ours."""
    ours = {"DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "HTTPS"}
    clean = {k: v for k, v in os.environ.items() if k not in ours}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "aibo.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


SERVE = """
from django.conf import settings as s
from django.core.management import call_command
from django.test import Client
import re
call_command("collectstatic", interactive=False, verbosity=0)  # what `make run` does first
client = Client(headers={"host": "localhost"})
page = client.get("/accounts/login/")
assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
print(s.DEBUG, s.ALLOWED_HOSTS, page.status_code, s.SESSION_COOKIE_SECURE)
for url in assets:
    print(url, client.get(url).status_code)
"""


def test_the_default_runs_with_debug_off(tmp_path):
    result = _django(SERVE, AIBO_DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    first, *assets = result.stdout.splitlines()
    # Plain HTTP on this machine: no secure-only cookies that the browser would drop.
    assert first == "False ['127.0.0.1', 'localhost', '[::1]'] 200 False"
    # WhiteNoise serves the collected, hashed files: ours and the npm libraries (node_modules).
    served = dict(line.rsplit(" ", 1) for line in assets)
    assert any(re.search(r"/vendor/htmx/htmx\.min\.\w{12}\.js$", url) for url in served), served
    assert any("/css/aibo." in url for url in served), served
    assert set(served.values()) == {"200"}, served
    # The generated secret key is kept (sessions survive restarts), whatever DEBUG is.
    key = (tmp_path / "secret_key").read_text()
    assert len(key) >= 64 and mode(tmp_path / "secret_key") == 0o600
    again = _django("from django.conf import settings as s; print(s.SECRET_KEY)",
                    AIBO_DATA_DIR=str(tmp_path))  # fmt: skip
    assert again.stdout.strip() == key
    # DEBUG is opt-in.
    opted = _django("from django.conf import settings as s; print(s.DEBUG)",
                    AIBO_DATA_DIR=str(tmp_path), DEBUG="1")  # fmt: skip
    assert opted.stdout.strip() == "True"


def test_data_dir_is_private(tmp_path):
    # An existing data directory of an earlier version, readable by everyone.
    old = tmp_path / "old"
    old.mkdir()
    for name in ("secret_key", "aibo.sqlite3", "huey.sqlite3"):
        (old / name).write_text("k" * 64 if name == "secret_key" else "")
        (old / name).chmod(0o644)
    old.chmod(0o755)
    new = tmp_path / "new" / "data"  # and one that does not exist yet
    # Write to the database and list the files while it is open (its -wal and -shm go at close).
    write_and_list = (
        "import os, stat; from django.conf import settings; from django.db import connection; "
        "connection.cursor().execute('CREATE TABLE probe (x int)'); "
        "connection.cursor().execute('INSERT INTO probe VALUES (1)'); "
        "[print(e.name, oct(stat.S_IMODE(e.stat().st_mode))) "
        " for e in os.scandir(settings.DATA_DIR) if e.is_file()]"
    )
    for data_dir in (old, new):
        result = _django(write_and_list, AIBO_DATA_DIR=str(data_dir))
        assert result.returncode == 0, result.stderr
        assert mode(data_dir) == 0o700
        files = dict(line.split() for line in result.stdout.splitlines())
        assert {"secret_key", "aibo.sqlite3", "huey.sqlite3", "aibo.sqlite3-wal"} <= set(files)
        assert set(files.values()) == {"0o600"}, files
    assert (old / "secret_key").read_text() == "k" * 64  # an existing key is kept


def test_a_shared_directory_is_refused_as_the_data_dir(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: tightening it would lock its other users out
    result = _django("", AIBO_DATA_DIR=str(shared))
    assert result.returncode != 0
    assert "AIBO_DATA_DIR must be aibo's own directory" in result.stderr
    assert mode(shared) == 0o1777
