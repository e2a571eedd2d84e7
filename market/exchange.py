"""The bottom of the exchange stack: ccxt clients and the exchange's error taxonomy.

Accounts' key check, the market feed, market-rule and candle imports and live bots' gateway all
get their ccxt clients here and speak these errors; ccxt's own exceptions are translated into
them at the boundary (``translated``), once. ccxt is imported only when a client is made or an
error translated, so commands that never talk to an exchange never load it. Of ours this
imports nothing.

The errors tell the caller what to do next:

- ``TemporaryExchangeError``: network trouble, rate limits, maintenance, an unknown outcome.
  Retry later; an order may or may not have reached the exchange.
- ``OrderRejected``: the exchange refused this order (filters, balance): the same order fails
  the same way, the message says why.
- ``KeysRefused``: the exchange says the keys are not valid (or lack a permission).
- ``ExchangeError``: anything else (unknown symbol, ...): a person may need to look.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any


class ExchangeError(Exception):
    """The exchange said no, or something unexpected happened: a person may need to look."""


class TemporaryExchangeError(ExchangeError):
    """Network trouble, rate limit, maintenance or an unknown outcome: retry later."""


class OrderNotVisibleYet(TemporaryExchangeError):
    """An order we may have sent is not visible on the exchange yet (Binance answers "does
    not exist" for up to a minute after it accepts one): wait, never send it again blindly."""


class OrderRejected(ExchangeError):
    """The exchange refused this order (filters, insufficient balance): do not retry blindly."""


class OrderNotFound(ExchangeError):
    """The exchange has no such order (which, right after a send, proves nothing yet)."""


class KeysRefused(ExchangeError):
    """The exchange answered, and said these keys are not valid (its words are the message)."""


# Binance answers "does not exist" for up to about a minute after it accepted an order: until
# this long after we first sent one, "not found" proves nothing.
NOT_VISIBLE_FOR = timedelta(seconds=90)


def _ccxt_client(exchange: str, api_key: str, secret: str) -> Any:
    import ccxt

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


def signed_client(exchange: str, api_key: str, secret: str) -> Any:
    """A ccxt client signed with these keys (callers decrypt them just before)."""
    return CLIENT_FACTORY(exchange, api_key, secret)


def public_client(exchange: str) -> Any:
    """A keyless ccxt client for an exchange's public market data (spot markets)."""
    import ccxt

    if exchange not in ccxt.exchanges:
        raise ExchangeError(f"ccxt does not know an exchange called {exchange!r}")
    return getattr(ccxt, exchange)({"enableRateLimit": True, "options": {"defaultType": "spot"}})


def without_queries(message: str) -> str:
    """ccxt's messages can carry request URLs with signed query strings: keep the path only."""
    return re.sub(r"(https?://[^\s?]+)\?\S*", r"\1", message)


def exchange_says(error: BaseException, *, exchange_id: str = "") -> str:
    """The exchange's own words from a ccxt error: ``binance {"code":-2015,"msg":"…"}`` becomes
    ``… (code -2015)``; anything else is kept whole, less the query strings of its URLs
    (timestamps and signatures are nobody's business)."""
    text = without_queries(str(error))
    if exchange_id and text.startswith(f"{exchange_id} "):
        text = text[len(exchange_id) + 1 :]
    start = text.find("{")
    if start == -1:
        return text
    with contextlib.suppress(ValueError, AttributeError):  # not JSON: keep it whole
        body = json.loads(text[start:])
        if isinstance(body, dict) and body.get("msg"):
            code = body.get("code")
            return f"{body['msg']} (code {code})" if code is not None else str(body["msg"])
    return text


@contextmanager
def translated(action: str, *, exchange_id: str = "") -> Iterator[None]:
    """Turn ccxt's exceptions into this module's, with the exchange's own words; none of
    ccxt's get out."""
    import ccxt

    def words(e: BaseException) -> str:
        return f"{action}: {exchange_says(e, exchange_id=exchange_id)}"

    try:
        yield
    except ExchangeError:
        raise
    except (ccxt.NetworkError, ccxt.OperationFailed) as e:
        # Timeouts, 5xx, 429/418, dropped connections, Binance -1007 "execution status
        # unknown" and -1000 "unknown error": the request may or may not have been carried out.
        raise TemporaryExchangeError(words(e)) from e
    except ccxt.AuthenticationError as e:  # also PermissionDenied, AccountSuspended
        raise KeysRefused(words(e)) from e
    except ccxt.OrderNotFound as e:  # an InvalidOrder in ccxt, but no order was refused
        raise OrderNotFound(words(e)) from e
    except (ccxt.InsufficientFunds, ccxt.InvalidOrder) as e:
        raise OrderRejected(words(e)) from e
    except ccxt.BadRequest as e:
        # Binance's -1013 "Filter failure: NOTIONAL" arrives as BadRequest, not InvalidOrder.
        if "Filter failure" in str(e):
            raise OrderRejected(words(e)) from e
        raise ExchangeError(words(e)) from e
    except ccxt.BaseError as e:
        raise ExchangeError(words(e)) from e
