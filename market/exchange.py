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
import hashlib
import inspect
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone


class ExchangeError(Exception):
    """The exchange said no, or something unexpected happened: a person may need to look."""


class TemporaryExchangeError(ExchangeError):
    """Network trouble, rate limit, maintenance or an unknown outcome: retry later."""


class OrderNotVisibleYet(TemporaryExchangeError):
    """An order we may have sent is not visible on the exchange yet (Binance answers "does
    not exist" for up to a minute after it accepts one): wait, never send it again blindly."""


class NotSent(TemporaryExchangeError):
    """Nothing reached the exchange's books (held back here, or refused before it acted):
    wait, and sending the same order later is not sending it twice."""


class MarketPaused(NotSent):
    """The exchange has halted trading on this market, or is under maintenance ("Market is
    closed."): nothing can be placed until it reopens; wait, and say so."""


class OrderRejected(ExchangeError):
    """The exchange refused this order (filters, insufficient balance): do not retry blindly."""


class OrderWouldCross(OrderRejected):
    """A post-only order that would have traded at once on arrival (Binance -2010 "Order would
    immediately match and take."): nothing was placed; the price has passed its line."""


class OrderNotFound(ExchangeError):
    """The exchange has no such order (which, right after a send, proves nothing yet)."""


class KeysRefused(ExchangeError):
    """The exchange answered, and said these keys are not valid (its words are the message)."""


# Binance answers "does not exist" for up to about a minute after it accepted an order: until
# this long after we first sent one, "not found" proves nothing.
NOT_VISIBLE_FOR = timedelta(seconds=90)


def _client_config(api_key: str, secret: str) -> dict[str, Any]:
    return {
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
            # Signed requests carry the exchange's time, not this machine's (no -1021).
            "adjustForTimeDifference": True,
        },
    }


def _ccxt_client(exchange: str, api_key: str, secret: str) -> Any:
    import ccxt

    return getattr(ccxt, exchange)(_client_config(api_key, secret))


def _ccxt_pro_client(exchange: str, api_key: str, secret: str) -> Any:
    import ccxt.pro

    if exchange not in ccxt.pro.exchanges:
        raise ExchangeError(f"ccxt.pro has no websocket client for {exchange!r}")
    return getattr(ccxt.pro, exchange)(_client_config(api_key, secret))


# (exchange, api_key, secret) -> a ccxt client. Tests point it at the local fake exchange.
CLIENT_FACTORY: Callable[[str, str, str], Any] = _ccxt_client
# The same for ccxt.pro's websocket clients (asyncio: make one inside the loop that uses it).
# Empty keys give a public client for market streams. Tests point it at the fake's streams.
PRO_CLIENT_FACTORY: Callable[[str, str, str], Any] = _ccxt_pro_client


def _sandboxed(client: Any, exchange: str, sandbox: bool) -> tuple[Any, str]:
    """The client in the exchange's sandbox (ccxt's sandbox mode: Binance's spot testnet,
    testnet.binance.vision) when asked, and the name its request budget goes by: the testnet
    is another server with its own limits, so it never spends (or pauses) the real one's."""
    if not sandbox:
        return client, exchange
    client.set_sandbox_mode(True)
    return client, f"{exchange}-testnet"


def stream_client(
    exchange: str, api_key: str = "", secret: str = "", *, sandbox: bool = False
) -> Any:
    """A ccxt.pro client (websocket streams; its REST calls spend the request budget too:
    ``Budget.watch`` wraps async ``fetch`` the same way); in the sandbox with ``sandbox``."""
    client, budget = _sandboxed(PRO_CLIENT_FACTORY(exchange, api_key, secret), exchange, sandbox)
    return Budget(budget, api_key).watch(client)


def signed_client(exchange: str, api_key: str, secret: str, *, sandbox: bool = False) -> Any:
    """A ccxt client signed with these keys (callers decrypt them just before), spending its
    exchange's and its account's request budget; in the sandbox (a testnet key) with
    ``sandbox``."""
    client, budget = _sandboxed(CLIENT_FACTORY(exchange, api_key, secret), exchange, sandbox)
    return Budget(budget, api_key).watch(client)


def public_client(exchange: str) -> Any:
    """A keyless ccxt client for an exchange's public market data (spot markets), made by
    ``CLIENT_FACTORY`` with empty keys (so tests point it at the fake too)."""
    import ccxt

    if exchange not in ccxt.exchanges:
        raise ExchangeError(f"ccxt does not know an exchange called {exchange!r}")
    return Budget(exchange).watch(CLIENT_FACTORY(exchange, "", ""))


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


class Observers:
    """Who wants to hear about every request, weight report and error (``aibo.metrics``
    subscribes at start); this module imports nothing of the project's to tell them."""

    def __init__(self) -> None:
        self.on_request: list[Callable[[str, str], None]] = []  # (exchange, account)
        self.on_weight: list[Callable[[str, str, int], None]] = []  # (exchange, window, used)
        self.on_error: list[Callable[[str, str], None]] = []  # (exchange, kind)

    def tell(self, listeners: list[Callable[..., None]], *args: Any) -> None:
        for listener in listeners:
            try:
                listener(*args)
            except Exception:  # a listener must never break a request
                logging.getLogger(__name__).exception("exchange observer failed")


observers = Observers()


@contextmanager
def translated(action: str, *, exchange_id: str = "") -> Iterator[None]:
    """Turn ccxt's exceptions into this module's, with the exchange's own words; none of
    ccxt's get out."""
    import ccxt

    def words(e: BaseException) -> str:
        return f"{action}: {exchange_says(e, exchange_id=exchange_id)}"

    try:
        try:
            yield
        except Exception as e:
            if isinstance(e, ExchangeError | ccxt.BaseError):
                observers.tell(observers.on_error, exchange_id or "exchange", type(e).__name__)
            raise
    except ExchangeError:
        raise
    except ccxt.MarketClosed as e:  # a halt or maintenance: it reopens
        raise MarketPaused(words(e)) from e
    except (ccxt.NetworkError, ccxt.OperationFailed) as e:
        # Timeouts, 5xx, 429/418, dropped connections, Binance -1007 "execution status
        # unknown" and -1000 "unknown error": the request may or may not have been carried out.
        raise TemporaryExchangeError(words(e)) from e
    except ccxt.AuthenticationError as e:  # also PermissionDenied, AccountSuspended
        raise KeysRefused(words(e)) from e
    except ccxt.OrderNotFound as e:  # an InvalidOrder in ccxt, but no order was refused
        raise OrderNotFound(words(e)) from e
    except ccxt.OrderImmediatelyFillable as e:  # a post-only order the market has reached
        raise OrderWouldCross(words(e)) from e
    except (ccxt.InsufficientFunds, ccxt.InvalidOrder) as e:
        raise OrderRejected(words(e)) from e
    except ccxt.BadRequest as e:
        # Binance's -1013 "Filter failure: NOTIONAL" arrives as BadRequest, not InvalidOrder.
        if "Filter failure" in str(e):
            raise OrderRejected(words(e)) from e
        raise ExchangeError(words(e)) from e
    except ccxt.BaseError as e:
        raise ExchangeError(words(e)) from e


# --- the request budget ----------------------------------------------------------------------
#
# One request budget per exchange IP and per exchange account, shared by every process.
# Binance counts request weight per IP (``X-MBX-USED-WEIGHT-1M``) and new orders per account
# (``X-MBX-ORDER-COUNT-10S``, ``-1D``), answers 429 with ``Retry-After`` past a limit, and bans
# the IP (418, from two minutes to three days) when the 429s are ignored; during a ban nothing,
# not even a cancel, gets through. So every ccxt client made here is watched:
#
# - after each answer, the exchange's own counters are written to the cache (Redis when
#   configured: one budget for all workers; in memory in the embedded default's one process);
# - the limits are the exchange's, read from ``exchangeInfo.rateLimits`` whenever a client
#   loads it, never constants; until then only the exchange's refusals pace us;
# - before each request: while the IP is paused (a 429, for its ``Retry-After``) or banned (a
#   418, until the end it names), or less than ``EXCHANGE_BUDGET_HEADROOM`` of a limit is left
#   in its window, nothing is sent and ``RequestsPaused`` (a temporary error) says until when;
# - ccxt's own rate limiter (``enableRateLimit``: 50 ms between one client's requests on
#   Binance, whatever the exchange's counters say) waits only while the limits are unknown or
#   half of a limit's share is used: with room, a fill's counter-order goes out at once.


# Requests that take risk off (a stop, a stop-loss that fires) may spend the budget's spare
# share: they are made inside ``spending_reserve()``.
_RESERVE: ContextVar[bool] = ContextVar("exchange_reserve", default=False)


@contextmanager
def spending_reserve(on: bool = True) -> Iterator[None]:
    """Requests made inside take risk off, and may spend the spare share of the budget (never
    past the exchange's own limit, never during a pause or a ban)."""
    token = _RESERVE.set(on or _RESERVE.get())
    try:
        yield
    finally:
        _RESERVE.reset(token)


def _now() -> float:
    """Epoch seconds, from Django's clock (which a simulated run moves)."""
    return timezone.now().timestamp()


WINDOWS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
_BANNED_UNTIL = re.compile(r"banned until (\d{10,})")
_TOO_MANY_ORDERS = re.compile(r'"code":\s*-1015\b')


class RequestsPaused(NotSent):
    """Nothing is sent to the exchange until ``until`` (epoch seconds)."""

    def __init__(self, message: str, *, until: float) -> None:
        super().__init__(message)
        self.until = until


@dataclass(frozen=True)
class Limit:
    kind: str  # "REQUEST_WEIGHT" (per IP) or "ORDERS" (per account)
    seconds: int
    limit: int

    @property
    def header(self) -> str:
        """The response header that counts it, e.g. ``x-mbx-used-weight-1m``."""
        unit = {1: "s", 60: "m", 3600: "h", 86400: "d"}
        n, u = next(
            (self.seconds // s, unit[s]) for s in (86400, 3600, 60, 1) if self.seconds % s == 0
        )
        prefix = "x-mbx-used-weight-" if self.kind == "REQUEST_WEIGHT" else "x-mbx-order-count-"
        return f"{prefix}{n}{u}"


def limits_from(exchange_info: dict[str, Any]) -> list[Limit]:
    """The weight and order limits an exchangeInfo states (``rateLimits``)."""
    found = []
    for row in exchange_info.get("rateLimits") or []:
        kind = row.get("rateLimitType")
        if kind not in ("REQUEST_WEIGHT", "ORDERS") or row.get("interval") not in WINDOWS:
            continue
        seconds = WINDOWS[row["interval"]] * int(row.get("intervalNum") or 1)
        found.append(Limit(kind, seconds, int(row["limit"])))
    return found


class Budget:
    """The budget one ccxt client spends: its exchange's IP budget, and its account's."""

    def __init__(self, exchange: str, api_key: str = "") -> None:
        self.exchange = exchange
        # The account, by a digest of its key: no key in the cache.
        self.account = hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else ""
        # How far this machine's clock runs ahead of the exchange's (ccxt's timeDifference):
        # the exchange's windows turn on its clock.
        self.ahead = 0.0
        # Whether ccxt's own pacing spaces this client's requests: until the exchange's limits
        # are known, and again from half of a limit's share on (``before``, ``after``).
        self._crowded = True
        # The limits as ``before`` read them for the request on its way: ``after`` needs them.
        self._limits: list[Limit] | None = None

    def _now(self) -> float:
        return _now() - self.ahead

    # --- cache keys ---------------------------------------------------------------------------

    def _key(self, *parts: object) -> str:
        return ":".join(["budget", self.exchange, *map(str, parts)])

    def limits(self) -> list[Limit]:
        return cache.get(self._key("limits")) or []

    def pause(self) -> tuple[float, str] | None:
        """(until, why) while the IP is paused or banned."""
        paused = cache.get(self._key("paused"))
        return paused if paused and paused[0] > self._now() else None

    # --- before and after each request --------------------------------------------------------

    def before(self, method: str, url: str) -> None:
        """Raise ``RequestsPaused`` instead of sending while the budget says wait. What takes
        risk off (a cancel; anything inside ``spending_reserve``: a stop, a stop-loss firing)
        may spend the spare share; nothing goes out during a pause or a ban. One cache read
        (the limits, the pause and the counters of the limits the last request saw; a second
        only when the limits changed meanwhile): an order is on its way."""
        now = self._now()
        places = method == "POST" and urlsplit(url).path.endswith("/order")

        def counters(limits: list[Limit]) -> dict[Limit, str]:
            return {
                limit: self._used_key(limit)
                for limit in limits
                if limit.kind != "ORDERS" or (places and self.account)
            }

        limits_key, paused_key = self._key("limits"), self._key("paused")
        counted = counters(self._limits or [])
        known = cache.get_many([limits_key, paused_key, *counted.values()])
        paused = known.get(paused_key)
        if paused and paused[0] > now:
            raise RequestsPaused(
                f"{self.exchange}: {paused[1]}; nothing is sent until "
                f"{time.strftime('%H:%M:%S UTC', time.gmtime(paused[0]))}",
                until=paused[0],
            )
        urgent = method == "DELETE" or _RESERVE.get()  # a cancel always takes risk off
        headroom = 0 if urgent else settings.EXCHANGE_BUDGET_HEADROOM
        limits = known.get(limits_key) or []
        used_now = known
        if limits != self._limits:  # learnt or changed since: their counters, read now
            counted = counters(limits)
            used_now = cache.get_many(list(counted.values())) if counted else {}
        self._limits = limits
        shares = [0.0]
        for limit, key in counted.items():
            used = _in_window(used_now.get(key), int(now // limit.seconds))
            shares.append(used / limit.limit)
            if used >= limit.limit * (1 - Decimal(str(headroom))):
                until = (int(now // limit.seconds) + 1) * limit.seconds
                what = "request weight" if limit.kind == "REQUEST_WEIGHT" else "new orders"
                raise RequestsPaused(
                    f"{self.exchange}: {used} of {limit.limit} {what} per {limit.seconds} s "
                    f"used; waiting for the next window to keep {headroom:.0%} spare",
                    until=until,
                )
        self._crowded = not limits or max(shares) >= self._pace_from()

    def _pace_from(self) -> float:
        """The share of a limit from which ccxt's own pacing (``enableRateLimit``) spaces this
        client's requests again: half of what the headroom leaves."""
        return (1 - float(settings.EXCHANGE_BUDGET_HEADROOM)) / 2

    def after(self, status: int, url: str, headers: Any, body: str) -> None:
        """Take in the exchange's counters, its limits and its refusals."""
        now = self._now()
        lower = {k.lower(): v for k, v in (headers or {}).items()}
        observers.tell(observers.on_request, self.exchange, self.account or "public")
        counters: dict[str, tuple[int, int]] = {}
        kept = 0
        for limit in self._limits if self._limits is not None else self.limits():
            value = lower.get(limit.header)
            if value is not None and str(value).isdigit():
                counters[self._used_key(limit)] = (int(now // limit.seconds), int(value))
                kept = max(kept, limit.seconds + 5)
                if int(value) / limit.limit >= self._pace_from():
                    self._crowded = True
                if limit.kind == "REQUEST_WEIGHT":
                    observers.tell(
                        observers.on_weight, self.exchange, f"{limit.seconds}s", int(value)
                    )
        if counters:  # one write: each counter names its window, so one key per limit
            cache.set_many(counters, timeout=kept)
        if urlsplit(url).path.endswith("/exchangeInfo") and status == 200:
            self._learn_limits(body)
        if status in (418, 429):
            self._refused(status, lower, body, now)

    def usage(self) -> list[tuple[str, int, int]]:
        """(what, used, limit) of each of the exchange's limits in its current window: the
        IP's request weight, and this account's new orders (a budget with a key)."""
        now, out = self._now(), []
        for limit in self.limits():
            if limit.kind == "ORDERS" and not self.account:
                continue
            used = _in_window(cache.get(self._used_key(limit)), int(now // limit.seconds))
            what = "request weight (this IP)" if limit.kind == "REQUEST_WEIGHT" else "new orders"
            out.append((f"{what} per {limit.seconds:,} s", int(used), limit.limit))
        return out

    def _used_key(self, limit: Limit) -> str:
        """Where a limit's counter is kept: (its window, what the exchange says is used)."""
        who = "ip" if limit.kind == "REQUEST_WEIGHT" else f"account:{self.account}"
        return self._key(who, limit.kind, limit.seconds)

    def _learn_limits(self, body: str) -> None:
        try:
            limits = limits_from(json.loads(body))
        except (ValueError, TypeError, AttributeError):
            return
        if limits:
            cache.set(self._key("limits"), limits, timeout=24 * 3600)

    def _refused(self, status: int, headers: dict[str, Any], body: str, now: float) -> None:
        if status == 429 and _TOO_MANY_ORDERS.search(body or "") and self.account:
            # The account's new-order count, not the IP: no new order until its window turns.
            seconds = 86400 if "per DAY" in body else 10
            for limit in self.limits():
                if limit.kind == "ORDERS" and limit.seconds == seconds:
                    window = int(now // limit.seconds)
                    cache.set(self._used_key(limit), (window, limit.limit), timeout=seconds + 5)
            return
        retry_after = str(headers.get("retry-after", ""))
        until = now + (int(retry_after) if retry_after.isdigit() else 60)
        banned = _BANNED_UNTIL.search(body or "")
        if status == 418 and banned:
            until = max(until, int(banned.group(1)) / 1000)
        why = (
            "the IP is banned by the exchange (HTTP 418) for sending past its limits"
            if status == 418
            else "the exchange asked us to slow down (HTTP 429)"
        )
        current = self.pause()
        if current is None or current[0] < until:
            cache.set(self._key("paused"), (until, why), timeout=int(until - now) + 5)

    # --- a ccxt client, watched ----------------------------------------------------------------

    def watch(self, client: Any) -> Any:
        """Route every request of ``client`` through this budget (ccxt's ``fetch`` and its
        ``on_rest_response`` hook, which sees every answer, errors included), and let ccxt's
        own pacing (``throttle``) wait only while the budget is crowded."""
        fetch, on_response = client.fetch, client.on_rest_response

        def budgeted_fetch(
            url: str, method: str = "GET", headers: Any = None, body: Any = None
        ) -> Any:
            self.ahead = (client.options.get("timeDifference") or 0) / 1000
            self.before(method, url)
            return fetch(url, method, headers, body)

        def seen(
            code: int, reason: str, url: str, method: str, headers: Any, text: str, *rest: Any
        ) -> Any:
            self.after(code, url, headers, text)
            return on_response(code, reason, url, method, headers, text, *rest)

        throttle = client.throttle

        # ccxt's rate limiter (``enableRateLimit``) spaces one client's requests whatever the
        # exchange's counters say: it waits only while this budget is crowded (or knows no
        # limits yet); with room, an order goes out at once.
        if inspect.iscoroutinefunction(throttle):  # a ccxt.pro (asyncio) client

            async def paced(cost: Any = None) -> Any:
                return await throttle(cost) if self._crowded else None

        else:

            def paced(cost: Any = None) -> Any:
                return throttle(cost) if self._crowded else None

        client.fetch = budgeted_fetch
        client.on_rest_response = seen
        client.throttle = paced
        return client


def _in_window(counter: tuple[int, int] | None, window: int) -> int:
    """What a kept counter says is used in ``window`` (nothing, once its window has turned)."""
    return counter[1] if counter and counter[0] == window else 0


def ban_notice(exchange: str) -> str | None:
    """In words, for the dashboard: the exchange has paused or banned this server's requests."""
    paused = Budget(exchange).pause()
    if paused is None:
        return None
    until, why = paused
    minutes = max(1, round((until - _now()) / 60))
    at = time.strftime("%H:%M UTC", time.gmtime(until))
    return (
        f"{exchange.capitalize()}: {why}. Live bots send nothing until {at} (about {minutes} min)."
    )
