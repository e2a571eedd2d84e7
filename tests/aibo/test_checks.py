"""`manage.py check --deploy` refuses public secrets and, in the scaled deployment, a missing
or shared CREDENTIALS_KEY (issue 10, finding 9)."""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.fernet import Fernet
from django.core.checks import run_checks

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / ".env.example").read_text()


def aibo_issues() -> set[str]:
    return {m.id for m in run_checks(include_deployment_checks=True) if m.id.startswith("aibo.")}


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
