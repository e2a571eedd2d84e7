"""The pages of two-factor sign-in (accounts.two_factor): the code step after the password,
and the page where a user turns it on (a QR code, confirmed by a current code, then recovery
codes shown once), makes new recovery codes or turns it off (a code and the password).

Every wrong code or password here counts against the account and ends in a 429 with
``Retry-After`` (``two_factor.Checked``).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from accounts import throttle, two_factor
from accounts.forms import CodeForm, TwoFactorOffForm
from accounts.http import AuthedRequest
from accounts.models import User

logger = logging.getLogger(__name__)

APP_CODE = "Code from your authenticator app"
ANY_CODE = "Code from your authenticator app, or a recovery code"


# --- the code step (two-factor sign-in) ----------------------------------------------------------


def _refused_or(page: HttpResponse, checked: two_factor.Checked) -> HttpResponse:
    return throttle.too_many(page, checked.retry_after) if checked.retry_after else page


def _wrong_code_words(checked: two_factor.Checked) -> str:
    if checked.refused:
        wait = throttle.wait_words(checked.retry_after or 1)
        return f"Too many wrong codes. Try again {wait}."
    return (
        "That code is not right (or was used already). Check that your phone's clock is "
        "right, or use one of your recovery codes."
    )


@sensitive_post_parameters("code")
@never_cache
@require_http_methods(["GET", "POST"])
def login_code(request: HttpRequest) -> HttpResponse:
    """The second step of signing in: a code from the app or a recovery code. Also proves a
    signed-in session from before two-factor was on (it then counts as verified)."""
    pending: two_factor.Pending | None = None
    if request.user.is_authenticated:
        if two_factor.is_verified(request) or not two_factor.is_on(request.user):
            return redirect(_next_url(request) or settings.LOGIN_REDIRECT_URL)
        user: User = request.user  # type: ignore[assignment]
    else:
        pending = two_factor.awaiting(request)
        if pending is None:
            messages.info(request, "Sign in with your password first.")
            return redirect("accounts:login")
        user = pending.user
    form = CodeForm(request.POST or None, label=ANY_CODE)
    ctx = {"form": form, "email": user.email, "next": _next_url(request)}
    if request.method != "POST" or not form.is_valid():
        return render(request, "accounts/login_code.html", ctx)
    checked = two_factor.check_sign_in_code(user, form.cleaned_data["code"])
    if checked.device is None:
        form.add_error("code", _wrong_code_words(checked))
        return _refused_or(render(request, "accounts/login_code.html", ctx), checked)
    if pending is not None:
        two_factor.sign_in(request, pending, checked.device)
        next_url = pending.next_url
    else:
        two_factor.verify_session(request, checked.device)
        next_url = _next_url(request)
    logger.info("signed in with a code")
    if two_factor.is_recovery_code(checked.device):
        left = two_factor.recovery_codes_left(user)
        messages.warning(
            request,
            f"You signed in with a recovery code; {left} left. "
            "Make new ones on the two-factor page if you are running low.",
        )
    return HttpResponseRedirect(next_url or resolve_url(settings.LOGIN_REDIRECT_URL))


def _next_url(request: HttpRequest) -> str:
    url = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME, "")
    safe = url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return url if safe else ""


# --- two-factor settings ------------------------------------------------------------------------


def _two_factor_page(request: AuthedRequest, **ctx: Any) -> HttpResponse:
    user = request.user
    ctx["on"] = two_factor.is_on(user)
    if ctx["on"]:
        ctx.setdefault("codes_form", CodeForm(label=APP_CODE, prefix="codes", autofocus=False))
        ctx.setdefault("off_form", TwoFactorOffForm(label=ANY_CODE, prefix="off", autofocus=False))
        ctx["codes_left"] = two_factor.recovery_codes_left(user)
    else:
        device = two_factor.setup_device(user)
        ctx.setdefault("form", CodeForm(label=APP_CODE))
        ctx.update(qr_code=two_factor.qr_code(device), secret=two_factor.secret_text(device))
    return render(request, "accounts/two_factor.html", ctx)


@sensitive_post_parameters("code")
@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def setup(request: AuthedRequest) -> HttpResponse:
    """Turning two-factor sign-in on: a QR code and the key, confirmed only by a current code
    from the app; then the recovery codes, shown this once. When it is on: its settings."""
    if request.method == "GET" or two_factor.is_on(request.user):
        return _two_factor_page(request)
    form = CodeForm(request.POST, label=APP_CODE)
    if not form.is_valid():
        return _two_factor_page(request, form=form)
    device = two_factor.setup_device(request.user)
    checked = two_factor.check(request.user, form.cleaned_data["code"], device)
    if checked.device is None:
        form.add_error("code", _wrong_code_words(checked))
        return _refused_or(_two_factor_page(request, form=form), checked)
    codes = two_factor.turn_on(request, checked.device)  # type: ignore[arg-type]
    logger.info("two-factor sign-in turned on")
    return render(request, "accounts/two_factor_codes.html", {"codes": codes, "turned_on": True})


@sensitive_post_parameters("codes-code")
@never_cache
@login_required
@require_POST
def new_codes(request: AuthedRequest) -> HttpResponse:
    """New recovery codes (the old ones stop working), for a current code from the app."""
    if not two_factor.is_on(request.user):
        return redirect("accounts:two_factor")
    form = CodeForm(request.POST, label=APP_CODE, prefix="codes", autofocus=False)
    if not form.is_valid():
        return _two_factor_page(request, codes_form=form)
    code = form.cleaned_data["code"]
    checked = two_factor.check_sign_in_code(request.user, code, recovery=False)
    if checked.device is None:
        form.add_error("code", _wrong_code_words(checked))
        return _refused_or(_two_factor_page(request, codes_form=form), checked)
    codes = two_factor.new_recovery_codes(request.user)
    logger.info("new recovery codes made")
    return render(request, "accounts/two_factor_codes.html", {"codes": codes})


@sensitive_post_parameters("off-code", "off-password")
@never_cache
@login_required
@require_POST
def turn_off(request: AuthedRequest) -> HttpResponse:
    """Turning two-factor sign-in off: a current code (or a recovery code) and the password."""
    if not two_factor.is_on(request.user):
        return redirect("accounts:two_factor")
    form = TwoFactorOffForm(request.POST, label=ANY_CODE, prefix="off", autofocus=False)
    if not form.is_valid():
        return _two_factor_page(request, off_form=form)
    data = form.cleaned_data
    checked = two_factor.check_password_and_code(request.user, data["password"], data["code"])
    if checked.device is None:
        wrong = "The password or the code is not right."
        form.add_error(None, _wrong_code_words(checked) if checked.refused else wrong)
        return _refused_or(_two_factor_page(request, off_form=form), checked)
    two_factor.turn_off(request.user)
    logger.info("two-factor sign-in turned off")
    messages.success(request, "Two-factor sign-in is off: your password alone signs you in.")
    return redirect("accounts:two_factor")
