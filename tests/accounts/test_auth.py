from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import User

pytestmark = pytest.mark.django_db


def test_register_creates_user_with_hashed_password_and_asks_to_sign_in(client, mailoutbox):
    response = client.post(
        reverse("accounts:register"),
        {"email": "New@Example.com", "password1": "a-Long-pw-123", "password2": "a-Long-pw-123"},
        follow=True,
    )
    assert response.redirect_chain == [(reverse("accounts:login"), 302)]
    assert "sign in with the password you just chose" in response.text
    assert 'value="new@example.com"' in response.text  # the sign-in form is filled in
    user = User.objects.get(email="new@example.com")
    assert user.password.startswith("argon2")
    assert [m.subject for m in mailoutbox] == ["Welcome to aibo"]
    client.post(
        reverse("accounts:login"), {"username": "new@example.com", "password": "a-Long-pw-123"}
    )
    assert client.get(reverse("bots:dashboard")).status_code == 200


def test_login_with_email_and_logout(client, user):
    response = client.post(
        reverse("accounts:login"), {"username": user.email, "password": "pw-Tr4der!x"}
    )
    assert response.status_code == 302
    assert client.get(reverse("bots:dashboard")).status_code == 200
    client.post(reverse("accounts:logout"))
    assert client.get(reverse("bots:dashboard")).status_code == 302


def test_dashboard_requires_login(client):
    response = client.get(reverse("bots:dashboard"))
    assert response.status_code == 302
    assert reverse("accounts:login") in response["Location"]


def test_repeated_failures_for_one_email_are_throttled_with_429(client, user, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    for _ in range(3):
        r = client.post(reverse("accounts:login"), {"username": user.email, "password": "wrong"})
        assert r.status_code == 200
    r = client.post(reverse("accounts:login"), {"username": user.email, "password": "pw-Tr4der!x"})
    assert r.status_code == 429
    assert "Too many failed sign-in attempts" in r.text
    assert "_auth_user_id" not in client.session


def test_repeated_failures_from_one_ip_across_emails_are_throttled(client, settings):
    settings.LOGIN_CLIENT_FAILURE_LIMIT = 3
    for i in range(3):
        client.post(reverse("accounts:login"), {"username": f"u{i}@x.com", "password": "wrong"})
    r = client.post(reverse("accounts:login"), {"username": "fresh@x.com", "password": "wrong"})
    assert r.status_code == 429


def test_password_change(client, user):
    client.force_login(user)
    r = client.post(
        reverse("accounts:password_change"),
        {
            "old_password": "pw-Tr4der!x",
            "new_password1": "another-Long-pw-9",
            "new_password2": "another-Long-pw-9",
        },
    )
    assert r.status_code == 302
    user.refresh_from_db()
    assert user.check_password("another-Long-pw-9")


def test_admin_user_pages_work_with_email_login(admin_client, user):
    assert admin_client.get("/admin/accounts/user/").status_code == 200
    assert admin_client.get(f"/admin/accounts/user/{user.pk}/change/").status_code == 200
    assert admin_client.get("/admin/accounts/user/add/").status_code == 200


def test_runs_on_postgres_when_available(postgres):
    from django.db import connection

    assert connection.vendor == "postgresql"
