"""The JSON API's sign-up and sign-in: ``/api/auth/register`` and ``/api/auth/login`` answer
``{token, user_id}`` (``accounts.tokens``).

Sign-in shares the page's throttle (``throttle.LoginAttempt``: per account and client, the same
counters), and an account with two-factor sign-in needs its code (``code``) here as on the page.
Sign-up is limited per client like the page's (``REGISTRATIONS_PER_CLIENT_PER_HOUR``) and checks
the password with the same validators.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from ninja import Router, Schema, Status
from ninja.errors import HttpError
from pydantic import Field

from accounts import throttle, tokens, two_factor
from accounts.forms import RegistrationForm
from accounts.models import User
from aibo.api_common import Refused, errors

router = Router(tags=["auth"])


class Credentials(Schema):
    email: str = Field(max_length=254)
    password: str = Field(max_length=4096)


class SignIn(Credentials):
    code: str = Field(
        default="", max_length=64, description="The authenticator code, for two-factor accounts"
    )


class TokenOut(Schema):
    token: str
    user_id: int


@router.post(
    "/register",
    response={201: TokenOut, **errors(400, 409, 422)},
    auth=None,
    summary="Create an account",
)
def register(request: HttpRequest, payload: Credentials) -> Status[TokenOut]:
    form = RegistrationForm(
        {"email": payload.email, "password1": payload.password, "password2": payload.password}
    )
    if not form.is_valid():
        field, errors = next(iter(form.errors.items()))
        name = {"password1": "password", "password2": "password"}.get(field, field)
        raise HttpError(422, f"{name}: {' '.join(errors)}")
    limit = settings.REGISTRATIONS_PER_CLIENT_PER_HOUR
    if (retry := throttle.hit("register", throttle.client_ip(request), limit, 3600)) is not None:
        wait = throttle.wait_words(retry)
        raise Refused(f"Too many sign-ups from your network this hour; try again {wait}.", retry)
    email = form.cleaned_data["email"]
    taken = "email: this address has an account already: sign in, or reset its password."
    if User.objects.filter(email__iexact=email).exists():
        raise HttpError(409, taken)
    try:
        with transaction.atomic():
            user = form.save()
    except IntegrityError:  # registered a moment ago by another request
        raise HttpError(409, taken) from None
    return Status(201, TokenOut(token=tokens.issue(user), user_id=user.pk))


@router.post(
    "/login", response={200: TokenOut, **errors(400, 422)}, auth=None, summary="Sign in: a token"
)
def login(request: HttpRequest, payload: SignIn) -> TokenOut:
    attempt = throttle.LoginAttempt.by_token(request, payload.email)
    if (refusal := attempt.refusal()) is not None:
        raise Refused(
            f"Too many failed sign-ins; try again {throttle.wait_words(refusal.retry_after)}.",
            refusal.retry_after,
        )
    user = authenticate(request, username=payload.email.strip(), password=payload.password)
    if user is None:
        attempt.failed()
        raise HttpError(401, "The email address or the password is wrong.")
    if two_factor.is_on(user):
        if not payload.code:
            raise HttpError(401, "code: this account signs in with an authenticator code too.")
        checked = two_factor.check_sign_in_code(user, payload.code)
        if checked.refused:
            assert checked.retry_after is not None
            raise Refused(
                f"Too many wrong codes; try again {throttle.wait_words(checked.retry_after)}.",
                checked.retry_after,
            )
        if checked.device is None:
            raise HttpError(401, "code: that code is not right.")
    attempt.succeeded()
    return TokenOut(token=tokens.issue(user), user_id=user.pk)
