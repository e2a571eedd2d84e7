"""Two-factor sign-in: a code from an authenticator app (TOTP), or a one-time recovery code,
on django-otp's devices. Off until a user turns it on (the first run stays one password).

With it on, a password alone signs nobody in:

- The sign-in forms (the site's and the admin's) only note, in the still anonymous session,
  that the password was right (``await_code``). The code step signs the user in with the
  device that accepted the code (``sign_in``: django-otp keeps it in the session, so
  ``request.user.is_verified()``). Until then the session is anonymous: pages, the JSON API,
  the websockets and the admin treat it as such.
- So every signed-in session of a user with two-factor on is a verified one, and pages need no
  check of their own (key changes check anyway: ``is_verified``). Two rules keep it so: a
  ``login()`` without a device (the test client's, a future view's) is undone at once, and
  when one of a user's devices is confirmed (here, in the admin, in a shell) their sessions
  that no device verified are ended and their sockets closed: a session signed in with the
  password before two-factor was on does not outlive it.

Wrong codes count per account: ``LOGIN_FAILURE_LIMIT`` in ``LOGIN_FAILURE_WINDOW_SECONDS``
(accounts.throttle), on top of django-otp's own back-off per device (1, 2, 4, ... seconds, at
most one window). Either refusal says when to come back (``Checked.retry_after``, for a 429's
``Retry-After``).
"""

from __future__ import annotations

import logging
import math
import time
from base64 import b32encode
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module
from typing import Any

import segno
from django.conf import settings
from django.contrib import auth
from django.contrib.auth import SESSION_KEY, load_backend
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.db.models.signals import post_init, post_save
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django_otp import DEVICE_ID_SESSION_KEY, devices_for_user, user_has_device
from django_otp import login as otp_login
from django_otp import verify_token as otp_verify_token
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import throttle
from accounts.models import User

logger = logging.getLogger(__name__)

RECOVERY_CODES = 10
PENDING = "accounts.two_factor_pending"  # session key: the password was right, a code is due
PENDING_SECONDS = 10 * 60  # then the password again
THROTTLE_SCOPE = "two-factor"


def is_on(user: Any) -> bool:
    """Whether the user has two-factor sign-in (a confirmed device)."""
    return user.is_authenticated and user_has_device(user)


def is_verified(request: HttpRequest) -> bool:
    """Whether this session was signed in with a code (django_otp's OTPMiddleware)."""
    check = getattr(request.user, "is_verified", None)
    return check is not None and bool(check())


def is_recovery_code(device: Device) -> bool:
    return isinstance(device, StaticDevice)


def normalized(code: str) -> str:
    """What people type, as the devices compare it: no spaces or dashes, lower case."""
    return "".join(code.split()).replace("-", "").lower()


# --- checking a code -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    device: Device | None = None  # the device that accepted the code
    retry_after: int | None = None  # refused by a throttle: seconds until the next try

    @property
    def refused(self) -> bool:
        return self.retry_after is not None


def failed(user: User) -> Checked:
    """Count one wrong answer (code or password) against the account."""
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    return Checked(retry_after=throttle.hit(THROTTLE_SCOPE, str(user.pk), _limit(), window))


def _limit() -> int:
    return int(settings.LOGIN_FAILURE_LIMIT)


def _blocked(user: User) -> int | None:
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    return throttle.blocked(THROTTLE_SCOPE, str(user.pk), _limit(), window)


def check(user: User, code: str, device: Device | None) -> Checked:
    """``code`` checked against ``device`` (each code works once), under both throttles."""
    if (retry := _blocked(user)) is not None:
        return Checked(retry_after=retry)
    if device is None:
        return failed(user)
    if (retry := _backing_off(device)) is not None:
        return Checked(retry_after=retry)
    # verify_token locks the device row (select_for_update): one code, one sign-in. Its copy
    # of the device is the one to keep using: it holds the last code's time step.
    verified = otp_verify_token(user, device.persistent_id, code)
    if verified is None:
        return failed(user)
    throttle.reset(THROTTLE_SCOPE, str(user.pk))
    return Checked(device=verified)


def _backing_off(device: Device) -> int | None:
    """Seconds left of django-otp's back-off after the device's last failures, if any. It
    doubles its wait after each failure without end (a stranger with the password could lock
    the owner's device for days); like every lock here it ends one window after the last
    failure at the latest."""
    allowed, extra = device.verify_is_allowed()
    if allowed:
        return None
    now = timezone.now()
    until = (extra or {}).get("locked_until") or now
    last = getattr(device, "throttling_failure_timestamp", None)
    if last is not None:
        until = min(until, last + timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS))
    if until <= now:
        device.throttle_reset()  # type: ignore[attr-defined]
        return None
    return max(1, math.ceil((until - now).total_seconds()))


def check_sign_in_code(user: User, code: str, *, recovery: bool = True) -> Checked:
    """A code from the app (six digits) or, with ``recovery``, one of the recovery codes
    (``normalized``): each is tried on its own device only, so a typo in one never throttles
    the other."""
    device: Device | None
    if code.isdigit() and len(code) == 6:
        device = TOTPDevice.objects.devices_for_user(user, confirmed=True).first()
    elif recovery:
        device = StaticDevice.objects.devices_for_user(user, confirmed=True).first()
    else:
        device = None
    return check(user, code, device)


def check_password_and_code(user: User, password: str, code: str) -> Checked:
    """For turning two-factor off: the password and a code, wrong ones counted alike."""
    if (retry := _blocked(user)) is not None:
        return Checked(retry_after=retry)
    if not user.check_password(password):
        return failed(user)
    return check_sign_in_code(user, code)


# --- turning it on and off -----------------------------------------------------------------------


def setup_device(user: User) -> TOTPDevice:
    """The unconfirmed app device the setup page shows (the same one until it is confirmed, so
    a reload does not undo a scan)."""
    device = TOTPDevice.objects.devices_for_user(user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    return device


def qr_code(device: TOTPDevice) -> str:
    """The device's otpauth:// URL as a QR code, an SVG ``data:`` URI for an ``<img>`` (the
    Content-Security-Policy allows those, and no inline style)."""
    return segno.make(device.config_url, error="m").svg_data_uri(
        scale=5, border=4, dark="#000", light="#fff"
    )


def secret_text(device: TOTPDevice) -> str:
    """The key as apps take it typed in: base32, in groups of four."""
    key = b32encode(device.bin_key).decode()
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def turn_on(request: HttpRequest, device: TOTPDevice) -> list[str]:
    """Confirm ``device`` (its code was checked) and return the new recovery codes. This
    session counts as verified by it; the user's other sessions, signed in without a code,
    end (``_end_unverified_sessions``)."""
    otp_login(request, device)
    request.session.save()  # verified before the device is confirmed: it must not be ended
    with transaction.atomic():
        device.confirmed = True
        device.save()
        TOTPDevice.objects.devices_for_user(device.user, confirmed=False).delete()
        return new_recovery_codes(device.user)


def new_recovery_codes(user: User) -> list[str]:
    """Replace the user's recovery codes with ``RECOVERY_CODES`` new ones (same device, so a
    session verified by an old code stays verified)."""
    device = StaticDevice.objects.devices_for_user(user, confirmed=True).first()
    if device is None:
        device = StaticDevice.objects.create(user=user, name="Recovery codes")
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return [f"{code[:4]}-{code[4:]}" for code in codes]


def recovery_codes_left(user: User) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def turn_off(user: User) -> None:
    with transaction.atomic():
        for device in list(devices_for_user(user, confirmed=None)):
            device.delete()


# --- the sign-in's second step -------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    user: User
    backend: str
    next_url: str


def await_code(request: HttpRequest, user: User, next_url: str) -> None:
    """The password was right: remember whose it was, not signed in, until the code."""
    request.session[PENDING] = {
        "user": user.pk,
        "backend": user.backend,  # type: ignore[attr-defined]  (set by authenticate())
        "hash": user.get_session_auth_hash(),
        "next": next_url,
        "until": time.time() + PENDING_SECONDS,
    }


def awaits_code(request: HttpRequest) -> bool:
    return PENDING in request.session


def awaiting(request: HttpRequest) -> Pending | None:
    """The user whose password this session gave, while it is fresh and still their
    password (a change or reset in between undoes it)."""
    data = request.session.get(PENDING)
    if not isinstance(data, dict):
        return None
    backend = data.get("backend")
    user = None
    if data.get("until", 0) > time.time() and backend in settings.AUTHENTICATION_BACKENDS:
        user = load_backend(backend).get_user(data.get("user"))  # None: deleted, deactivated
    if user is None or not constant_time_compare(
        data.get("hash", ""), user.get_session_auth_hash()
    ):
        forget(request)
        return None
    return Pending(user, backend, data.get("next", ""))


def forget(request: HttpRequest) -> None:
    request.session.pop(PENDING, None)


def sign_in(request: HttpRequest, pending: Pending, device: Device) -> None:
    forget(request)
    pending.user.otp_device = device  # type: ignore[attr-defined]  (django-otp keeps it)
    auth.login(request, pending.user, backend=pending.backend)


def verify_session(request: HttpRequest, device: Device) -> None:
    """A signed-in session without a code (from before two-factor) proves it now."""
    otp_login(request, device)
    request.session.cycle_key()


# --- keeping every signed-in session of a two-factor user verified --------------------------------


def _session_verified(session: Any, user: Any) -> bool:
    device_id = session.get(DEVICE_ID_SESSION_KEY)
    device = Device.from_persistent_id(device_id) if device_id else None
    return device is not None and device.user_id == user.pk and device.confirmed


def _refuse_password_only_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """A ``login()`` of a two-factor user that no device verified is undone: only the code
    step signs them in."""
    session = getattr(request, "session", None)
    if session is None or not user_has_device(user) or _session_verified(session, user):
        return
    logger.warning("sign-in without a code undone: the account has two-factor sign-in")
    session.flush()
    request.user = AnonymousUser()


def _end_unverified_sessions(user: Any) -> None:
    """End the user's sessions that no confirmed device of theirs verified, and close their
    sockets (aibo.ws). Database-backed sessions (the default) only: others cannot be listed."""
    from aibo import push, ws

    store = import_module(settings.SESSION_ENGINE).SessionStore
    if not hasattr(store, "get_model_class"):
        logger.warning("two-factor on: sessions signed in without a code cannot be listed")
        return
    confirmed = {device.persistent_id for device in devices_for_user(user)}
    rows = store.get_model_class().objects.filter(expire_date__gt=timezone.now())
    for row in rows.iterator():
        data = store().decode(row.session_data)
        theirs = str(data.get(SESSION_KEY)) == str(user.pk)
        if not theirs or data.get(DEVICE_ID_SESSION_KEY) in confirmed:
            continue
        store(row.session_key).delete()
        event = {"type": "user.logged_out", "session_key": row.session_key}
        push.group_send(ws.user_group(user.pk), event)


def _note_confirmed(sender: Any, instance: Any, **kwargs: Any) -> None:
    # From __dict__: reading a deferred field here would cost a query per loaded device.
    instance._aibo_was_confirmed = instance.__dict__.get("confirmed")


def _on_device_saved(
    sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    newly = instance.confirmed and (created or not instance._aibo_was_confirmed)
    instance._aibo_was_confirmed = instance.confirmed
    if newly and not raw:
        _end_unverified_sessions(instance.user)


user_logged_in.connect(_refuse_password_only_login, dispatch_uid="accounts.two_factor.login")
for _model in (TOTPDevice, StaticDevice):
    _uid = f"accounts.two_factor.{_model.__name__}"
    post_init.connect(_note_confirmed, sender=_model, dispatch_uid=_uid)
    post_save.connect(_on_device_saved, sender=_model, dispatch_uid=_uid)
