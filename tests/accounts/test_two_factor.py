"""Issue 10, finding 10: two-factor sign-in (TOTP) with one-time recovery codes, on the real
django-otp. Codes are computed from the device's own key (django_otp.oath.TOTP) at a clock the
test moves: each code comes from a fresh 30-second step, since a step's code works once."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp import models as totp_models
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import two_factor
from accounts.models import ExchangeCredential, User
from aibo import ws
from aibo.asgi import application

pytestmark = pytest.mark.django_db

PW = "pw-Tr4der!x"  # the ``user`` fixture's password
LOGIN = reverse("accounts:login")
CODE = reverse("accounts:login_code")
SETUP = reverse("accounts:two_factor")
NEW_CODES = reverse("accounts:two_factor_codes")
OFF = reverse("accounts:two_factor_off")
KEYS = reverse("accounts:credentials")
API_KEY, SECRET = "aibo-2fa-key-AbCd1234wxyz", "aibo-2fa-secret-QrSt5678uvZZ"


class Clock:
    """The time django-otp's TOTP devices see, a step boundary to begin with."""

    def __init__(self) -> None:
        self.now = 30.0 * 58_333_333

    def code(self, device: TOTPDevice) -> str:
        """The app's code in the next 30-second step (a step's code works only once)."""
        self.now += 30
        device.refresh_from_db()
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
        totp.time = self.now
        return f"{totp.token():0{device.digits}d}"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(totp_models, "time", SimpleNamespace(time=lambda: clock.now))
    return clock


@pytest.fixture
def no_backoff(settings: Any) -> None:
    """Without django-otp's own back-off per device (1, 2, 4, ... s after each wrong code), so
    a test may retry at once; the account's counter still applies."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0


@pytest.fixture
def on(user: User) -> SimpleNamespace:
    """Two-factor sign-in turned on for ``user``: its app device and its recovery codes."""
    device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    return SimpleNamespace(device=device, codes=two_factor.new_recovery_codes(user))


def password(client: Client, user: User, **extra: str) -> Any:
    return client.post(LOGIN, {"username": user.email, "password": PW, **extra})


def signed_in_with_code(client: Client, user: User, code: str) -> Any:
    assert password(client, user).status_code == 302
    return client.post(CODE, {"code": code})


def credential(owner: User, label: str = "Main account") -> ExchangeCredential:
    cred = ExchangeCredential(owner=owner, label=label)
    cred.set_keys(API_KEY, SECRET)
    cred.save()
    return cred


def shown_codes(html: str) -> list[str]:
    return re.findall(r"<li><code>([a-z2-7]{4}-[a-z2-7]{4})</code></li>", html)


# --- turning it on -------------------------------------------------------------------------------


def test_two_factor_setup_needs_a_valid_code(client, user, clock, no_backoff):
    client.force_login(user)
    page = client.get(SETUP)
    assert page.status_code == 200
    assert page["Cache-Control"].startswith("max-age=0")  # the key is on it: never cached
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    html = page.text
    assert '<img src="data:image/svg+xml' in html  # the QR code, allowed by the CSP
    assert two_factor.secret_text(device) in html  # and the key for typing it in
    assert " style=" not in html and "<style" not in html and "<script>" not in html
    assert client.get(SETUP).text.count(two_factor.secret_text(device)) == 1  # same key
    assert TOTPDevice.objects.filter(user=user).count() == 1

    right = clock.code(device)
    wrong = client.post(SETUP, {"code": f"{(int(right) + 1) % 10**6:06d}"})
    assert wrong.status_code == 200
    assert "That code is not right" in wrong.text
    assert not two_factor.is_on(user)

    turned_on = client.post(SETUP, {"code": right})
    assert turned_on.status_code == 200
    assert "Two-factor sign-in is on" in turned_on.text
    codes = shown_codes(turned_on.text)
    assert len(codes) == two_factor.RECOVERY_CODES == 10
    stored = StaticToken.objects.filter(device__user=user).values_list("token", flat=True)
    assert sorted(c.replace("-", "") for c in codes) == sorted(stored)
    device.refresh_from_db()
    assert device.confirmed and two_factor.is_on(user)
    # This session was signed in with the code it just gave; the codes are not shown again.
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    after = client.get(SETUP)
    assert "Two-factor sign-in is on" in after.text and shown_codes(after.text) == []


def test_the_keys_page_recommends_two_factor_and_links_it(client, user, clock):
    client.force_login(user)
    assert 'href="/accounts/two-factor/"' in client.get("/").text  # in the nav
    credential(user)
    page = client.get(KEYS).text
    assert "You hold exchange keys: protect them with two-factor sign-in" in page
    assert f'href="{SETUP}"' in page
    client.get(SETUP)
    client.post(SETUP, {"code": clock.code(TOTPDevice.objects.get(user=user))})
    page = client.get(KEYS).text
    assert "protect them" not in page and "Two-factor sign-in is on" in page


def test_turning_two_factor_on_signs_out_sessions_without_a_code(client, user, clock):
    elsewhere = Client()
    elsewhere.force_login(user)  # signed in with the password alone, before two-factor
    client.force_login(user)
    client.get(SETUP)
    client.post(SETUP, {"code": clock.code(TOTPDevice.objects.get(user=user))})
    assert client.get("/").status_code == 200
    assert elsewhere.get("/").status_code == 302
    assert Session.objects.count() == 1


# --- signing in ----------------------------------------------------------------------------------


def test_sign_in_asks_for_the_code_after_the_password(client, user, on, clock):
    response = password(client, user, next=KEYS)
    assert response.status_code == 302 and response["Location"] == CODE
    assert "_auth_user_id" not in client.session  # not signed in yet
    assert client.get("/").status_code == 302
    assert "aibo_device" in response.cookies  # the password was right: this browser is known

    step = client.get(CODE)
    assert step.status_code == 200 and user.email in step.text
    signed_in = client.post(CODE, {"code": clock.code(on.device)})
    assert signed_in.status_code == 302 and signed_in["Location"] == KEYS
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.session[DEVICE_ID_SESSION_KEY] == on.device.persistent_id
    assert client.get("/").status_code == 200
    assert client.get(CODE)["Location"] == "/"  # nothing more to prove


def test_the_code_step_needs_the_password_first(client, user, on, clock):
    assert client.get(CODE)["Location"] == LOGIN
    assert client.post(CODE, {"code": clock.code(on.device)})["Location"] == LOGIN
    assert "_auth_user_id" not in client.session


def test_a_password_change_in_between_undoes_the_first_step(client, user, on, clock):
    password(client, user)
    user.set_password("another-Long-pw-9")
    user.save()
    assert client.post(CODE, {"code": clock.code(on.device)})["Location"] == LOGIN
    assert "_auth_user_id" not in client.session


def test_the_admin_login_asks_for_the_code_too(client, user, on, clock):
    User.objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
    data = {"username": user.email, "password": PW, "next": "/admin/"}
    response = client.post("/admin/login/", data)
    assert response.status_code == 302 and response["Location"] == CODE
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/")["Location"].startswith("/admin/login/")
    signed_in = client.post(CODE, {"code": clock.code(on.device)})
    assert signed_in["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_an_unverified_session_can_do_nothing(client, user, on):
    User.objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
    assert password(client, user).status_code == 302  # the password, no code
    pages = ("/", "/bots/new/", "/bots/1/", "/bots/1/candles.json", KEYS, SETUP)
    for page in (*pages, "/accounts/password/", "/backtests/new/", "/ai/runs/1/"):
        response = client.get(page)
        assert response.status_code == 302 and response["Location"].startswith(LOGIN), page
    assert client.post("/bots/emergency-stop/")["Location"].startswith(LOGIN)
    assert client.post(KEYS, {"label": "x"})["Location"].startswith(LOGIN)
    api = client.post("/api/ai/optimize", {"symbol": "BTC/USDT"}, content_type="application/json")
    assert api.status_code == 401
    assert client.get("/api/ai/runs/1").status_code == 401
    assert client.get("/admin/")["Location"].startswith("/admin/login/")
    assert client.get("/admin/accounts/user/").status_code == 302
    # A login() that no code verified (the test client's, a future view's) is undone at once.
    other = Client()
    other.force_login(user)
    assert "_auth_user_id" not in other.session
    assert other.get("/").status_code == 302
    assert other.get("/admin/").status_code == 302


# --- recovery codes ------------------------------------------------------------------------------


def test_recovery_codes_work_once(client, user, on, no_backoff):
    first, second = on.codes[0], on.codes[1]
    signed_in = signed_in_with_code(client, user, f" {first.upper()} ")  # as people type it
    assert signed_in.status_code == 302 and signed_in["Location"] == "/"
    assert "recovery code; 9 left" in client.get("/").text
    client.post("/accounts/logout/")

    again = signed_in_with_code(client, user, first)
    assert again.status_code == 200 and "That code is not right" in again.text
    assert "_auth_user_id" not in client.session
    assert client.post(CODE, {"code": second.replace("-", "")}).status_code == 302
    assert two_factor.recovery_codes_left(user) == 8


def test_new_recovery_codes_need_a_current_code(client, user, on, clock, no_backoff):
    signed_in_with_code(client, user, clock.code(on.device))
    assert client.post(NEW_CODES, {"codes-code": "123456"}).status_code == 200
    refused = client.post(NEW_CODES, {"codes-code": on.codes[0]})  # the app's code, not these
    assert refused.status_code == 200 and "That code is not right" in refused.text
    assert two_factor.recovery_codes_left(user) == 10

    made = client.post(NEW_CODES, {"codes-code": clock.code(on.device)})
    new = shown_codes(made.text)
    assert len(new) == 10 and not set(new) & set(on.codes)
    assert StaticDevice.objects.filter(user=user).count() == 1  # the same device, new codes
    client.post("/accounts/logout/")
    assert signed_in_with_code(client, user, on.codes[2]).status_code == 200  # an old one
    assert client.post(CODE, {"code": new[0]}).status_code == 302


# --- throttling ----------------------------------------------------------------------------------


def test_wrong_codes_are_throttled_with_retry_after(client, user, on, clock, settings, no_backoff):
    settings.LOGIN_FAILURE_LIMIT = 3
    password(client, user)
    for wrong in ("000001", "000002", "abcdefgh"):
        assert client.post(CODE, {"code": wrong}).status_code == 200
    refused = client.post(CODE, {"code": clock.code(on.device)})  # even the right one
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= settings.LOGIN_FAILURE_WINDOW_SECONDS
    assert "Too many wrong codes. Try again in 15 minutes." in refused.text
    assert "_auth_user_id" not in client.session
    # Per account, not per browser: another browser with the password is refused alike.
    other = Client()
    password(other, user)
    assert other.post(CODE, {"code": clock.code(on.device)}).status_code == 429


def test_the_devices_own_back_off_is_a_429_too(client, user, on, clock):
    password(client, user)
    assert client.post(CODE, {"code": "000001"}).status_code == 200
    refused = client.post(CODE, {"code": clock.code(on.device)})  # within django-otp's 1 s
    assert refused.status_code == 429 and refused["Retry-After"] == "1"


def test_the_devices_back_off_ends_with_the_window(client, user, on, clock, settings):
    # Thirty failures in a row: django-otp alone would wait 2**29 seconds (17 years).
    TOTPDevice.objects.filter(pk=on.device.pk).update(
        throttling_failure_count=30, throttling_failure_timestamp=timezone.now()
    )
    password(client, user)
    refused = client.post(CODE, {"code": clock.code(on.device)})
    assert 0 < int(refused["Retry-After"]) <= settings.LOGIN_FAILURE_WINDOW_SECONDS
    window_ago = timezone.now() - dt.timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS + 1)
    TOTPDevice.objects.filter(pk=on.device.pk).update(throttling_failure_timestamp=window_ago)
    assert client.post(CODE, {"code": clock.code(on.device)}).status_code == 302


def test_wrong_setup_codes_are_throttled(client, user, clock, settings, no_backoff):
    settings.LOGIN_FAILURE_LIMIT = 2
    client.force_login(user)
    client.get(SETUP)
    device = TOTPDevice.objects.get(user=user)
    for _ in range(2):
        assert client.post(SETUP, {"code": "000001"}).status_code == 200
    refused = client.post(SETUP, {"code": clock.code(device)})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert not two_factor.is_on(user)


# --- turning it off ------------------------------------------------------------------------------


def test_turning_two_factor_off_needs_a_code_and_the_password(client, user, on, clock, no_backoff):
    signed_in_with_code(client, user, clock.code(on.device))

    def off(pw: str, code: str) -> Any:
        return client.post(OFF, {"off-password": pw, "off-code": code})

    assert "Enter the code." in off(PW, "").text
    assert "Enter your password." in off("", clock.code(on.device)).text
    assert "The password or the code is not right." in off("wrong", clock.code(on.device)).text
    assert "The password or the code is not right." in off(PW, "000001").text
    assert two_factor.is_on(user)

    done = off(PW, on.codes[0])  # a recovery code will do (a lost phone)
    assert done.status_code == 302 and done["Location"] == SETUP
    assert not two_factor.is_on(user)
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert not StaticDevice.objects.filter(user=user).exists()
    assert client.get("/").status_code == 200  # still signed in
    client.post("/accounts/logout/")
    assert password(client, user)["Location"] == "/"  # the password alone again


def test_turning_off_with_the_apps_code(client, user, on, clock):
    signed_in_with_code(client, user, clock.code(on.device))
    done = client.post(OFF, {"off-password": PW, "off-code": clock.code(on.device)})
    assert done.status_code == 302 and not two_factor.is_on(user)


# --- exchange keys -------------------------------------------------------------------------------


def test_key_changes_need_a_verified_session(
    client, user, clock, settings, fake_binance: Callable[..., Any]
):
    # Sessions that cannot be listed (a cache-only engine) outlive two-factor being turned on
    # elsewhere: signed in, but not with a code.
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    client.force_login(user)
    cred = credential(user)
    device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    assert client.get(KEYS).status_code == 200

    data = {"label": "Second", "exchange": "binance", "api_key": API_KEY, "secret": SECRET}
    refused = client.post(KEYS, data)
    assert refused.status_code == 302
    assert refused["Location"] == f"{CODE}?next=%2Faccounts%2Fkeys%2F"
    delete = reverse("accounts:credential_delete", args=[cred.pk])
    htmx = client.post(delete, headers={"HX-Request": "true"})
    assert htmx.status_code == 200 and htmx["HX-Redirect"].startswith(CODE)
    assert client.post(delete).status_code == 302
    assert list(ExchangeCredential.objects.filter(owner=user)) == [cred]

    # The code step proves this session too, and leads back to the keys.
    proved = client.post(f"{CODE}?next={KEYS}", {"code": clock.code(device)})
    assert proved.status_code == 302 and proved["Location"] == KEYS
    fake_binance(api_key=API_KEY, secret=SECRET, balances={"USDT": "1000"}, as_exchange=True)
    assert client.post(KEYS, data).status_code == 302
    assert client.post(delete).status_code == 302
    assert list(ExchangeCredential.objects.filter(owner=user).values_list("label", flat=True)) == [
        "Second"
    ]


def test_users_without_two_factor_change_keys_as_before(client, user):
    client.force_login(user)
    cred = credential(user)
    response = client.post(reverse("accounts:credential_delete", args=[cred.pk]))
    assert response.status_code == 302 and response["Location"] == KEYS
    assert not ExchangeCredential.objects.exists()


# --- websockets ----------------------------------------------------------------------------------


def _headers(client: Client) -> list[tuple[bytes, bytes]]:
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    origin = [(b"host", b"testserver"), (b"origin", b"http://testserver")]
    return [*origin, (b"cookie", cookie.encode())]


async def _open(client: Client) -> tuple[WebsocketCommunicator, bool]:
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=_headers(client))
    connected, _ = await communicator.connect()
    return communicator, connected


@pytest.mark.django_db(transaction=True)
async def test_sockets_need_the_code_too(user, clock):
    device = await sync_to_async(TOTPDevice.objects.create)(user=user, name="app", confirmed=True)
    browser = Client()
    await sync_to_async(password)(browser, user)  # the password, no code yet
    refused, connected = await _open(browser)
    await refused.disconnect()
    assert not connected
    code = await sync_to_async(clock.code)(device)
    assert (await sync_to_async(browser.post)(CODE, {"code": code})).status_code == 302
    accepted, connected = await _open(browser)
    try:
        assert connected
    finally:
        await accepted.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_turning_two_factor_on_closes_the_sockets_of_sessions_without_a_code(user, clock):
    elsewhere, here = Client(), Client()
    await sync_to_async(elsewhere.force_login)(user)
    await sync_to_async(here.force_login)(user)
    theirs, _ = await _open(elsewhere)
    mine, _ = await _open(here)
    try:
        await sync_to_async(here.get)(SETUP)
        device = await sync_to_async(TOTPDevice.objects.get)(user=user)
        code = await sync_to_async(clock.code)(device)
        assert (await sync_to_async(here.post)(SETUP, {"code": code})).status_code == 200
        closed = await theirs.receive_output(timeout=2)
        assert closed["type"] == "websocket.close" and closed["code"] == ws.CLOSE_SESSION_ENDED
        assert await mine.receive_nothing(timeout=0.3)  # this session proved itself
    finally:
        await theirs.disconnect()
        await mine.disconnect()
