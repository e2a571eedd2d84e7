"""Each password error under the box it is about (issue 14): what is wrong with the new password
("too short", "too common", "too similar to the address") under the password, "do not match"
under the confirmation. Django puts them all under the confirmation."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

pytestmark = pytest.mark.django_db

STRONG = "a-Long-pw-123"


def errors_under(html: str, field: str) -> str:
    """The text of the errors shown under ``field`` (its ``…-errors`` box)."""
    box = re.search(rf'id="id_{field}-errors">(.*?)</div>', html, re.S)
    assert box, f"no error box for {field}"
    return re.sub(r"<[^>]+>", " ", box.group(1)).strip()


def register(client, password1: str, password2: str) -> str:
    data = {"email": "new@example.com", "password1": password1, "password2": password2}
    response = client.post(reverse("accounts:register"), data)
    assert response.status_code == 200
    return response.text


def test_a_short_password_is_refused_under_the_password_not_the_confirmation(client):
    html = register(client, "Zq7!x", "Zq7!x")
    assert "too short" in errors_under(html, "password1")
    assert errors_under(html, "password2") == ""


def test_passwords_that_differ_are_refused_under_the_confirmation(client):
    html = register(client, STRONG, STRONG + "x")
    assert errors_under(html, "password1") == ""
    assert "match" in errors_under(html, "password2")


def test_a_short_password_and_a_different_confirmation_each_get_their_own_error(client):
    html = register(client, "Zq7!x", "Zq7!y")
    assert "too short" in errors_under(html, "password1")
    assert "match" not in errors_under(html, "password1")
    assert "match" in errors_under(html, "password2")
    assert "too short" not in errors_under(html, "password2")


def test_a_common_or_numeric_password_is_refused_under_the_password(client):
    html = register(client, "12345678901", "12345678901")
    under = errors_under(html, "password1")
    assert "too common" in under and "entirely numeric" in under
    assert errors_under(html, "password2") == ""


def test_a_password_like_the_address_is_refused_under_the_password(client):
    html = register(client, "new@example.com", "new@example.com")
    assert "too similar" in errors_under(html, "password1")
    assert errors_under(html, "password2") == ""


def test_nothing_is_registered_when_the_password_is_refused(client, django_user_model):
    register(client, "Zq7!x", "Zq7!x")
    assert not django_user_model.objects.exists()


def change(client, password1: str, password2: str) -> str:
    data = {"old_password": "pw-Tr4der!x", "new_password1": password1, "new_password2": password2}
    response = client.post(reverse("accounts:password_change"), data)
    assert response.status_code == 200
    return response.text


def test_password_change_puts_too_short_under_the_new_password(client, user):
    client.force_login(user)
    html = change(client, "Zq7!x", "Zq7!y")
    assert "too short" in errors_under(html, "new_password1")
    assert "match" in errors_under(html, "new_password2")
    assert "too short" not in errors_under(html, "new_password2")
    user.refresh_from_db()
    assert user.check_password("pw-Tr4der!x")


def test_password_change_puts_a_mismatch_under_the_confirmation_only(client, user):
    client.force_login(user)
    html = change(client, STRONG, STRONG + "x")
    assert errors_under(html, "new_password1") == ""
    assert "match" in errors_under(html, "new_password2")


def test_password_change_still_checks_the_old_password_under_its_box(client, user):
    client.force_login(user)
    data = {"old_password": "wrong", "new_password1": STRONG, "new_password2": STRONG}
    html = client.post(reverse("accounts:password_change"), data).text
    assert "incorrectly" in errors_under(html, "old_password")


def test_a_reset_link_puts_each_error_under_its_box(client, user):
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    link = reverse("accounts:password_reset_confirm", args=[uid, token])
    form_url = client.get(link)["Location"]  # Django swaps the token for a session marker
    data = {"new_password1": "Zq7!x", "new_password2": "Zq7!y"}
    html = client.post(form_url, data).text
    assert "too short" in errors_under(html, "new_password1")
    assert "match" in errors_under(html, "new_password2")
    assert "too short" not in errors_under(html, "new_password2")
