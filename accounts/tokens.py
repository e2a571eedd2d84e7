"""API tokens: signed, expiring JWTs (PyJWT, HS256) for ``Authorization: Bearer <token>``.

A token names its user (``sub``), when it was issued and when it expires
(``API_TOKEN_HOURS``), and carries a tag of the user's password hash: changing the password
ends every token issued before, as it ends every other session. The signing key is derived
from ``SECRET_KEY`` for this purpose alone, so a token is never valid as anything else.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt
from django.conf import settings
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from accounts.models import User

ALGORITHM = "HS256"
ISSUER = "aibo"


def _key() -> str:
    return salted_hmac("accounts.tokens", "api-token-key").hexdigest()


def _password_tag(user: User) -> str:
    return salted_hmac("accounts.tokens.password", user.password).hexdigest()[:16]


def issue(user: User) -> str:
    now = timezone.now()
    claims = {
        "iss": ISSUER,
        "sub": str(user.pk),
        "iat": now,
        "exp": now + timedelta(hours=settings.API_TOKEN_HOURS),
        "pw": _password_tag(user),
    }
    return jwt.encode(claims, _key(), algorithm=ALGORITHM)


def user_of(token: str) -> User | None:
    """The active user a token names, or None: a bad signature, an expired token, a user gone
    or made inactive, or a password changed since it was issued."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _key(),
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
    except jwt.PyJWTError:
        return None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.isdigit():
        return None
    user = User.objects.filter(pk=int(sub), is_active=True).first()
    if user is None or not constant_time_compare(str(claims.get("pw", "")), _password_tag(user)):
        return None
    return user
