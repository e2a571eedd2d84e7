"""Sign-up, sign-in and password pages, and the page where a user keeps exchange API keys.

Keys are owner-scoped (another user's are a 404), stored encrypted (accounts.crypto) and shown
only as their mask. They are checked with the exchange before being saved: keys the exchange
refuses are never stored.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, RestrictedError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from accounts import key_check, throttle
from accounts.crypto import UndecryptableSecret
from accounts.forms import CredentialForm, EmailLoginForm, RegistrationForm
from accounts.http import AuthedRequest
from accounts.models import ExchangeCredential

logger = logging.getLogger(__name__)


@require_http_methods(["GET", "POST"])
def register(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("bots:dashboard")
    form = RegistrationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "Welcome to aibo. Your account is ready.")
        return redirect("bots:dashboard")
    return render(request, "accounts/register.html", {"form": form})


class LoginView(auth_views.LoginView):
    """Django's login, throttled: repeated failures for one email or IP get HTTP 429."""

    template_name = "accounts/login.html"
    authentication_form = EmailLoginForm
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        email = request.POST.get("username", "")
        ip = throttle.client_ip(request.META)
        if throttle.is_locked_out(email, ip):
            form = self.get_form()
            return render(
                request,
                self.template_name,
                {
                    "form": form,
                    "throttled": True,
                    "throttle_message": "Too many failed sign-in attempts. "
                    "Wait 15 minutes and try again, or reset your password.",
                },
                status=429,
            )
        response = super().post(request, *args, **kwargs)
        if request.user.is_authenticated:
            throttle.clear_failures(email, ip)
        else:
            throttle.record_failure(email, ip)
        return response


class LogoutView(auth_views.LogoutView):
    pass


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("bots:dashboard")

    def form_valid(self, form: Any) -> HttpResponse:
        messages.success(self.request, "Your password has been changed.")
        return super().form_valid(form)


# --- exchange keys -------------------------------------------------------------------------------


def _own_credential(request: AuthedRequest, pk: int) -> ExchangeCredential:
    return get_object_or_404(ExchangeCredential.objects.owned_by(request.user), pk=pk)


def _credentials_page(request: AuthedRequest, form: CredentialForm) -> HttpResponse:
    credentials = ExchangeCredential.objects.owned_by(request.user)
    ctx = {"form": form, "credentials": credentials}
    return render(request, "accounts/credential_list.html", ctx)


def _after_credential_action(request: AuthedRequest) -> HttpResponse:
    """The key table (with the messages, out of band) for htmx, else back to the page."""
    if not request.htmx:
        return redirect("accounts:credentials")
    credentials = ExchangeCredential.objects.owned_by(request.user)
    return render(
        request, "accounts/credential_list.html#credential-table", {"credentials": credentials}
    )


@sensitive_variables()
@sensitive_post_parameters("api_key", "secret")
@login_required
@require_http_methods(["GET", "POST"])
def credential_list(request: AuthedRequest) -> HttpResponse:
    form = CredentialForm(request.POST or None, owner=request.user)
    if request.method == "POST" and form.is_valid():
        if not throttle.allow_key_check(request.user.pk):
            form.add_error(None, TOO_MANY_CHECKS)
            response = _credentials_page(request, form)
            response.status_code = 429
            return response
        if _add_credential(request, form):
            return redirect("accounts:credentials")
    return _credentials_page(request, form)


TOO_MANY_CHECKS = (
    f"You have checked exchange keys {throttle.KEY_CHECKS_PER_HOUR} times this hour; "
    "try again later."
)


@sensitive_variables()
def _add_credential(request: AuthedRequest, form: CredentialForm) -> bool:
    """Encrypt, verify and save the keys; False (with the reason on the form) if not saved."""
    data = form.cleaned_data  # holds the plain keys: never log it
    cred = ExchangeCredential(owner=request.user, exchange=data["exchange"], label=data["label"])
    cred.set_keys(data["api_key"], data["secret"])
    try:
        problem = key_check.verify_keys(cred)
    except key_check.KeysRefused as e:
        form.add_error(None, f"The exchange refused these keys: {e}")
        return False
    try:
        with transaction.atomic():
            cred.save()
    except IntegrityError:  # the same label, added at the same moment in another tab
        form.add_error("label", f"You already have exchange keys labelled “{cred.label}”.")
        return False
    logger.info("exchange keys %s added (%s, verified: %s)", cred.pk, cred.exchange, not problem)
    if problem:
        messages.warning(
            request,
            f"Keys “{cred.label}” saved, but they could not be verified now: {problem}. "
            "Use “Verify again” in a while.",
        )
    else:
        messages.success(request, f"Keys “{cred.label}” added: the exchange accepted them.")
    return True


@login_required
@require_POST
def credential_verify(request: AuthedRequest, pk: int) -> HttpResponse:
    cred = _own_credential(request, pk)
    if not throttle.allow_key_check(request.user.pk):
        messages.error(request, TOO_MANY_CHECKS)
        response = _after_credential_action(request)
        response.status_code = 429 if request.htmx else response.status_code
        return response
    try:
        problem = key_check.verify_keys(cred)
    except key_check.KeysRefused as e:
        # No longer known to work: the page should not keep calling them verified.
        cred.verified_at = None
        cred.save(update_fields=["verified_at"])
        messages.error(request, f"The exchange refused the keys “{cred.label}”: {e}")
    except UndecryptableSecret as e:
        messages.error(request, f"Keys “{cred.label}”: {e}")
    else:
        if problem:
            messages.warning(request, f"Keys “{cred.label}” could not be verified now: {problem}.")
        else:
            cred.save(update_fields=["verified_at"])
            messages.success(request, f"Keys “{cred.label}” verified: the exchange accepted them.")
    return _after_credential_action(request)


@login_required
@require_POST
def credential_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    cred = _own_credential(request, pk)
    try:
        cred.delete()
    except (ProtectedError, RestrictedError) as e:  # a bot trades with them
        users = sorted(str(obj) for obj in e.protected_objects)
        messages.error(
            request,
            f"Keys “{cred.label}” were not deleted: {_in_use_by(users)}. "
            "Give those bots other keys, or delete them, first.",
        )
        return _after_credential_action(request)
    logger.info("exchange keys %s deleted", pk)
    messages.success(
        request,
        f"Keys “{cred.label}” deleted. Revoke them on the exchange too if you no longer use them.",
    )
    return _after_credential_action(request)


def _in_use_by(bots: list[str]) -> str:
    if len(bots) == 1:
        return f"the bot “{bots[0]}” uses them"
    shown = ", ".join(f"“{name}”" for name in bots[:3])
    more = f" and {len(bots) - 3} more" if len(bots) > 3 else ""
    return f"the bots {shown}{more} use them"
