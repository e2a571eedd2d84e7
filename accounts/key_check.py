"""The check that a user's exchange keys work, and the ccxt client they sign.

Keys are decrypted only here, on the way into the client (``market.exchange`` makes it);
errors come back in the exchange's own words with anything that looks like a key masked.
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.crypto import mask
from accounts.models import ExchangeCredential
from market import exchange
from market.exchange import KeysRefused, TemporaryExchangeError

__all__ = ["KeysRefused", "client_for", "verify_keys"]

logger = logging.getLogger(__name__)


@sensitive_variables()
def client_for(credential: Any) -> Any:
    """A ccxt client signed with this ExchangeCredential's keys (decrypted only here)."""
    api_key, secret = credential.keys()
    return exchange.signed_client(credential.exchange, api_key, secret)


def stream_client_for(credential: Any) -> Any:
    """A ccxt.pro client signed with these keys, for the account's user data stream."""
    api_key, secret = credential.keys()
    return exchange.stream_client(credential.exchange, api_key, secret)


@sensitive_variables()
def verify_keys(cred: ExchangeCredential) -> str | None:
    """Ask the exchange for the balance with these keys; on success set ``verified_at`` (not
    saved). None when verified, else why the keys could not be checked now (they may be fine).
    Raises KeysRefused, or UndecryptableSecret for keys stored under another CREDENTIALS_KEY.
    """
    redact = cred.keys()
    client = client_for(cred)
    try:
        with exchange.translated("check keys", exchange_id=cred.exchange):
            client.fetch_balance()
    except KeysRefused as e:
        raise KeysRefused(_masked(_words(e), redact)) from None
    except TemporaryExchangeError as e:  # timeouts, rate limits, maintenance, clock skew
        # The type only: ccxt's messages carry request URLs, which are nobody's business.
        logger.warning("exchange keys %s: not verified, %s", cred.pk, type(e.__cause__).__name__)
        return "the exchange did not answer (busy or unreachable)"
    except exchange.ExchangeError as e:
        logger.warning("exchange keys %s: not verified, %s", cred.pk, type(e.__cause__).__name__)
        return f"the exchange answered “{_masked(_words(e), redact)}”"
    cred.verified_at = timezone.now()
    return None


def _words(error: exchange.ExchangeError) -> str:
    """The exchange's words without the action ``translated`` put in front."""
    return str(error).removeprefix("check keys: ")


def _masked(text: str, redact: tuple[str, ...]) -> str:
    """Anything that looks like one of the keys masked, in case an exchange echoes it."""
    for value in redact:
        if value:
            text = text.replace(value, mask(value))
    return text[:300]
