"""Issue 10, findings 5 and 6: sign-in throttled by account and client together, the admin's
login too; X-Forwarded-For only through trusted proxies; Retry-After on every 429; a password
reset that works; sign-up that is throttled and does not say which addresses have accounts."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client
from django.urls import reverse

from accounts import throttle
from accounts.models import User

pytestmark = pytest.mark.django_db

PW = "pw-Tr4der!x"  # the ``user`` fixture's password
LOGIN = reverse("accounts:login")
REGISTER = reverse("accounts:register")
RESET = reverse("accounts:password_reset")
HOME, ELSEWHERE = "198.51.100.7", "203.0.113.66"


def login(client: Client, email: str, password: str, ip: str = HOME, **meta: str) -> Any:
    data = {"username": email, "password": password}
    return client.post(LOGIN, data, REMOTE_ADDR=ip, **meta)


def register(client: Client, email: str, ip: str = HOME, **overrides: str) -> Any:
    data = {"email": email, "password1": "a-Long-pw-123", "password2": "a-Long-pw-123"}
    return client.post(REGISTER, {**data, **overrides}, REMOTE_ADDR=ip, follow=True)


def retry_after(response: Any) -> int:
    assert response.status_code == 429
    return int(response["Retry-After"])


# --- the counter ---------------------------------------------------------------------------------


def test_hit_counts_in_a_window_and_says_how_long_is_left(monkeypatch):
    clock = SimpleNamespace(time=lambda: 1000.0)
    monkeypatch.setattr(throttle, "time", clock)
    assert throttle.hit("preview", "203.0.113.1", 2, 60) is None
    assert throttle.hit("preview", "203.0.113.1", 2, 60) is None
    assert throttle.hit("preview", "203.0.113.1", 2, 60) == 60
    clock.time = lambda: 1045.5
    assert throttle.hit("preview", "203.0.113.1", 2, 60) == 15  # the window is not stretched
    assert throttle.hit("preview", "203.0.113.2", 2, 60) is None  # another key
    assert throttle.hit("candles", "203.0.113.1", 2, 60) is None  # another scope
    throttle.reset("preview", "203.0.113.1")
    assert throttle.hit("preview", "203.0.113.1", 2, 60) is None


# --- sign-in -------------------------------------------------------------------------------------


def test_admin_login_is_throttled(client, django_user_model, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    django_user_model.objects.create_superuser(email="ops@example.com", password="ops-Pw-2024!")
    assert client.get("/admin/login/").status_code == 200
    for _ in range(3):
        wrong = {"username": "ops@example.com", "password": "wrong"}
        assert client.post("/admin/login/", wrong).status_code == 200
    right = {"username": "ops@example.com", "password": "ops-Pw-2024!", "next": "/admin/"}
    response = client.post("/admin/login/", right)
    assert 0 < retry_after(response) <= settings.LOGIN_FAILURE_WINDOW_SECONDS
    assert "Too many failed sign-in attempts" in response.text
    assert "_auth_user_id" not in client.session
    # One set of counters: the site's login is closed to this pair as well.
    assert login(client, "ops@example.com", "ops-Pw-2024!", ip="127.0.0.1").status_code == 429


def test_admin_login_still_signs_staff_in(client, django_user_model):
    django_user_model.objects.create_superuser(email="ops@example.com", password="ops-Pw-2024!")
    right = {"username": "ops@example.com", "password": "ops-Pw-2024!", "next": "/admin/"}
    response = client.post("/admin/login/", right)
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_a_stranger_cannot_lock_the_owner_out(user, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_CLIENT_FAILURE_LIMIT = 3
    settings.LOGIN_ACCOUNT_FAILURE_LIMIT = 9
    owner = Client()
    assert login(owner, user.email, PW).status_code == 302  # this browser is now known
    owner.post(reverse("accounts:logout"))

    # A stranger's failures close the account to the stranger ...
    stranger = Client()
    for _ in range(3):
        assert login(stranger, user.email, "guess", ip=ELSEWHERE).status_code == 200
    first = retry_after(login(stranger, user.email, PW, ip=ELSEWHERE))
    # ... for the window only: attempts while locked out are not counted and do not renew it.
    for _ in range(10):
        login(stranger, user.email, "guess", ip=ELSEWHERE)
    assert retry_after(login(stranger, user.email, PW, ip=ELSEWHERE)) <= first
    # The owner, from anywhere else, is not held back, even in a browser never used before.
    assert login(Client(), user.email, PW, ip="192.0.2.44").status_code == 302

    # Many addresses together close the account to browsers it has never signed in from ...
    for i in range(2):
        for _ in range(3):
            login(Client(), user.email, "guess", ip=f"203.0.113.{10 + i}")
    unknown = login(Client(), user.email, PW, ip="192.0.2.99")
    assert retry_after(unknown) > 0
    assert "accepts sign-ins only from browsers that signed in to it before" in unknown.text
    # ... but never to the owner's own browser, even on the stranger's (locked) address.
    assert login(owner, user.email, PW, ip=ELSEWHERE).status_code == 302


def test_a_known_browser_gets_only_its_own_failures(user, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    browser = Client()
    login(browser, user.email, PW)
    browser.post(reverse("accounts:logout"))
    for _ in range(2):
        assert login(browser, user.email, "typo").status_code == 200
    assert login(browser, user.email, PW).status_code == 429  # a stolen cookie guesses slowly too


def test_a_password_reset_lets_its_browser_in_while_the_account_is_closed(
    user, settings, mailoutbox
):
    settings.LOGIN_FAILURE_LIMIT = 2
    settings.LOGIN_ACCOUNT_FAILURE_LIMIT = 4
    for i in range(2):
        for _ in range(2):
            login(Client(), user.email, "guess", ip=f"203.0.113.{20 + i}")
    laptop = Client()
    assert login(laptop, user.email, PW).status_code == 429
    laptop.post(RESET, {"email": user.email})
    link = re.search(r"http://testserver(\S+)", mailoutbox[0].body)[1]
    form = laptop.get(link)["Location"]
    laptop.post(form, {"new_password1": "brand-New-pw-77", "new_password2": "brand-New-pw-77"})
    assert login(laptop, user.email, "brand-New-pw-77").status_code == 302


def test_forwarded_for_counts_only_behind_a_trusted_proxy(rf, client, settings):
    # Nothing trusted (the default): the loopback is no exception, the header is ignored.
    spoofed = rf.post("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert throttle.client_ip(spoofed) == "127.0.0.1"

    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "::1"]
    chain = "6.6.6.6, 198.51.100.9, 10.0.0.7"  # client-made, the client, an inner proxy
    assert throttle.client_ip(rf.get("/", REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR=chain)) == (
        "198.51.100.9"
    )
    untrusted = rf.get("/", REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="198.51.100.9")
    assert throttle.client_ip(untrusted) == "203.0.113.5"
    assert throttle.client_ip(rf.get("/", REMOTE_ADDR="::1")) == "::1"

    # Behind the proxy each client has its own bucket, and a forged hop does not leave it.
    settings.LOGIN_CLIENT_FAILURE_LIMIT = 3
    proxy = {"ip": "10.0.0.2"}
    for i in range(3):
        login(client, f"u{i}@example.com", "x", HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy)
    assert (
        login(client, "new@example.com", "x", HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy)
    ).status_code == 429
    forged = "192.0.2.1, 198.51.100.1"  # the proxy appended the real address on the right
    assert (
        login(client, "new@example.com", "x", HTTP_X_FORWARDED_FOR=forged, **proxy)
    ).status_code == 429
    assert (
        login(client, "new@example.com", "x", HTTP_X_FORWARDED_FOR="198.51.100.2", **proxy)
    ).status_code == 200


def test_a_bad_trusted_proxies_setting_fails_the_system_check(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "not-an-address"]
    with pytest.raises(SystemCheckError, match="TRUSTED_PROXIES"):
        call_command("check")


def test_throttled_answers_carry_retry_after(client, user, settings):
    settings.LOGIN_FAILURE_LIMIT = 1
    settings.REGISTRATIONS_PER_CLIENT_PER_HOUR = 0
    settings.PASSWORD_RESETS_PER_CLIENT_PER_HOUR = 0
    login(client, user.email, "wrong")
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    assert window - 5 <= retry_after(login(client, user.email, PW)) <= window
    admin = client.post("/admin/login/", {"username": user.email, "password": PW}, REMOTE_ADDR=HOME)
    assert window - 5 <= retry_after(admin) <= window
    assert 3595 <= retry_after(register(client, "fresh@example.com")) <= 3600
    assert 3595 <= retry_after(client.post(RESET, {"email": user.email})) <= 3600


# --- password reset ------------------------------------------------------------------------------


def test_password_reset_flow_sends_a_working_link(client, user, mailoutbox):
    response = client.post(RESET, {"email": user.email.upper()})
    assert response["Location"] == reverse("accounts:password_reset_done")
    assert "If the address you entered has an account" in client.get(response["Location"]).text
    (mail,) = mailoutbox
    assert mail.to == [user.email]
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", mail.body)[1]
    form = client.get(link)
    assert form.status_code == 302  # Django hides the token from the page's Referer
    assert "Choose a new password" in client.get(form["Location"]).text
    done = client.post(
        form["Location"], {"new_password1": "brand-New-pw-77", "new_password2": "brand-New-pw-77"}
    )
    assert done["Location"] == reverse("accounts:password_reset_complete")
    assert "This link no longer works" in client.get(link, follow=True).text  # once only
    assert login(Client(), user.email, "brand-New-pw-77").status_code == 302


def test_password_reset_answers_the_same_whether_or_not_the_address_has_an_account(
    client, user, mailoutbox
):
    known = client.post(RESET, {"email": user.email})
    unknown = client.post(RESET, {"email": "nobody@example.com"})
    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
    assert [m.to for m in mailoutbox] == [[user.email]]


def test_password_reset_requests_are_throttled_per_client_and_mails_per_address(
    client, user, settings, mailoutbox
):
    settings.PASSWORD_RESETS_PER_CLIENT_PER_HOUR = 2
    for _ in range(2):
        assert client.post(RESET, {"email": "a@example.com"}, REMOTE_ADDR=HOME).status_code == 302
    refused = client.post(RESET, {"email": user.email}, REMOTE_ADDR=HOME)
    assert retry_after(refused) > 0
    assert "Too many reset requests from your network" in refused.text
    # From many addresses, one inbox still gets at most MAILS_PER_ADDRESS_PER_HOUR.
    for i in range(5):
        answer = client.post(RESET, {"email": user.email}, REMOTE_ADDR=f"192.0.2.{i}")
        assert answer.status_code == 302
    assert len(mailoutbox) == throttle.MAILS_PER_ADDRESS_PER_HOUR


# --- sign-up -------------------------------------------------------------------------------------


def _same_page(text: str, email: str) -> str:
    # The CSRF tokens differ from client to client; the address typed is echoed back.
    return re.sub(r"[A-Za-z0-9]{64}", "TOKEN", text).replace(email, "EMAIL")


def test_registration_answers_the_same_for_taken_and_new_emails(user, mailoutbox):
    new = register(Client(), "fresh@example.com")
    other_pw = {"password1": "x-Other-pw-9", "password2": "x-Other-pw-9"}
    taken = register(Client(), user.email.upper(), **other_pw)
    assert new.redirect_chain == taken.redirect_chain == [(LOGIN, 302)]
    assert _same_page(new.text, "fresh@example.com") == _same_page(taken.text, user.email)
    # What differs goes to the inbox: a welcome for the new address, a notice for the owner.
    assert User.objects.filter(email="fresh@example.com").exists()
    assert User.objects.count() == 2
    user.refresh_from_db()
    assert user.check_password(PW)
    welcome, notice = mailoutbox
    assert (welcome.to, welcome.subject) == (["fresh@example.com"], "Welcome to aibo")
    assert notice.to == [user.email]
    assert notice.subject == "Someone tried to register with your address"
    assert "http://testserver/accounts/password/reset/" in notice.body


def test_registration_is_throttled_per_client(settings):
    settings.REGISTRATIONS_PER_CLIENT_PER_HOUR = 2
    browser = Client()
    mismatch = register(browser, "a@example.com", password2="not-the-same-1")
    assert mismatch.status_code == 200  # a form error: not counted
    assert register(browser, "a@example.com").status_code == 200
    assert register(browser, "b@example.com").status_code == 200
    refused = register(browser, "c@example.com")
    assert retry_after(refused) > 0
    assert "Too many sign-ups from your network" in refused.text
    assert not User.objects.filter(email="c@example.com").exists()
    assert register(Client(), "c@example.com", ip=ELSEWHERE).redirect_chain == [(LOGIN, 302)]


def test_the_counters_hold_on_redis_as_in_the_scaled_deployment(redis_url, user, settings):
    from django.core.cache import cache, caches

    settings.CACHES = {"default": {"BACKEND": "aibo.cache.RedisCache", "LOCATION": redis_url}}
    assert type(caches["default"]).__name__ == "RedisCache"
    cache.clear()
    settings.LOGIN_FAILURE_LIMIT = 2
    assert throttle.hit("preview", "203.0.113.1", 1, 60) is None
    assert 59 <= throttle.hit("preview", "203.0.113.1", 1, 60) <= 60
    for _ in range(2):
        login(Client(), user.email, "guess", ip=ELSEWHERE)
    assert retry_after(login(Client(), user.email, PW, ip=ELSEWHERE)) > 0
    assert login(Client(), user.email, PW).status_code == 302
    cache.clear()
