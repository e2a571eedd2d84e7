"""Issue 10, finding 10: a strict Content-Security-Policy, no inline code, idle sessions end."""

from __future__ import annotations

import re
import time
from pathlib import Path

from django.contrib.sessions.models import Session
from django.test import Client

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_every_page_carries_a_strict_content_security_policy(client: Client, user) -> None:
    client.force_login(user)
    for path in ("/", "/bots/new/", "/accounts/keys/", "/accounts/login/"):
        policy = client.get(path).headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
        assert directives["script-src"] == "'self'", path
        assert directives["style-src"] == "'self'", path
        assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
        assert "unsafe" not in policy, policy


def test_no_template_holds_inline_code_or_styles() -> None:
    """What the policy would refuse: inline scripts, on* handlers, style attributes and tags.
    (Every browser test also fails on any refusal the browser reports.)"""
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+\s*=|\sstyle\s*=|<style\b", re.I)
    found = [
        f"{path.relative_to(TEMPLATES)}: {m.group(0)}"
        for path in TEMPLATES.rglob("*.html")
        for m in inline.finditer(path.read_text())
    ]
    assert not found, found


def test_sessions_end_when_idle(client: Client, user, settings) -> None:
    settings.SESSION_COOKIE_AGE = 600
    client.force_login(user)
    assert client.get("/").status_code == 200
    session = Session.objects.get()
    left = session.expire_date.timestamp() - time.time()
    assert 590 < left <= 600  # renewed by the request: ten minutes from now
    Session.objects.update(expire_date=session.expire_date.replace(year=2000))
    assert client.get("/").status_code == 302  # gone idle: sign in again
