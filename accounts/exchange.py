"""The exchange client a user's keys sign (ccxt), and the check that the keys work.

Keys are decrypted only here, on the way into the client; errors come back in the
exchange's own words with anything that looks like a key masked.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import ccxt
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.crypto import mask
from accounts.models import ExchangeCredential

logger = logging.getLogger(__name__)


def _ccxt_client(exchange: str, api_key: str, secret: str) -> Any:
    return getattr(ccxt, exchange)(
        {
            "apiKey": api_key,
            "secret": secret,
            "enableRateLimit": True,
            "timeout": 10_000,
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                # Spot grids need neither: without these ccxt also calls the signed /sapi
                # currency and margin endpoints whenever it loads the markets.
                "fetchCurrencies": False,
                "fetchMargins": False,
            },
        }
    )


# (exchange, api_key, secret) -> a ccxt client. Tests point it at the local fake exchange.
CLIENT_FACTORY: Callable[[str, str, str], Any] = _ccxt_client


def client_for(credential: Any) -> Any:
    """A ccxt client signed with this ExchangeCredential's keys (decrypted only here)."""
    api_key, secret = credential.keys()
    return CLIENT_FACTORY(credential.exchange, api_key, secret)


class KeysRefused(Exception):
    """The exchange answered, and said these keys are not valid (its words are the message)."""


@sensitive_variables()
def verify_keys(cred: ExchangeCredential) -> str | None:
    """Ask the exchange for the balance with these keys; on success set ``verified_at`` (not
    saved). None when verified, else why the keys could not be checked now (they may be fine).
    Raises KeysRefused, or UndecryptableSecret for keys stored under another CREDENTIALS_KEY.
    """
    redact = cred.keys()
    try:
        client_for(cred).fetch_balance()
    except ccxt.AuthenticationError as e:  # also PermissionDenied, AccountSuspended
        raise KeysRefused(_exchange_says(e, redact)) from None
    except ccxt.NetworkError as e:  # timeouts, rate limits, maintenance, clock skew
        # The type only: ccxt's messages carry request URLs, which are nobody's business.
        logger.warning("exchange keys %s: not verified, %s", cred.pk, type(e).__name__)
        return "the exchange did not answer (busy or unreachable)"
    except ccxt.BaseError as e:
        logger.warning("exchange keys %s: not verified, %s", cred.pk, type(e).__name__)
        return f"the exchange answered “{_exchange_says(e, redact)}”"
    cred.verified_at = timezone.now()
    return None


def _exchange_says(error: ccxt.BaseError, redact: tuple[str, ...]) -> str:
    """The exchange's own words from a ccxt error (``binance {"code":-2015,"msg":"…"}``), with
    anything that looks like one of the keys masked, in case an exchange echoes it."""
    text = str(error)
    start = text.find("{")
    if start != -1:
        with contextlib.suppress(ValueError, AttributeError):  # not JSON: keep it whole
            text = str(json.loads(text[start:]).get("msg") or text)
    for value in redact:
        if value:
            text = text.replace(value, mask(value))
    return text[:300]
