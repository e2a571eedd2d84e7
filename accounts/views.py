"""Sign-up, sign-in and password pages, and the page where a user keeps exchange API keys.

Sign-up, sign-in (the admin's too) and password resets are throttled per client and account
(accounts.throttle); every 429 says when to come back (``Retry-After``). For an account with
two-factor sign-in (accounts.two_factor) the password is the first step of two, and adding or
deleting exchange keys needs a session signed in with a code.

Keys are owner-scoped (another user's are a 404), stored encrypted (accounts.crypto) and shown
only as their mask. They are checked with the exchange before being saved
(accounts.key_check): keys the exchange refuses, and keys that can withdraw or cannot trade,
are never stored; keys that cannot be checked now are stored unverified, and no live bot
starts with them.

Over 400 lines because sign-up, sign-in, the admin's sign-in and the resets share one flow of
throttles and device cookies that reads best in one place; the two-factor pages live apart
(accounts.two_factor_views).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.hashers import make_password
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, RestrictedError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse, reverse_lazy
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts import key_check, throttle, two_factor
from accounts.crypto import UndecryptableSecret
from accounts.forms import (
    CredentialForm,
    EmailLoginForm,
    PasswordChangeForm,
    RegistrationForm,
    SetPasswordForm,
    ThrottledPasswordResetForm,
)
from accounts.http import AuthedRequest
from accounts.models import ExchangeCredential, User

logger = logging.getLogger(__name__)


# --- sign-up -------------------------------------------------------------------------------------

REGISTERED_EMAIL = "accounts.registered_email"  # session key: prefills the sign-in form once


@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "POST"])
def register(request: HttpRequest) -> HttpResponse:
    """Sign-up that does not say which addresses have accounts.

    A new address gets its account at once and a welcome mail; a taken one gets a mail telling
    its owner that someone tried to register with it (and how to sign in or reset). Both see the
    same page: "we sent you a message; sign in with the password you chose". The password is
    hashed either way, so the answer takes as long. Valid submissions are limited per client
    (``REGISTRATIONS_PER_CLIENT_PER_HOUR``): each one writes an account or sends a mail.
    """
    if request.user.is_authenticated:
        return redirect("bots:dashboard")
    form = RegistrationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        limit = settings.REGISTRATIONS_PER_CLIENT_PER_HOUR
        retry = throttle.hit("register", throttle.client_ip(request), limit, 3600)
        if retry is not None:
            form.add_error(
                None,
                "Too many sign-ups from your network this hour. "
                f"Try again {throttle.wait_words(retry)}.",
            )
            page = render(request, "accounts/register.html", {"form": form})
            return throttle.too_many(page, retry)
        email = form.cleaned_data["email"]
        _register(request, form, email)
        request.session[REGISTERED_EMAIL] = email
        messages.success(
            request,
            f"We have sent a message to {email}. If the address is new to aibo, your account "
            "is ready: sign in with the password you just chose. If it already had an account, "
            "the message tells you how to get back in.",
        )
        return redirect("accounts:login")
    return render(request, "accounts/register.html", {"form": form})


@sensitive_variables()
def _register(request: HttpRequest, form: RegistrationForm, email: str) -> None:
    created = False
    if not User.objects.filter(email__iexact=email).exists():
        try:
            with transaction.atomic():
                form.save()
            created = True
        except IntegrityError:  # registered a moment ago by another request
            pass
    if created:
        logger.info("account registered")
    else:
        make_password(form.cleaned_data["password1"])  # the same work as a new account
    template = "accounts/email_welcome.txt" if created else "accounts/email_already_registered.txt"
    subject = "Welcome to aibo" if created else "Someone tried to register with your address"
    _send_account_mail(request, email, subject, template)


def _send_account_mail(request: HttpRequest, email: str, subject: str, template: str) -> None:
    if not throttle.may_mail(email):
        return
    context = {
        "email": email,
        "login_url": request.build_absolute_uri(reverse("accounts:login")),
        "reset_url": request.build_absolute_uri(reverse("accounts:password_reset")),
    }
    try:
        send_mail(subject, render_to_string(template, context, request), None, [email])
    except Exception:  # a mail server down must not turn sign-up into an error page
        logger.exception("could not send the sign-up mail")


# --- sign-in -------------------------------------------------------------------------------------


def _refusal_words(refusal: throttle.Refusal) -> str:
    wait = throttle.wait_words(refusal.retry_after)
    if refusal.reason == "client":
        return f"Too many failed sign-in attempts from your network. Try again {wait}."
    if refusal.reason == "account":
        return (
            "This account has had too many failed sign-in attempts, so for now it accepts "
            "sign-ins only from browsers that signed in to it before. "
            f"Try again {wait}, or reset your password: that lets this browser in too."
        )
    return f"Too many failed sign-in attempts. Try again {wait}, or reset your password."


def _throttled_login(
    request: HttpRequest,
    log_in: Callable[[], HttpResponse],
    refused_page: Callable[[str], HttpResponse],
) -> HttpResponse:
    """Run a login view's POST under ``throttle.LoginAttempt``: refused with a 429 and
    ``Retry-After`` before the password is even checked, failures counted, and on success (the
    password was right, even if a code is still due) the browser remembered as one the
    account signs in from."""
    attempt = throttle.LoginAttempt.of(request)
    if (refusal := attempt.refusal()) is not None:
        return throttle.too_many(refused_page(_refusal_words(refusal)), refusal.retry_after)
    response = log_in()
    # LoginView redirects only when the form was valid: the user is signed in, or waits for
    # the code step.
    accepted = request.user.is_authenticated or two_factor.awaits_code(request)
    if response.status_code == 302 and accepted:
        attempt.succeeded()
        throttle.remember_device(response, request, request.POST.get("username", ""))
    else:
        attempt.failed()
    return response


class _TwoStepLoginView(auth_views.LoginView):
    """Django's login, except that a right password for an account with two-factor sign-in
    signs nobody in: it leads to the code step (``login_code``)."""

    def form_valid(self, form: Any) -> HttpResponse:
        user = form.get_user()
        if not two_factor.is_on(user):
            two_factor.forget(self.request)
            return super().form_valid(form)
        two_factor.await_code(self.request, user, self.get_success_url())
        return redirect("accounts:login_code")


class LoginView(_TwoStepLoginView):
    """Django's login, throttled by account and client together (``throttle.LoginAttempt``)."""

    template_name = "accounts/login.html"
    authentication_form = EmailLoginForm
    redirect_authenticated_user = True

    def get_initial(self) -> dict[str, Any]:
        if self.request.method == "GET" and REGISTERED_EMAIL in self.request.session:
            return {"username": self.request.session.pop(REGISTERED_EMAIL)}
        return super().get_initial()

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _throttled_login(
            request, lambda: super(LoginView, self).post(request, *args, **kwargs), self.refused
        )

    def refused(self, message: str) -> HttpResponse:
        # An unbound form: a bound one would check the password while rendering its errors.
        email = self.request.POST.get("username", "")
        form = self.get_form_class()(self.request, initial={"username": email})
        context = self.get_context_data(form=form, throttle_message=message)
        return self.render_to_response(context)


@sensitive_post_parameters("password")
@never_cache
def admin_login(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """The admin's own login page, throttled exactly as the site's and with its code step
    (wired before admin.site.urls in aibo/urls.py)."""
    if request.method != "POST":
        return admin.site.login(request, extra_context)

    def context() -> dict[str, Any]:
        return {
            **admin.site.each_context(request),
            "title": "Log in",
            "subtitle": None,
            "app_path": request.get_full_path(),
            "username": request.user.get_username(),
        }

    def refused(message: str) -> HttpResponse:
        messages.error(request, message)
        page = {
            **context(),
            "form": AdminAuthenticationForm(request),
            REDIRECT_FIELD_NAME: request.POST.get(REDIRECT_FIELD_NAME) or reverse("admin:index"),
        }
        return TemplateResponse(request, "admin/login.html", page)

    def log_in() -> HttpResponse:
        # What admin.site.login does, with the two-step form_valid.
        page = context()
        if REDIRECT_FIELD_NAME not in request.GET and REDIRECT_FIELD_NAME not in request.POST:
            page[REDIRECT_FIELD_NAME] = reverse("admin:index")
        request.current_app = admin.site.name
        view = _TwoStepLoginView.as_view(
            extra_context={**page, **(extra_context or {})},
            authentication_form=AdminAuthenticationForm,
            template_name="admin/login.html",
        )
        return view(request)

    return _throttled_login(request, log_in, refused)


class LogoutView(auth_views.LogoutView):
    pass


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    form_class = PasswordChangeForm
    success_url = reverse_lazy("bots:dashboard")

    def form_valid(self, form: Any) -> HttpResponse:
        messages.success(self.request, "Your password has been changed.")
        return super().form_valid(form)


# --- password reset (Django's views, a throttle and our templates) -------------------------------


class PasswordResetView(auth_views.PasswordResetView):
    """Asks for an address and always answers "if it has an account, a link is on its way".
    Requests are limited per client (``PASSWORD_RESETS_PER_CLIENT_PER_HOUR``) and mails per
    address (``throttle.may_mail``)."""

    template_name = "accounts/password_reset_form.html"
    email_template_name = "accounts/email_password_reset.txt"
    subject_template_name = "accounts/email_password_reset_subject.txt"
    form_class = ThrottledPasswordResetForm
    success_url = reverse_lazy("accounts:password_reset_done")

    def form_valid(self, form: Any) -> HttpResponse:
        limit = settings.PASSWORD_RESETS_PER_CLIENT_PER_HOUR
        retry = throttle.hit("password-reset", throttle.client_ip(self.request), limit, 3600)
        if retry is not None:
            form.add_error(
                None,
                "Too many reset requests from your network this hour. "
                f"Try again {throttle.wait_words(retry)}.",
            )
            return throttle.too_many(self.form_invalid(form), retry)
        return super().form_valid(form)


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    form_class = SetPasswordForm
    success_url = reverse_lazy("accounts:password_reset_complete")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        # The link proved the person holds the address: this browser may sign in even while
        # strangers keep the account closed to unknown ones (throttle.LoginAttempt).
        throttle.remember_device(response, self.request, form.user.email)
        return response


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"


# --- exchange keys -------------------------------------------------------------------------------


def _own_credential(request: AuthedRequest, pk: int) -> ExchangeCredential:
    return get_object_or_404(ExchangeCredential.objects.owned_by(request.user), pk=pk)


def _credentials_page(request: AuthedRequest, form: CredentialForm) -> HttpResponse:
    credentials = ExchangeCredential.objects.owned_by(request.user)
    two_factor_on = two_factor.is_on(request.user)
    ctx = {"form": form, "credentials": credentials, "two_factor_on": two_factor_on}
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
    if request.method == "POST" and (refused := _unverified_key_change(request)):
        return refused
    form = CredentialForm(request.POST or None, owner=request.user)
    if request.method == "POST" and form.is_valid():
        if refusal := _key_check_refusal(request):
            form.add_error(None, _too_many_checks(refusal))
            return throttle.too_many(_credentials_page(request, form), refusal.retry_after)
        if _add_credential(request, form):
            return redirect("accounts:credentials")
    return _credentials_page(request, form)


def _unverified_key_change(request: AuthedRequest) -> HttpResponse | None:
    """Keys are added and deleted only in a session signed in with a code, when the account
    has two-factor sign-in: to the code step first, and back."""
    if two_factor.is_verified(request) or not two_factor.is_on(request.user):
        return None
    messages.error(
        request,
        "Your account has two-factor sign-in: enter a code before changing exchange keys.",
    )
    next_url = urlencode({REDIRECT_FIELD_NAME: reverse("accounts:credentials")})
    url = f"{reverse('accounts:login_code')}?{next_url}"
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _key_check_refusal(request: AuthedRequest) -> throttle.Refusal | None:
    return throttle.key_check_refusal(request.user.pk, throttle.client_ip(request))


def _too_many_checks(refusal: throttle.Refusal) -> str:
    wait = throttle.wait_words(refusal.retry_after)
    if refusal.reason == "client":
        return f"Too many exchange key checks from your network this hour; try again {wait}."
    return (
        f"You have checked exchange keys {throttle.KEY_CHECKS_PER_HOUR} times this hour; "
        f"try again {wait}."
    )


@sensitive_variables()
def _add_credential(request: AuthedRequest, form: CredentialForm) -> bool:
    """Encrypt, verify and save the keys; False (with the reason on the form) if not saved."""
    data = form.cleaned_data  # holds the plain keys: never log it
    cred = ExchangeCredential(
        owner=request.user, exchange=data["exchange"], label=data["label"], testnet=data["testnet"]
    )
    cred.set_keys(data["api_key"], data["secret"])
    try:
        problem = key_check.verify_keys(cred)
    except key_check.KeysNotAllowed as e:  # they work, but can withdraw or cannot trade
        form.add_error(None, f"aibo does not accept these keys: {e}")
        return False
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
            "Until they are, no live bot starts with them; use “Verify again” in a while.",
        )
    else:
        messages.success(request, f"Keys “{cred.label}” added: the exchange accepted them.")
        if cred.check_warning:
            messages.warning(request, f"Keys “{cred.label}”: {cred.check_warning}")
    return True


@login_required
@require_POST
def credential_verify(request: AuthedRequest, pk: int) -> HttpResponse:
    cred = _own_credential(request, pk)
    if refusal := _key_check_refusal(request):
        messages.error(request, _too_many_checks(refusal))
        response = _after_credential_action(request)
        # A plain form post goes back to the page (a redirect) with the message.
        return throttle.too_many(response, refusal.retry_after) if request.htmx else response
    try:
        problem = key_check.verify_keys(cred)
    except key_check.KeysRefused as e:
        # No longer known to work (or safe): the page should not keep calling them verified.
        cred.verified_at = None
        cred.save(update_fields=["verified_at"])
        refused = (
            "aibo does not accept"
            if isinstance(e, key_check.KeysNotAllowed)
            else ("The exchange refused")
        )
        messages.error(request, f"{refused} the keys “{cred.label}”: {e}")
    except UndecryptableSecret as e:
        messages.error(request, f"Keys “{cred.label}”: {e}")
    else:
        if problem:
            messages.warning(request, f"Keys “{cred.label}” could not be verified now: {problem}.")
        else:
            cred.save(update_fields=["verified_at", "check_warning"])
            messages.success(request, f"Keys “{cred.label}” verified: the exchange accepted them.")
            if cred.check_warning:
                messages.warning(request, f"Keys “{cred.label}”: {cred.check_warning}")
    return _after_credential_action(request)


@login_required
@require_POST
def credential_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    cred = _own_credential(request, pk)
    if refused := _unverified_key_change(request):
        return refused
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
