"""`manage.py check --deploy` refuses public secrets and, in the scaled deployment, missing
credentials keys or a CREDENTIALS_KEY shared with SECRET_KEY (issue 10, finding 9); every
`manage.py check` refuses a malformed keyring (issue 13)."""

from __future__ import annotations

import base64
import re
import secrets
from pathlib import Path

from cryptography.fernet import Fernet
from django.core.checks import run_checks

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / ".env.example").read_text()


def aibo_issues(deploy: bool = True) -> set[str]:
    found = run_checks(include_deployment_checks=deploy)
    return {m.id for m in found if m.id.startswith("aibo.")}


def new_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def example(name: str) -> str:
    match = re.search(rf"^#? ?{name}=(\S+)$", EXAMPLE, re.M)
    assert match, name
    return match.group(1)


def test_deploy_check_refuses_the_placeholder_secret_key(settings):
    settings.SECRET_KEY = example("SECRET_KEY")
    assert "aibo.E001" in aibo_issues()
    # The placeholder .env.example shipped before, still in .env files copied from it.
    settings.SECRET_KEY = "change-me-to-a-long-random-string-of-at-least-fifty-characters-please"
    assert "aibo.E001" in aibo_issues()
    settings.SECRET_KEY = "a-real-one-" + "Q7x" * 20
    assert "aibo.E001" not in aibo_issues()


def test_deploy_check_refuses_placeholder_service_passwords(settings):
    settings.REDIS_URL = f"redis://:{example('REDIS_PASSWORD')}@redis:6379/0"
    assert "aibo.E006" in aibo_issues()
    settings.REDIS_URL = "redis://redis:6379/0"
    assert "aibo.W001" in aibo_issues()  # no password at all
    settings.REDIS_URL = "redis://:Zr8-not-public@redis:6379/0"
    assert not {"aibo.E006", "aibo.W001"} & aibo_issues()


def test_deploy_check_requires_a_separate_credentials_key(settings):
    settings.DEBUG, settings.EMBEDDED = False, False  # the scaled deployment
    settings.SECRET_KEY = "a-real-one-" + "Q7x" * 20
    settings.CREDENTIALS_KEY = ""
    assert "aibo.E004" in aibo_issues()
    settings.CREDENTIALS_KEY = settings.SECRET_KEY = Fernet.generate_key().decode()
    assert "aibo.E005" in aibo_issues()
    settings.CREDENTIALS_KEY = "not-a-fernet-key"
    assert "aibo.E003" in aibo_issues()
    settings.CREDENTIALS_KEY = Fernet.generate_key().decode()
    assert not aibo_issues() & {"aibo.E003", "aibo.E004", "aibo.E005"}
    # The embedded default derives it from SECRET_KEY (keys stored so far stay readable).
    settings.EMBEDDED, settings.CREDENTIALS_KEY = True, ""
    assert "aibo.E004" not in aibo_issues()


def test_a_keyring_stands_in_for_the_former_credentials_key(settings):
    settings.DEBUG, settings.EMBEDDED = False, False
    settings.SECRET_KEY = "a-real-one-" + "Q7x" * 20
    settings.CREDENTIALS_KEY = ""
    settings.CREDENTIALS_KEYS = f"k2:{new_key()},k1:{new_key()}"
    assert not aibo_issues() & {"aibo.E003", "aibo.E004", "aibo.E005", "aibo.E007"}


def test_every_check_refuses_a_malformed_keyring_and_says_why(settings):
    settings.CREDENTIALS_KEYS = "k1:too-short"
    messages = [m for m in run_checks(include_deployment_checks=False) if m.id == "aibo.E007"]
    assert len(messages) == 1
    assert "the key must be 32 bytes in base64" in messages[0].msg
    assert "too-short" not in messages[0].msg  # a key is never quoted
    assert "base64.urlsafe_b64encode(secrets.token_bytes(32))" in (messages[0].hint or "")
    settings.CREDENTIALS_KEYS = f"k1:{new_key()}"
    assert "aibo.E007" not in aibo_issues(deploy=False)


def test_deploy_check_refuses_a_keyring_copied_from_the_example(settings, tmp_path, monkeypatch):
    from aibo import checks

    ring = f"k1:{new_key()}"
    example_file = tmp_path / ".env.example"
    example_file.write_text(f"# CREDENTIALS_KEYS={ring}\n")
    original = checks.placeholders
    monkeypatch.setattr(checks, "placeholders", lambda: original(example_file))
    settings.CREDENTIALS_KEYS = ring
    assert "aibo.E008" in aibo_issues()
    settings.CREDENTIALS_KEYS = f"k1:{new_key()}"
    assert "aibo.E008" not in aibo_issues()
