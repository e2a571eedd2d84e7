"""The check that a user's exchange keys work and are safe to trade with, and the ccxt clients
they sign.

``verify_keys`` runs when keys are added, on "Verify again", and at every live start: the key
must work (the balance reads), must not be able to withdraw, and must be able to trade spot
(Binance's ``GET /sapi/v1/account/apiRestrictions``); a key without an IP whitelist is kept,
with advice. A testnet key (``credential.testnet``) talks to the spot testnet only, which has
no /sapi and no real funds: the balance is its check.

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

__all__ = ["KeysNotAllowed", "KeysRefused", "client_for", "stream_client_for", "verify_keys"]

logger = logging.getLogger(__name__)

WITHDRAWALS_ENABLED = (
    "this key can withdraw funds, and aibo only accepts keys that cannot (a leaked key could "
    "empty the account). On Binance: API Management → Edit restrictions on this key → untick "
    "“Enable Withdrawals” → Save; then add the key again."
)
TRADING_DISABLED = (
    "this key cannot trade spot. On Binance: API Management → Edit restrictions on this key → "
    "tick “Enable Spot & Margin Trading” → Save; then add the key again."
)
NO_IP_WHITELIST = (
    "This key works from any IP address. On Binance: API Management → Edit restrictions on "
    "this key → “Restrict access to trusted IPs only”, and enter this server's public IP "
    "address: a leaked key is then of no use anywhere else."
)


class KeysNotAllowed(KeysRefused):
    """The exchange accepted the keys, but aibo does not: they can withdraw, or cannot trade."""


@sensitive_variables()
def client_for(credential: Any) -> Any:
    """A ccxt client signed with this ExchangeCredential's keys (decrypted only here), on the
    spot testnet for a testnet key."""
    api_key, secret = credential.keys()
    return exchange.signed_client(credential.exchange, api_key, secret, sandbox=credential.testnet)


@sensitive_variables()
def stream_client_for(credential: Any) -> Any:
    """A ccxt.pro client signed with these keys, for the account's user data stream (on the
    spot testnet for a testnet key)."""
    api_key, secret = credential.keys()
    return exchange.stream_client(credential.exchange, api_key, secret, sandbox=credential.testnet)


@sensitive_variables()
def verify_keys(cred: ExchangeCredential) -> str | None:
    """Check the keys with the exchange: the balance reads, withdrawals are off, spot trading
    is on. On success set ``verified_at`` and ``check_warning`` (the IP whitelist advice, or
    empty); nothing is saved. None when verified, else why the keys could not be checked now
    (they may be fine; they stay unverified). Raises KeysRefused (the exchange refused them),
    KeysNotAllowed (it accepted them, but they can withdraw or cannot trade; ``verified_at``
    is cleared), or UndecryptableSecret for keys this server can no longer decrypt.
    """
    redact = cred.keys()
    client = client_for(cred)
    try:
        with exchange.translated("check keys", exchange_id=cred.exchange):
            client.fetch_balance()
            # The spot testnet has no /sapi (ccxt refuses it in sandbox mode) and no real funds.
            restrictions = None if cred.testnet else _restrictions(client, cred.exchange)
    except KeysRefused as e:
        raise KeysRefused(_masked(_words(e), redact)) from None
    except TemporaryExchangeError as e:  # timeouts, rate limits, maintenance, clock skew
        # The type only: ccxt's messages carry request URLs, which are nobody's business.
        logger.warning("exchange keys %s: not verified, %s", cred.pk, type(e.__cause__).__name__)
        return "the exchange did not answer (busy or unreachable)"
    except exchange.ExchangeError as e:
        logger.warning("exchange keys %s: not verified, %s", cred.pk, type(e.__cause__).__name__)
        return f"the exchange answered “{_masked(_words(e), redact)}”"
    warning = ""
    if not cred.testnet:
        if restrictions is None:
            return f"aibo cannot ask {cred.exchange} whether these keys can withdraw"
        if problem := _unknown_permissions(restrictions):
            return problem
        if refusal := _refusal(restrictions):
            cred.verified_at = None
            logger.warning("exchange keys %s: refused, %s", cred.pk, refusal.split(".")[0])
            raise KeysNotAllowed(refusal)
        warning = "" if restrictions.get("ipRestrict") is True else NO_IP_WHITELIST
    cred.check_warning = warning
    cred.verified_at = timezone.now()
    return None


def _restrictions(client: Any, exchange_id: str) -> dict[str, Any] | None:
    """What the key may do, in the exchange's words; None where aibo cannot ask (not Binance)."""
    if exchange_id != "binance":
        return None
    answer: dict[str, Any] = client.sapi_get_account_apirestrictions()
    return answer


def _unknown_permissions(restrictions: dict[str, Any]) -> str | None:
    flags = ("enableWithdrawals", "enableSpotAndMarginTrading")
    if not all(isinstance(restrictions.get(flag), bool) for flag in flags):
        return "the exchange did not say whether these keys can withdraw and trade"
    return None


def _refusal(restrictions: dict[str, Any]) -> str | None:
    if restrictions["enableWithdrawals"]:
        return WITHDRAWALS_ENABLED
    if not restrictions["enableSpotAndMarginTrading"]:
        return TRADING_DISABLED
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
