"""A local fake Binance spot exchange that speaks the real REST shapes over real HTTP.

The real ccxt client talks to it, so the ccxt gateway is tested end to end without network:

    with FakeBinance(balances={"USDT": "1000"}) as fake:
        client = fake.ccxt_client()
        client.create_order("BTC/USDT", "limit", "buy", 0.001, 100000)
        fake.walk("BTCUSDT", ["100500", "99990"])  # the buy fills at 100000

Shapes, JSON types and error codes/messages follow Binance's docs (binance-spot-api-docs,
``rest-api.md`` and ``errors.md``); symbols and filters come from the real exchangeInfo snapshot
that ships with the app, ``market/data/binance_exchangeInfo_spot_BTCUSDT_ETHUSDT.json``, plus
a BNBUSDT market shaped like BTCUSDT (BNB prices the fees).
Simplifications, all deliberate:

- No order book: a resting order fills once the price crosses it, all that is left of it, at
  its own price (maker); ``fill_part`` fills part of one (PARTIALLY_FILLED). An order that is
  marketable when placed fills whole at once at the current price (taker), as market orders do.
- Commission is the maker or taker rate of the quote notional, charged in the quote asset;
  with ``buyer_pays_base=True`` a buyer pays it in the base asset it receives, as Binance does
  for accounts that do not pay fees in BNB; with ``bnb_fees=True`` it is paid in BNB at 75 %
  while the BNB balance covers it. A buy locks notional plus commission while it rests.
- Only one account, one API key; ``clock`` may run in simulated time, but signed requests are
  checked against the wall clock that ccxt signs with (plus ``clock_skew_ms``, the server's
  clock running ahead of the client's, or behind when negative).

Binance's limits, as its docs describe them (``rest-api.md`` LIMITS, ``errors.md``): each request
costs its weight (``WEIGHTS``) against the IP's ``REQUEST_WEIGHT`` limit and every placed order
counts against the account's ``ORDERS`` limits, both from ``exchangeInfo.rateLimits`` (Binance's
own numbers unless ``rate_limits`` replaces them) in fixed windows of the fake's clock (this
minute, these 10 seconds, this UTC day); an order's first fill takes it off the order counts
(the unfilled order count). Every answer carries ``X-MBX-USED-WEIGHT-1M`` (/sapi its own
``X-SAPI-USED-IP-WEIGHT-1M``), order placements ``X-MBX-ORDER-COUNT-10S``/``-1D``. Over the
weight limit: 429 -1003 with ``Retry-After``; ``ban_after`` of those in one window and the next
request over it is banned: 418 to every request for ``ban_seconds``. Over an order limit: 429
-1015. Failures injected with ``fail_next`` never reach these limits. ``LIMIT_MAKER`` orders,
``PERCENT_PRICE_BY_SIDE`` against the last price (no average over ``avgPriceMins``),
``halt``/``resume`` of a symbol and the ``maintenance`` flag of ``GET /sapi/v1/system/status``
act as on Binance.

The key's permissions are ``GET /sapi/v1/account/apiRestrictions`` (signed, IP weight 1 on the
/sapi counter), its fields as Binance's "Get API Key Permission" answers them, from
``api_restrictions`` (by default: reading and spot trading on, withdrawals off, IP whitelist
on). ``testnet=True`` plays the spot testnet (testnet.binance.vision), which has no /sapi;
``ccxt_client(testnet=other)`` points the client's sandbox URLs at another fake, so a test can
prove a testnet key never reaches the live one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import ccxt

DATA_DIR = Path(__file__).resolve().parents[2] / "market" / "data"  # in this repository
EXCHANGE_INFO = DATA_DIR / "binance_exchangeInfo_spot_BTCUSDT_ETHUSDT.json"
COMMISSION_RATE = Decimal("0.001")
BNB_DISCOUNT = Decimal("0.75")  # paying fees in BNB costs 75 % of the standard commission
OPEN = frozenset({"NEW", "PARTIALLY_FILLED"})  # on the book: listed, fillable, cancelable
API_PREFIX = "/api/v3"
EIGHT = Decimal("0.00000001")
CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
DAY_MS = 24 * 60 * 60 * 1000
INTERVAL_MS = {
    "1s": 1000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}
SYSTEM_STATUS = "/sapi/v1/system/status"  # unsigned; /sapi counts its own IP weight
API_RESTRICTIONS = "/sapi/v1/account/apiRestrictions"  # signed (USER_DATA)
SAPI = frozenset({SYSTEM_STATUS, API_RESTRICTIONS})
SIGNED = {
    "/order",
    "/openOrders",
    "/allOrders",
    "/myTrades",
    "/account",
    "/account/commission",
    API_RESTRICTIONS,
}
# What "Get API Key Permission" answers for a key made the way aibo asks (developers.binance.com
# /docs/wallet/account/api-key-permission): read and trade spot, no withdrawals, whitelisted IPs.
DEFAULT_API_RESTRICTIONS: dict[str, Any] = {
    "ipRestrict": True,
    "createTime": 1_700_000_000_000,
    "enableReading": True,
    "enableWithdrawals": False,
    "enableInternalTransfer": False,
    "enableMargin": False,
    "enableFutures": False,
    "permitsUniversalTransfer": False,
    "enableVanillaOptions": False,
    "enableFixApiTrade": False,
    "enableFixReadOnly": False,
    "enableSpotAndMarginTrading": True,
    "enablePortfolioMarginTrading": False,
}


def _depth_weight(p: dict[str, str]) -> int:
    try:
        limit = int(p.get("limit", 100))
    except ValueError:
        limit = 100
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def _ticker_24hr_weight(p: dict[str, str]) -> int:
    if "symbol" in p:
        return 2
    if "symbols" in p:
        try:
            n = len(json.loads(p["symbols"]))
        except (ValueError, TypeError):
            n = 1
        return 2 if n <= 20 else 40 if n <= 100 else 80
    return 80


# Request weight (IP) of each endpoint, from Binance's spot REST docs (developers.binance.com
# /docs/binance-spot-api-docs/rest-api: general, market-data, trading and account endpoints;
# the same numbers as ccxt's binance.py costs divided by 0.2). Anything else costs 1.
WEIGHTS: dict[tuple[str, str], int | Callable[[dict[str, str]], int]] = {
    ("GET", "/ping"): 1,
    ("GET", "/time"): 1,
    ("GET", "/exchangeInfo"): 20,
    ("GET", "/depth"): _depth_weight,  # 5 up to limit 100, 25 to 500, 50 to 1000, 250 to 5000
    ("GET", "/klines"): 2,
    ("GET", "/ticker/24hr"): _ticker_24hr_weight,  # 2 a symbol, 80 all of them
    ("GET", "/ticker/price"): lambda p: 2 if "symbol" in p else 4,
    ("POST", "/order"): 1,
    ("GET", "/order"): 4,
    ("DELETE", "/order"): 1,
    ("GET", "/openOrders"): lambda p: 6 if "symbol" in p else 80,
    ("DELETE", "/openOrders"): 1,
    ("GET", "/allOrders"): 20,
    ("GET", "/myTrades"): lambda p: 5 if "orderId" in p else 20,
    ("GET", "/account"): 20,
    ("GET", "/account/commission"): 20,
    ("GET", SYSTEM_STATUS): 1,  # SAPI IP weight: counted apart, X-SAPI-USED-IP-WEIGHT-1M
    ("GET", API_RESTRICTIONS): 1,  # SAPI IP weight too
}
# What api.binance.com's exchangeInfo says (the shipped snapshot has an empty list).
DEFAULT_RATE_LIMITS: list[dict[str, Any]] = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]
INTERVAL_UNIT_MS = {"SECOND": 1000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
# How -1015 names an order interval: "per TEN_SECONDS", "per DAY".
ORDER_INTERVAL_NAMES = {(10, "SECOND"): "TEN_SECONDS", (1, "MINUTE"): "MINUTE", (1, "DAY"): "DAY"}

Failure = int | Literal["timeout", "drop"]


def fmt(value: Decimal) -> str:
    """Binance writes amounts as strings with 8 decimals: ``"0.00100000"``."""
    return f"{value.quantize(EIGHT, rounding=ROUND_HALF_UP):f}"


class BinanceError(Exception):
    """Becomes ``{"code": code, "msg": msg}`` with the HTTP status Binance uses (and a
    ``Retry-After`` header in seconds when given)."""

    def __init__(
        self, code: int, msg: str, status: int = 400, retry_after: int | None = None
    ) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status
        self.retry_after = retry_after


def mandatory(name: str) -> BinanceError:
    return BinanceError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


@dataclass
class Order:
    symbol: str
    order_id: int
    client_id: str
    side: str  # "BUY" | "SELL"
    type: str  # "LIMIT" | "MARKET"
    price: Decimal  # 0 for market orders, as Binance reports them
    qty: Decimal
    time: int
    time_in_force: str = "GTC"
    executed: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)  # cummulativeQuoteQty (sic)
    status: str = "NEW"
    update_time: int = 0
    locked: Decimal = Decimal(0)  # what this order holds of the balance while it rests

    @property
    def is_open(self) -> bool:
        """NEW or PARTIALLY_FILLED: still on the book, so fillable and cancelable."""
        return self.status in OPEN

    def as_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_id,
            "price": fmt(self.price),
            "origQty": fmt(self.qty),
            "executedQty": fmt(self.executed),
            "cummulativeQuoteQty": fmt(self.quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
            "stopPrice": fmt(Decimal(0)),
            "icebergQty": fmt(Decimal(0)),
            "time": self.time,
            "updateTime": self.update_time or self.time,
            "isWorking": True,
            "workingTime": self.time,
            "origQuoteOrderQty": fmt(Decimal(0)),
            "selfTradePreventionMode": "NONE",
        }


@dataclass
class Trade:
    symbol: str
    trade_id: int
    order_id: int
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "id": self.trade_id,
            "orderId": self.order_id,
            "orderListId": -1,
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "quoteQty": fmt(self.price * self.qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time,
            "isBuyer": self.is_buyer,
            "isMaker": self.is_maker,
            "isBestMatch": True,
        }


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the query, e.g. "/api/v3/order"
    params: dict[str, str]
    status: int = 0  # filled in once answered; 0 when the connection was dropped or hung


@dataclass
class _Failure:
    method: str | None
    how: Failure
    body: dict[str, Any] | None = None
    after_processing: bool = False
    client_id: str | None = None  # fires only on a request naming this client order id

    def aims_at(self, method: str, params: dict[str, str]) -> bool:
        if self.method not in (None, method):
            return False
        named = (params.get("newClientOrderId"), params.get("origClientOrderId"))
        return self.client_id is None or self.client_id in named


@dataclass
class _Limiter:
    """One ``exchangeInfo.rateLimits`` entry counted in fixed windows of its interval (this
    minute, these 10 seconds, this UTC day); ``limit`` None only counts (for the headers)."""

    kind: str  # "REQUEST_WEIGHT" | "ORDERS" | "RAW_REQUESTS"
    interval: str  # "SECOND" | "MINUTE" | "HOUR" | "DAY"
    num: int
    limit: int | None
    start: int = -1
    count: int = 0

    @property
    def ms(self) -> int:
        return self.num * INTERVAL_UNIT_MS[self.interval]

    @property
    def header(self) -> str:
        prefix = "X-MBX-USED-WEIGHT" if self.kind == "REQUEST_WEIGHT" else "X-MBX-ORDER-COUNT"
        return f"{prefix}-{self.num}{self.interval[0]}"

    def used(self, now: int) -> int:
        start = now - now % self.ms
        if start != self.start:
            self.start, self.count = start, 0
        return self.count

    def add(self, now: int, n: int) -> None:
        self.count = max(0, self.used(now) + n)  # a decrement never goes below zero

    def frees_at(self, now: int) -> int:
        self.used(now)
        return self.start + self.ms

    def over(self, now: int) -> bool:
        return self.limit is not None and self.used(now) > self.limit


@dataclass
class _Symbol:
    info: dict[str, Any]
    base: str
    quote: str
    filters: dict[str, dict[str, Any]] = field(default_factory=dict)


class FakeBinance:
    """A fake Binance spot REST API on ``127.0.0.1:<free port>``, served by a background thread.

    Drive the market with ``set_price``/``walk`` and ``fill_part``; act as the trader or the
    exchange with ``user_cancel`` and ``expire``; inject trouble with ``fail_next`` and
    ``accept_then_fail_response``; inspect ``requests``, ``orders()``, ``open_orders()``,
    ``trades`` and ``balance()``. State is guarded by one lock, so tests may poke it while ccxt
    talks.
    """

    def __init__(
        self,
        *,
        api_key: str = "k",
        secret: str = "s",
        balances: dict[str, str | Decimal] | None = None,
        prices: dict[str, str | Decimal] | None = None,
        exchange_info: Path | dict[str, Any] = EXCHANGE_INFO,
        hang_seconds: float = 5.0,
        buyer_pays_base: bool = False,
        not_found_ms: int = 0,
        clock: Callable[[], int] | None = None,
        commission: dict[str, str | Decimal] | None = None,
        bnb_fees: bool = False,
        rate_limits: list[dict[str, Any]] | None = None,
        ban_seconds: int = 120,
        ban_after: int = 2,
        clock_skew_ms: int = 0,
        api_restrictions: dict[str, Any] | None = None,
        testnet: bool = False,
    ) -> None:
        # Epoch milliseconds of every time the fake makes; pass a clock to run it in simulated
        # time (advance a minute without sleeping).
        self.clock = clock or _now_ms
        # The server's clock runs this far ahead of the client's (behind when negative): in
        # every time the server tells (serverTime, order and trade times) and in the recvWindow
        # check of signed requests, which compares with the wall clock ccxt signs with.
        self.clock_skew_ms = clock_skew_ms
        self.commission = {"maker": COMMISSION_RATE, "taker": COMMISSION_RATE}
        for role, rate in (commission or {}).items():
            if role not in self.commission:
                raise ValueError(f"commission takes 'maker' and 'taker', not {role!r}")
            self.commission[role] = Decimal(rate)
        # Pay fees in BNB at Binance's discount while the free BNB covers them; BNB is priced
        # by ``prices["BNB" + quote]``, e.g. ``prices["BNBUSDT"]``.
        self.bnb_fees = bnb_fees
        self.buyer_pays_base = buyer_pays_base
        # Binance answers "does not exist" (-2013 on a lookup, -2011 on a cancel) for up to
        # about a minute after it accepted an order: lookups and cancels by id do not see an
        # order younger than this (the open-orders list and allOrders do).
        self.not_found_ms = not_found_ms
        # A fill shows in the account's trade list (myTrades) only this long after it happened,
        # while the order itself already says FILLED.
        self.trade_delay_ms = 0
        self.api_key = api_key
        self.secret = secret
        self.hang_seconds = hang_seconds
        if isinstance(exchange_info, dict):
            self.exchange_info = exchange_info
        else:
            self.exchange_info = json.loads(exchange_info.read_text())
        if not any(s["symbol"] == "BNBUSDT" for s in self.exchange_info["symbols"]):
            symbols = [*self.exchange_info["symbols"], _bnb_usdt()]
            self.exchange_info = {**self.exchange_info, "symbols": symbols}  # theirs untouched
        # Binance's limits unless the snapshot has its own or ``rate_limits`` replaces them
        # (``[]``: no limits, only the usage headers).
        if rate_limits is not None or not self.exchange_info.get("rateLimits"):
            limits = DEFAULT_RATE_LIMITS if rate_limits is None else rate_limits
            self.exchange_info = {**self.exchange_info, "rateLimits": [dict(r) for r in limits]}
        self._limiters: list[_Limiter] = []
        for r in self.exchange_info["rateLimits"]:
            if r["interval"] not in INTERVAL_UNIT_MS:
                raise ValueError(f"unknown rate limit interval {r['interval']!r}")
            self._limiters.append(
                _Limiter(r["rateLimitType"], r["interval"], int(r["intervalNum"]), int(r["limit"]))
            )
        # The headers Binance always sends, counted even when no limit of theirs is configured.
        self._weight_1m = next(
            (x for x in self._limiters if x.kind == "REQUEST_WEIGHT" and x.ms == 60_000), None
        ) or self._add_limiter("REQUEST_WEIGHT", "MINUTE", 1)
        if not any(x.kind == "ORDERS" for x in self._limiters):
            self._add_limiter("ORDERS", "SECOND", 10)
            self._add_limiter("ORDERS", "DAY", 1)
        self._sapi_weight = _Limiter("REQUEST_WEIGHT", "MINUTE", 1, None)  # /sapi has its own
        self.weight_total = 0  # every weight ever charged, /sapi included
        self.weight_by_endpoint: Counter[str] = Counter()  # "GET /api/v3/order" -> its total
        # Past the weight limit a request gets 429; more than ``ban_after`` of those in one
        # window and the IP is banned (418 to everything) for ``ban_seconds``.
        self.ban_seconds = ban_seconds
        self.ban_after = ban_after
        self.banned_until: int | None = None  # epoch ms (the fake's clock) the ban lifts at
        self._strikes = 0
        self._strikes_until = 0
        self._order_headers_at_placement: dict[str, str] | None = None
        # GET /sapi/v1/system/status says "system_maintenance" while this is on.
        self.maintenance = False
        # The key's permissions (GET /sapi/v1/account/apiRestrictions); change them any time.
        self.api_restrictions = {**DEFAULT_API_RESTRICTIONS, **(api_restrictions or {})}
        # The spot testnet: the same REST API under /api/v3, and no /sapi at all.
        self.testnet = testnet
        self.symbols: dict[str, _Symbol] = {}
        for info in self.exchange_info["symbols"]:
            filters = {f["filterType"]: f for f in info["filters"]}
            self.symbols[info["symbol"]] = _Symbol(
                info, info["baseAsset"], info["quoteAsset"], filters
            )
        self.lock = threading.RLock()
        self.balances: dict[str, list[Decimal]] = {}  # asset -> [free, locked]
        for sym in self.symbols.values():
            self.balances.setdefault(sym.base, [Decimal(0), Decimal(0)])
            self.balances.setdefault(sym.quote, [Decimal(0), Decimal(0)])
        for asset, amount in (balances if balances is not None else {"USDT": "10000"}).items():
            self.set_balance(asset, amount)
        self.prices: dict[str, Decimal] = {s: Decimal(p) for s, p in (prices or {}).items()}
        self.candles: dict[tuple[str, str], list[list[Any]]] = {}
        self.order_list: list[Order] = []
        self.trades: list[Trade] = []
        self.requests: list[RecordedRequest] = []
        self._next_order_id = 1001
        self._next_trade_id = 5001
        self._failures: dict[str, list[_Failure]] = {}
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeBinance:
        self._release.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # quick shutdown between tests
            name="fake-binance",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # wake hung handlers so they exit
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    def ccxt_client(
        self,
        api_key: str | None = None,
        secret: str | None = None,
        *,
        timeout_ms: int = 3000,
        testnet: FakeBinance | None = None,
    ) -> ccxt.binance:
        """A real ``ccxt.binance`` pointed at this fake, with spot-only options. Its sandbox
        URLs (``set_sandbox_mode(True)``, the spot testnet) point at ``testnet``, else here too:
        never at the real testnet."""
        client = ccxt.binance(
            {
                "apiKey": self.api_key if api_key is None else api_key,
                "secret": self.secret if secret is None else secret,
                "timeout": timeout_ms,
                "enableRateLimit": False,
                "options": {
                    "defaultType": "spot",
                    # otherwise it also calls the futures exchangeInfo endpoints
                    "fetchMarkets": {"types": ["spot"]},
                    # otherwise, with API keys, it calls /sapi capital config and margin pairs
                    "fetchCurrencies": False,
                    "fetchMargins": False,
                    "adjustForTimeDifference": False,
                },
            }
        )
        client.urls["api"]["public"] = self.base_url
        client.urls["api"]["private"] = self.base_url
        client.urls["api"]["sapi"] = f"http://127.0.0.1:{self.port}/sapi/v1"  # fetch_status
        sandbox = testnet or self
        # Every one of ccxt's test URLs (the futures ones too): nothing reaches the real testnet.
        client.urls["test"] = dict.fromkeys(client.urls["test"], sandbox.base_url)
        client.urls["test"]["v1"] = f"http://127.0.0.1:{sandbox.port}/api/v1"
        return client

    # ------------------------------------------------------------------ test controls

    def now_ms(self) -> int:
        """The fake's time in epoch milliseconds: ``clock()`` (real time by default) plus
        ``clock_skew_ms``."""
        return self.clock() + self.clock_skew_ms

    def used_weight(self) -> int:
        """The IP's request weight used this minute (``X-MBX-USED-WEIGHT-1M``)."""
        with self.lock:
            return self._weight_1m.used(self.now_ms())

    def usage(self) -> dict[str, int]:
        """What the usage headers would say now: ``{"X-MBX-USED-WEIGHT-1M": 26,
        "X-MBX-ORDER-COUNT-10S": 1, "X-MBX-ORDER-COUNT-1D": 1}``."""
        with self.lock:
            now = self.now_ms()
            return {x.header: x.used(now) for x in self._limiters if x.kind != "RAW_REQUESTS"}

    def halt(self, symbol: str, status: str = "HALT") -> None:
        """Trading on ``symbol`` stops (``"HALT"`` or ``"BREAK"`` in exchangeInfo): new orders
        are refused with "Market is closed."; cancels and lookups still work."""
        with self.lock:
            sym = self.symbols[symbol]
            sym.info = {**sym.info, "status": status}  # a copy: the caller's dict stays as is

    def resume(self, symbol: str) -> None:
        """Trading on ``symbol`` starts again (``"TRADING"``)."""
        self.halt(symbol, "TRADING")

    def list_symbol(
        self, symbol: str, base: str, quote: str, *, status: str = "TRADING", **filters: Any
    ) -> None:
        """The exchange lists one more spot market (in exchangeInfo from now on), shaped like
        BTCUSDT; ``filters`` change its filters' fields, e.g. ``PRICE_FILTER={"tickSize":
        "0.00100000"}``. ``status`` as Binance says it: ``TRADING``, ``BREAK``, ``HALT``."""
        info = symbol_like(symbol, base, quote, status=status, **filters)
        with self.lock:
            self.symbols[symbol] = _Symbol(
                info, base, quote, {f["filterType"]: f for f in info["filters"]}
            )
            for asset in (base, quote):
                self.balances.setdefault(asset, [Decimal(0), Decimal(0)])

    def set_balance(self, asset: str, free: str | Decimal, locked: str | Decimal = "0") -> None:
        with self.lock:
            self.balances[asset] = [Decimal(free), Decimal(locked)]

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        """``(free, locked)`` of one asset."""
        with self.lock:
            free, locked = self.balances.get(asset, [Decimal(0), Decimal(0)])
            return free, locked

    def set_candles(self, symbol: str, rows: Iterable[Sequence[Any]], interval: str = "1m") -> None:
        """Candles for ``/klines``: rows of ``(open_time_ms, open, high, low, close, volume)``."""
        step = INTERVAL_MS[interval]
        klines = []
        for open_ms, o, h, low, c, v in rows:
            o, h, low, c, v = (Decimal(str(x)) for x in (o, h, low, c, v))
            klines.append(
                [
                    int(open_ms),
                    fmt(o),
                    fmt(h),
                    fmt(low),
                    fmt(c),
                    fmt(v),
                    int(open_ms) + step - 1,
                    fmt(v * c),
                    100,
                    fmt(v / 2),
                    fmt(v * c / 2),
                    "0",
                ]
            )
        with self.lock:
            self.candles[(symbol, interval)] = sorted(klines, key=lambda k: k[0])

    def set_price(self, symbol: str, price: str | Decimal) -> list[Trade]:
        """Move the market: resting orders the price crosses fill (what is left of them) at
        their own price."""
        with self.lock:
            p = Decimal(price)
            self.prices[symbol] = p
            fills = []
            for order in self.open_orders(symbol):
                if (order.side == "BUY" and order.price >= p) or (
                    order.side == "SELL" and order.price <= p
                ):
                    fills.append(self._fill(order, order.price, maker=True))
            return fills

    def walk(self, symbol: str, prices: Iterable[str | Decimal]) -> list[Trade]:
        """``set_price`` for each price in turn; returns every trade made on the way."""
        return [t for p in prices for t in self.set_price(symbol, p)]

    def fill_part(
        self, client_id: str, qty: str | Decimal, price: str | Decimal | None = None
    ) -> Trade:
        """One maker trade of ``qty`` against the open order ``client_id``, at its limit price or
        at ``price`` (no worse than the limit): PARTIALLY_FILLED, or FILLED once all is done.
        """
        with self.lock:
            order = self._open_by_client_id(client_id)
            q = Decimal(qty)
            left = order.qty - order.executed
            if not 0 < q <= left:
                raise ValueError(f"{client_id!r} has {left} left to fill, not {q}")
            p = order.price if price is None else Decimal(price)
            if (
                p <= 0
                or (order.side == "BUY" and p > order.price)
                or (order.side == "SELL" and p < order.price)
            ):
                raise ValueError(f"{client_id!r} cannot fill at {p}, worse than {order.price}")
            return self._fill(order, p, maker=True, qty=q)

    def user_cancel(self, client_id: str) -> Order:
        """The trader cancels an open order in Binance's app, not through this API: CANCELED,
        funds back, what it filled kept. The bot only learns of it from a lookup."""
        with self.lock:
            return self._close(self._open_by_client_id(client_id), "CANCELED")

    def expire(self, client_id: str, status: str = "EXPIRED") -> Order:
        """The exchange ends an open order itself: ``"EXPIRED"`` (e.g. maintenance) or
        ``"EXPIRED_IN_MATCH"`` (self-trade prevention). Funds back, fills kept."""
        if status not in ("EXPIRED", "EXPIRED_IN_MATCH"):
            raise ValueError(f"an order expires as EXPIRED or EXPIRED_IN_MATCH, not {status!r}")
        with self.lock:
            return self._close(self._open_by_client_id(client_id), status)

    def fail_next(
        self,
        path: str,
        status: Failure | None = None,
        *,
        code: int | None = None,
        msg: str | None = None,
        method: str | None = None,
        times: int = 1,
        client_id: str | None = None,
    ) -> None:
        """Make the next call(s) to ``path`` fail before anything happens.

        ``status`` is an HTTP status (plain-text body unless ``code``/``msg`` give a Binance
        error JSON, then 400 by default), ``"timeout"`` (hang longer than the client waits,
        then close) or ``"drop"`` (close the connection without answering). ``/order``
        serves GET, POST and DELETE: pass ``method`` to aim at one of them, and ``client_id``
        to aim at the request whose ``newClientOrderId`` or ``origClientOrderId`` is that
        (others pass, the failure waits).
        """
        if status is None:
            status = 503 if code is None else 400
        body = None if code is None else {"code": code, "msg": msg or ""}
        for _ in range(times):
            self._failures.setdefault(_norm(path), []).append(
                _Failure(method and method.upper(), status, body, client_id=client_id)
            )

    def accept_then_fail_response(
        self,
        path: str = "/order",
        status: Failure = 500,
        *,
        method: str | None = "POST",
        client_id: str | None = None,
    ) -> None:
        """The next call is carried out (the order rests on the book) but the answer is lost:
        a 5xx, a dropped connection or a hang. "The exchange accepted; we never heard back."
        ``client_id`` aims it at one order's request, as in ``fail_next``.
        """
        self._failures.setdefault(_norm(path), []).append(
            _Failure(
                method and method.upper(), status, None, after_processing=True, client_id=client_id
            )
        )

    def orders(self, symbol: str | None = None, status: str | None = None) -> list[Order]:
        with self.lock:
            return [
                o
                for o in self.order_list
                if (symbol is None or o.symbol == symbol) and (status is None or o.status == status)
            ]

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Orders still on the book: NEW and PARTIALLY_FILLED alike."""
        with self.lock:
            return [o for o in self.order_list if o.is_open and symbol in (None, o.symbol)]

    def calls(self, method: str, path: str) -> int:
        """How many requests hit ``method path`` (path with or without ``/api/v3``)."""
        wanted = _full(_norm(path))
        return sum(1 for r in self.requests if r.method == method.upper() and r.path == wanted)

    # ------------------------------------------------------------------ HTTP plumbing

    def _add_limiter(self, kind: str, interval: str, num: int) -> _Limiter:
        limiter = _Limiter(kind, interval, num, None)
        self._limiters.append(limiter)
        return limiter

    def _take_failure(self, method: str, path: str, params: dict[str, str]) -> _Failure | None:
        with self.lock:
            queue = self._failures.get(path, [])
            for i, failure in enumerate(queue):
                if failure.aims_at(method, params):
                    return queue.pop(i)
        return None

    def handle(self, method: str, raw_path: str, body: str, headers: dict[str, str]) -> _Reply:
        """Route one request; returns the reply (status, JSON) or a failure to act out."""
        split = urlsplit(raw_path)
        path = split.path
        query = split.query
        params = dict(parse_qsl(body, keep_blank_values=True))
        params.update(parse_qsl(query, keep_blank_values=True))  # the query string wins
        record_index = self._record(method, path, params)
        short = _norm(path)
        failure = self._take_failure(method, short, params)
        if failure is not None and not failure.after_processing:
            # Injected trouble never reached Binance: no weight, no limits, no ban.
            return _Reply(
                record_index, failure.how, failure.body, failed=True, headers=self._usage(short)
            )
        order_headers: dict[str, str] = {}
        try:
            with self.lock:
                self._admit(method, short, params)
            if not path.startswith(API_PREFIX + "/") and (path not in SAPI or self.testnet):
                raise BinanceError(-1000, "Unknown path.", status=404)
            if short in SIGNED:
                self._authenticate(query, body, params, headers)
            with self.lock:
                if (method, short) != ("POST", "/order"):
                    payload = self._dispatch(method, short, params)
                else:
                    self._order_headers_at_placement = None
                    try:
                        self._check_order_rate()
                        payload = self._dispatch(method, short, params)
                    finally:
                        order_headers = self._order_headers_at_placement or self._order_usage()
            reply = _Reply(record_index, 200, payload)
        except BinanceError as e:
            reply = _Reply(record_index, e.status, {"code": e.code, "msg": e.msg})
            if e.retry_after is not None:
                reply.headers["Retry-After"] = str(e.retry_after)
        reply.headers.update(self._usage(short))
        reply.headers.update(order_headers)
        if failure is not None:
            return _Reply(record_index, failure.how, None, failed=True, headers=reply.headers)
        return reply

    def _admit(self, method: str, path: str, p: dict[str, str]) -> None:
        """Charge the request's weight; refuse it while the IP is banned (418) or past a
        request limit (429, then 418 when it does not back off)."""
        now = self.now_ms()
        if self.banned_until is not None:
            if now < self.banned_until:
                raise self._ban(now)
            self.banned_until = None
            self._strikes = 0
        rule = WEIGHTS.get((method, path), 1)
        weight = rule if isinstance(rule, int) else rule(p)
        self.weight_total += weight
        self.weight_by_endpoint[f"{method} {_full(path)}"] += weight
        if path in SAPI:
            self._sapi_weight.add(now, weight)
            return
        over = []
        for limiter in self._limiters:
            if limiter.kind == "ORDERS":
                continue
            limiter.add(now, weight if limiter.kind == "REQUEST_WEIGHT" else 1)
            if limiter.over(now):
                over.append(limiter)
        if not over:
            return
        if now >= self._strikes_until:
            self._strikes = 0
        if self._strikes >= self.ban_after:
            self.banned_until = now + self.ban_seconds * 1000
            raise self._ban(now)
        self._strikes += 1
        self._strikes_until = max(x.frees_at(now) for x in over)
        first = over[0]
        if first.kind == "REQUEST_WEIGHT":
            msg = (
                f"Too much request weight used; current limit is {first.limit} request weight "
                f"per {first.num} {first.interval}. Please use WebSocket Streams for live "
                "updates to avoid polling the API."
            )
        else:
            msg = (
                f"Too many requests; current limit of IP(127.0.0.1) is {first.limit} requests "
                f"per {first.num} {first.interval}. Please use WebSocket Streams for live "
                "updates to avoid polling the API."
            )
        raise BinanceError(-1003, msg, 429, _seconds(self._strikes_until - now))

    def _ban(self, now: int) -> BinanceError:
        assert self.banned_until is not None
        return BinanceError(
            -1003,
            f"Way too much request weight used; IP banned until {self.banned_until}. "
            "Please use WebSocket Streams for live updates to avoid bans.",
            418,
            _seconds(self.banned_until - now),
        )

    def _check_order_rate(self) -> None:
        now = self.now_ms()
        for x in self._limiters:
            if x.kind == "ORDERS" and x.limit is not None and x.used(now) >= x.limit:
                per = ORDER_INTERVAL_NAMES.get((x.num, x.interval), f"{x.num} {x.interval}")
                raise BinanceError(
                    -1015, f"Too many new orders; current limit is {x.limit} orders per {per}.", 429
                )

    def _count_order(self, n: int) -> None:
        """A placed order counts +1; its first fill takes it off again (-1), in the windows
        current then: Binance's unfilled order count."""
        now = self.now_ms()
        for x in self._limiters:
            if x.kind == "ORDERS":
                x.add(now, n)

    def _order_usage(self) -> dict[str, str]:
        now = self.now_ms()
        return {x.header: str(x.used(now)) for x in self._limiters if x.kind == "ORDERS"}

    def _usage(self, path: str) -> dict[str, str]:
        with self.lock:
            now = self.now_ms()
            if path in SAPI:
                return {"X-SAPI-USED-IP-WEIGHT-1M": str(self._sapi_weight.used(now))}
            return {
                x.header: str(x.used(now)) for x in self._limiters if x.kind == "REQUEST_WEIGHT"
            }

    def _record(self, method: str, path: str, params: dict[str, str]) -> int:
        with self.lock:
            shown = {k: v for k, v in params.items() if k != "signature"}
            self.requests.append(RecordedRequest(method, path, shown))
            return len(self.requests) - 1

    def _answered(self, index: int, status: int) -> None:
        with self.lock:
            r = self.requests[index]
            self.requests[index] = RecordedRequest(r.method, r.path, r.params, status)

    def _authenticate(
        self, query: str, body: str, params: dict[str, str], headers: dict[str, str]
    ) -> None:
        key = headers.get("x-mbx-apikey")
        if not key:
            raise BinanceError(-2014, "API-key format invalid.", status=401)
        if key != self.api_key:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        # Binance signs totalParams = query string + request body, signature removed.
        total = _without_signature(query) + _without_signature(body)
        expected = hmac.new(self.secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, params.get("signature", "").lower()):
            raise BinanceError(-1022, "Signature for this request is not valid.")
        try:
            timestamp = int(params["timestamp"])
        except (KeyError, ValueError):
            raise mandatory("timestamp") from None
        recv_window = int(params.get("recvWindow", "5000"))
        # The wall clock ccxt signs with, even when ``clock`` is simulated, and the server's skew.
        now = _now_ms() + self.clock_skew_ms
        if timestamp > now + 1000:
            raise BinanceError(
                -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now - timestamp > recv_window:
            raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")

    def _dispatch(self, method: str, path: str, p: dict[str, str]) -> Any:
        routes: dict[tuple[str, str], Callable[[dict[str, str]], Any]] = {
            ("GET", "/ping"): lambda p: {},
            ("GET", "/time"): lambda p: {"serverTime": self.now_ms()},
            ("GET", "/exchangeInfo"): self._exchange_info,
            ("GET", "/ticker/price"): self._ticker_price,
            ("GET", "/ticker/24hr"): self._ticker_24hr,
            ("GET", "/klines"): self._klines,
            ("GET", "/depth"): self._depth,
            ("POST", "/order"): self._new_order,
            ("GET", "/order"): self._query_order,
            ("DELETE", "/order"): self._cancel_order,
            ("GET", "/openOrders"): self._open_orders,
            ("DELETE", "/openOrders"): self._cancel_open_orders,
            ("GET", "/allOrders"): self._all_orders,
            ("GET", "/myTrades"): self._my_trades,
            ("GET", "/account"): self._account,
            ("GET", "/account/commission"): self._account_commission,
            ("GET", SYSTEM_STATUS): lambda p: (
                {"status": 1, "msg": "system_maintenance"}
                if self.maintenance
                else {"status": 0, "msg": "normal"}
            ),
            ("GET", API_RESTRICTIONS): lambda p: dict(self.api_restrictions),
        }
        route = routes.get((method, path))
        if route is None:
            raise BinanceError(-1000, f"Unknown endpoint {method} {path}.", status=404)
        return route(p)

    # ------------------------------------------------------------------ public endpoints

    def _symbol(self, p: dict[str, str], required: bool = True) -> _Symbol | None:
        name = p.get("symbol")
        if not name:
            if required:
                raise mandatory("symbol")
            return None
        if name not in self.symbols:
            raise BinanceError(-1121, "Invalid symbol.")
        return self.symbols[name]

    def _exchange_info(self, p: dict[str, str]) -> dict[str, Any]:
        wanted: list[str] | None = None
        if "symbol" in p:
            wanted = [p["symbol"]]
        elif "symbols" in p:
            wanted = json.loads(p["symbols"])
        symbols = [s.info for name, s in self.symbols.items() if wanted is None or name in wanted]
        if wanted is not None and len(symbols) != len(wanted):
            raise BinanceError(-1121, "Invalid symbol.")
        return {**self.exchange_info, "serverTime": self.now_ms(), "symbols": symbols}

    def _price_of(self, symbol: str) -> Decimal:
        if symbol not in self.prices:
            raise BinanceError(-1121, "Invalid symbol.")  # a fake with no price for it yet
        return self.prices[symbol]

    def _ticker_price(self, p: dict[str, str]) -> Any:
        sym = self._symbol(p, required=False)
        if sym is not None:
            name = sym.info["symbol"]
            return {"symbol": name, "price": fmt(self._price_of(name))}
        return [{"symbol": s, "price": fmt(price)} for s, price in self.prices.items()]

    def _ticker_24hr(self, p: dict[str, str]) -> Any:
        def one(name: str) -> dict[str, Any]:
            price = fmt(self._price_of(name))
            now = self.now_ms()
            return {
                "symbol": name,
                "priceChange": fmt(Decimal(0)),
                "priceChangePercent": "0.000",
                "weightedAvgPrice": price,
                "prevClosePrice": price,
                "lastPrice": price,
                "lastQty": fmt(Decimal(0)),
                "bidPrice": price,
                "bidQty": fmt(Decimal(1)),
                "askPrice": price,
                "askQty": fmt(Decimal(1)),
                "openPrice": price,
                "highPrice": price,
                "lowPrice": price,
                "volume": fmt(Decimal(0)),
                "quoteVolume": fmt(Decimal(0)),
                "openTime": now - DAY_MS,
                "closeTime": now,
                "firstId": -1,
                "lastId": -1,
                "count": 0,
            }

        sym = self._symbol(p, required=False)
        if sym is not None:
            return one(sym.info["symbol"])
        return [one(s) for s in self.prices]

    def _depth(self, p: dict[str, str]) -> dict[str, Any]:
        sym = self._symbol(p)
        assert sym is not None
        price = self._price_of(sym.info["symbol"])
        tick = Decimal(sym.filters["PRICE_FILTER"]["tickSize"])
        return {
            "lastUpdateId": self._next_trade_id,
            "bids": [[fmt(price - tick), fmt(Decimal(1))]],
            "asks": [[fmt(price + tick), fmt(Decimal(1))]],
        }

    def _klines(self, p: dict[str, str]) -> list[list[Any]]:
        sym = self._symbol(p)
        assert sym is not None
        interval = p.get("interval")
        if not interval:
            raise mandatory("interval")
        if interval not in INTERVAL_MS:
            raise BinanceError(-1120, "Invalid interval.")
        rows = self.candles.get((sym.info["symbol"], interval), [])
        limit = _limit(p, default=500, maximum=1000)
        if "startTime" in p:
            rows = [r for r in rows if r[0] >= int(p["startTime"])]
        if "endTime" in p:
            rows = [r for r in rows if r[0] <= int(p["endTime"])]
        return rows[:limit] if "startTime" in p else rows[-limit:]

    # ------------------------------------------------------------------ trading

    def _new_order(self, p: dict[str, str]) -> dict[str, Any]:
        sym = self._symbol(p)
        assert sym is not None
        side = p.get("side", "")
        if side not in ("BUY", "SELL"):
            raise mandatory("side")
        type_ = p.get("type", "")
        if type_ not in ("LIMIT", "LIMIT_MAKER", "MARKET"):
            raise BinanceError(-1116, "Invalid orderType.")
        if sym.info.get("status", "TRADING") != "TRADING":
            # What Binance answers on a HALT or BREAK symbol (as ccxt records it).
            raise BinanceError(-1013, "Market is closed.")
        client_id = p.get("newClientOrderId") or "fake" + secrets.token_hex(9)
        if not CLIENT_ID_RE.match(client_id):
            raise BinanceError(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; "
                "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
            )
        # Binance only refuses a client order id that an *open* order already carries.
        if any(o.client_id == client_id for o in self.open_orders()):
            raise BinanceError(-2010, "Duplicate order sent.")
        symbol = sym.info["symbol"]
        qty = _decimal(p, "quantity")
        if type_ in ("LIMIT", "LIMIT_MAKER"):
            if type_ == "LIMIT" and p.get("timeInForce") != "GTC":
                raise mandatory("timeInForce")
            if type_ == "LIMIT_MAKER" and "timeInForce" in p:
                raise BinanceError(-1106, "Parameter 'timeInForce' sent when not required.")
            price = _decimal(p, "price")
            self._check_filters(sym, price, qty, market=False, side=side)
            current = self.prices.get(symbol)
            marketable = current is not None and (
                (side == "BUY" and price >= current) or (side == "SELL" and price <= current)
            )
            if marketable and type_ == "LIMIT_MAKER":
                raise BinanceError(-2010, "Order would immediately match and take.")
        else:
            if "price" in p:
                raise BinanceError(-1106, "Parameter 'price' sent when not required.")
            if symbol not in self.prices:
                raise BinanceError(
                    -2010, "Order book liquidity is less than symbol minimum quantity."
                )
            price = Decimal(0)
            self._check_filters(sym, self.prices[symbol], qty, market=True)
            marketable = True
        now = self.now_ms()
        order = Order(symbol, self._next_order_id, client_id, side, type_, price, qty, now)
        order.time_in_force = "" if type_ == "MARKET" else "GTC"
        rate = self.commission["taker" if marketable else "maker"]
        order.locked = self._lock_funds(sym, side, price or self.prices[symbol], qty, rate)
        self._next_order_id += 1
        self.order_list.append(order)
        self._count_order(+1)
        # The answer shows the count as placed: the decrement of an instant fill comes later.
        self._order_headers_at_placement = self._order_usage()
        fills = []
        if marketable:
            fills.append(self._fill(order, self.prices[symbol], maker=False))
        return self._order_response(order, fills, p.get("newOrderRespType", "FULL"), now)

    def _order_response(
        self, order: Order, fills: list[Trade], resp_type: str, now: int
    ) -> dict[str, Any]:
        ack = {
            "symbol": order.symbol,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_id,
            "transactTime": now,
        }
        if resp_type == "ACK":
            return ack
        result = {
            **ack,
            "price": fmt(order.price),
            "origQty": fmt(order.qty),
            "executedQty": fmt(order.executed),
            "origQuoteOrderQty": fmt(Decimal(0)),
            "cummulativeQuoteQty": fmt(order.quote),
            "status": order.status,
            "timeInForce": order.time_in_force or "GTC",
            "type": order.type,
            "side": order.side,
            "workingTime": now,
            "selfTradePreventionMode": "NONE",
        }
        if resp_type == "RESULT":
            return result
        result["fills"] = [
            {
                "price": fmt(t.price),
                "qty": fmt(t.qty),
                "commission": fmt(t.commission),
                "commissionAsset": t.commission_asset,
                "tradeId": t.trade_id,
            }
            for t in fills
        ]
        return result

    def _check_filters(
        self, sym: _Symbol, price: Decimal, qty: Decimal, *, market: bool, side: str = ""
    ) -> None:
        f = sym.filters
        if not market and "PRICE_FILTER" in f:
            pf = f["PRICE_FILTER"]
            low, high, tick = (Decimal(pf[k]) for k in ("minPrice", "maxPrice", "tickSize"))
            if (
                (low and price < low)
                or (high and price > high)
                or (tick and (price - low) % tick != 0)
            ):
                raise BinanceError(-1013, "Filter failure: PRICE_FILTER")
        # The last price stands in for the weighted average over ``avgPriceMins``.
        average = self.prices.get(sym.info["symbol"])
        if not market and average and "PERCENT_PRICE_BY_SIDE" in f:
            pf = f["PERCENT_PRICE_BY_SIDE"]
            way = "bid" if side == "BUY" else "ask"
            up, down = Decimal(pf[way + "MultiplierUp"]), Decimal(pf[way + "MultiplierDown"])
            if price > average * up or price < average * down:
                raise BinanceError(-1013, "Filter failure: PERCENT_PRICE_BY_SIDE")
        if not market and average and "PERCENT_PRICE" in f:
            pf = f["PERCENT_PRICE"]
            up, down = Decimal(pf["multiplierUp"]), Decimal(pf["multiplierDown"])
            if price > average * up or price < average * down:
                raise BinanceError(-1013, "Filter failure: PERCENT_PRICE")
        if price <= 0 or qty <= 0:
            raise BinanceError(-1013, "Price * QTY is zero or less.")
        lots = ["LOT_SIZE", "MARKET_LOT_SIZE"] if market else ["LOT_SIZE"]
        for name in lots:
            if name not in f:
                continue
            low, high, step = (Decimal(f[name][k]) for k in ("minQty", "maxQty", "stepSize"))
            if (low and qty < low) or (high and qty > high) or (step and (qty - low) % step != 0):
                raise BinanceError(-1013, f"Filter failure: {name}")
        notional = price * qty
        if "NOTIONAL" in f:
            nf = f["NOTIONAL"]
            if (not market or nf.get("applyMinToMarket", True)) and notional < Decimal(
                nf["minNotional"]
            ):
                raise BinanceError(-1013, "Filter failure: NOTIONAL")
            if (not market or nf.get("applyMaxToMarket", False)) and notional > Decimal(
                nf["maxNotional"]
            ):
                raise BinanceError(-1013, "Filter failure: NOTIONAL")
        if "MIN_NOTIONAL" in f:
            mf = f["MIN_NOTIONAL"]
            if (not market or mf.get("applyToMarket", True)) and notional < Decimal(
                mf["minNotional"]
            ):
                raise BinanceError(-1013, "Filter failure: MIN_NOTIONAL")
        max_orders = f.get("MAX_NUM_ORDERS", {}).get("maxNumOrders")
        if not market and max_orders and len(self.open_orders(sym.info["symbol"])) >= max_orders:
            raise BinanceError(-1013, "Filter failure: MAX_NUM_ORDERS")

    def _lock_funds(
        self, sym: _Symbol, side: str, price: Decimal, qty: Decimal, rate: Decimal
    ) -> Decimal:
        asset = sym.quote if side == "BUY" else sym.base
        need = price * qty * (1 + rate) if side == "BUY" else qty
        balance = self.balances.setdefault(asset, [Decimal(0), Decimal(0)])
        if balance[0] < need:
            raise BinanceError(-2010, "Account has insufficient balance for requested action.")
        balance[0] -= need
        balance[1] += need
        return need

    def _release_funds(self, order: Order, qty: Decimal | None = None) -> None:
        """Give back the lock of ``qty`` of what is left to fill (all of it by default): pro
        rata, so the last fill releases exactly what remains."""
        sym = self.symbols[order.symbol]
        asset = sym.quote if order.side == "BUY" else sym.base
        left = order.qty - order.executed
        part = order.locked if qty is None or qty >= left else order.locked * qty / left
        balance = self.balances[asset]
        balance[1] -= part
        balance[0] += part
        order.locked -= part

    def _commission(
        self, sym: _Symbol, side: str, price: Decimal, qty: Decimal, *, maker: bool
    ) -> tuple[Decimal, str]:
        """``(commission, asset)`` of one trade: in BNB at a discount when on and covered, else
        in the base asset a buyer receives (``buyer_pays_base``), else in the quote asset."""
        rate = self.commission["maker" if maker else "taker"]
        notional = price * qty
        if self.bnb_fees:
            bnb_price = Decimal(1) if sym.quote == "BNB" else self.prices.get("BNB" + sym.quote)
            if bnb_price:
                fee = (notional * rate * BNB_DISCOUNT / bnb_price).quantize(
                    EIGHT, rounding=ROUND_HALF_UP
                )
                if self.balances.get("BNB", [Decimal(0)])[0] >= fee:
                    return fee, "BNB"
        if side == "BUY" and self.buyer_pays_base:
            return (qty * rate).quantize(EIGHT, rounding=ROUND_HALF_UP), sym.base
        return (notional * rate).quantize(EIGHT, rounding=ROUND_HALF_UP), sym.quote

    def _fill(
        self, order: Order, price: Decimal, *, maker: bool, qty: Decimal | None = None
    ) -> Trade:
        """One trade of ``qty`` (all that is left by default) at ``price``."""
        now = self.now_ms()
        if order.executed == 0:
            self._count_order(-1)  # a filled order is no longer an unfilled one
        qty = order.qty - order.executed if qty is None else qty
        self._release_funds(order, qty)
        sym = self.symbols[order.symbol]
        base, quote = self.balances[sym.base], self.balances[sym.quote]
        notional = price * qty
        if order.side == "BUY":
            base[0] += qty
            quote[0] -= notional
        else:
            base[0] -= qty
            quote[0] += notional
        # After the trade moved the coins, so a BNB trade's own BNB may pay its fee.
        commission, commission_asset = self._commission(sym, order.side, price, qty, maker=maker)
        self.balances.setdefault(commission_asset, [Decimal(0), Decimal(0)])[0] -= commission
        order.executed += qty
        order.quote += notional
        order.status = "FILLED" if order.executed >= order.qty else "PARTIALLY_FILLED"
        order.update_time = now
        trade = Trade(
            order.symbol,
            self._next_trade_id,
            order.order_id,
            price,
            qty,
            commission,
            commission_asset,
            now,
            is_buyer=order.side == "BUY",
            is_maker=maker,
        )
        self._next_trade_id += 1
        self.trades.append(trade)
        return trade

    def _open_by_client_id(self, client_id: str) -> Order:
        """Binance refuses a second open order with a client id, so there is at most one."""
        for order in self.open_orders():
            if order.client_id == client_id:
                return order
        raise LookupError(f"no open order with client id {client_id!r}")

    def _find_order(self, p: dict[str, str], *, not_found: BinanceError) -> Order:
        sym = self._symbol(p)
        assert sym is not None
        symbol = sym.info["symbol"]
        if "orderId" in p:
            matches = [o for o in self.orders(symbol) if str(o.order_id) == p["orderId"]]
        elif "origClientOrderId" in p:
            matches = [o for o in self.orders(symbol) if o.client_id == p["origClientOrderId"]]
        else:
            raise BinanceError(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        now = self.now_ms()
        matches = [o for o in matches if now - o.time >= self.not_found_ms]
        if not matches:
            raise not_found
        # An open order wins over older closed ones that reused its client order id.
        return next((o for o in matches if o.is_open), matches[-1])

    def _query_order(self, p: dict[str, str]) -> dict[str, Any]:
        return self._find_order(p, not_found=BinanceError(-2013, "Order does not exist.")).as_json()

    def _close(self, order: Order, status: str) -> Order:
        """Take an open order off the book: its lock goes back, what it filled stays."""
        self._release_funds(order)
        order.status = status
        order.update_time = self.now_ms()
        return order

    def _cancel(self, order: Order, p: dict[str, str]) -> dict[str, Any]:
        data = self._close(order, "CANCELED").as_json()
        return {
            "symbol": order.symbol,
            "origClientOrderId": order.client_id,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": p.get("newClientOrderId") or "fake" + secrets.token_hex(9),
            "transactTime": order.update_time,
            **{
                k: data[k]
                for k in (
                    "price",
                    "origQty",
                    "executedQty",
                    "origQuoteOrderQty",
                    "cummulativeQuoteQty",
                    "status",
                    "timeInForce",
                    "type",
                    "side",
                    "selfTradePreventionMode",
                )
            },
        }

    def _cancel_order(self, p: dict[str, str]) -> dict[str, Any]:
        unknown = BinanceError(-2011, "Unknown order sent.")
        order = self._find_order(p, not_found=unknown)
        if not order.is_open:
            raise unknown  # what Binance says for filled, canceled or expired orders
        return self._cancel(order, p)

    def _open_orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        sym = self._symbol(p, required=False)
        symbol = None if sym is None else sym.info["symbol"]
        return [o.as_json() for o in self.open_orders(symbol)]

    def _cancel_open_orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        sym = self._symbol(p)
        assert sym is not None
        open_ = self.open_orders(sym.info["symbol"])
        if not open_:
            raise BinanceError(-2011, "Unknown order sent.")
        return [self._cancel(o, {}) for o in open_]

    def _all_orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        sym = self._symbol(p)
        assert sym is not None
        rows = self.orders(sym.info["symbol"])
        rows = _time_window(rows, p, lambda o: o.time)
        limit = _limit(p, default=500, maximum=1000)
        if "orderId" in p:
            return [o.as_json() for o in rows if o.order_id >= int(p["orderId"])][:limit]
        if "startTime" in p:
            return [o.as_json() for o in rows[:limit]]
        return [o.as_json() for o in rows[-limit:]]

    def _my_trades(self, p: dict[str, str]) -> list[dict[str, Any]]:
        sym = self._symbol(p)
        assert sym is not None
        seen_by = self.now_ms() - self.trade_delay_ms
        rows = [t for t in self.trades if t.symbol == sym.info["symbol"] and t.time <= seen_by]
        if "orderId" in p:
            rows = [t for t in rows if str(t.order_id) == p["orderId"]]
        if "fromId" in p and ("startTime" in p or "endTime" in p):
            raise BinanceError(-1128, "Combination of optional parameters invalid.")
        rows = _time_window(rows, p, lambda t: t.time)
        limit = _limit(p, default=500, maximum=1000)
        if "fromId" in p:
            return [t.as_json() for t in rows if t.trade_id >= int(p["fromId"])][:limit]
        if "startTime" in p:
            return [t.as_json() for t in rows[:limit]]
        return [t.as_json() for t in rows[-limit:]]

    def _account(self, p: dict[str, str]) -> dict[str, Any]:
        omit_zero = p.get("omitZeroBalances") == "true"
        maker, taker = self.commission["maker"], self.commission["taker"]
        return {
            # In basis points, as Binance writes them: 0.001 is 10.
            "makerCommission": int((maker * 10_000).to_integral_value(ROUND_HALF_UP)),
            "takerCommission": int((taker * 10_000).to_integral_value(ROUND_HALF_UP)),
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": self._rates(maker, taker),
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.now_ms(),
            "accountType": "SPOT",
            "balances": [
                {"asset": asset, "free": fmt(free), "locked": fmt(locked)}
                for asset, (free, locked) in sorted(self.balances.items())
                if not (omit_zero and free == 0 and locked == 0)
            ],
            "permissions": ["SPOT"],
            "uid": 354937868,
        }

    def _account_commission(self, p: dict[str, str]) -> dict[str, Any]:
        sym = self._symbol(p)
        assert sym is not None
        zero = self._rates(Decimal(0), Decimal(0))
        return {
            "symbol": sym.info["symbol"],
            "standardCommission": self._rates(self.commission["maker"], self.commission["taker"]),
            "specialCommission": zero,
            "taxCommission": zero,
            "discount": {
                "enabledForAccount": self.bnb_fees,
                "enabledForSymbol": True,
                "discountAsset": "BNB",
                "discount": fmt(BNB_DISCOUNT),
            },
        }

    @staticmethod
    def _rates(maker: Decimal, taker: Decimal) -> dict[str, str]:
        return {
            "maker": fmt(maker),
            "taker": fmt(taker),
            "buyer": fmt(Decimal(0)),
            "seller": fmt(Decimal(0)),
        }


@dataclass
class _Reply:
    index: int
    status: Failure
    payload: Any
    failed: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def _handler_for(fake: FakeBinance) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so a dropped or hung one never poisons
        # a pooled keep-alive connection in the client.
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = fake.handle(self.command, self.path, body, headers)
            if reply.status == "timeout":
                fake._release.wait(fake.hang_seconds)
                self.close_connection = True
                return
            if reply.status == "drop":
                self.close_connection = True
                return
            assert isinstance(reply.status, int)
            if reply.failed and reply.payload is None:
                data = f"{reply.status} Fake failure".encode()
                content_type = "text/plain"
            else:
                data = json.dumps(reply.payload).encode()
                content_type = "application/json;charset=UTF-8"
            fake._answered(reply.index, reply.status)
            self.send_response(reply.status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


def _norm(path: str) -> str:
    """``/api/v3/order`` and ``/order`` (and ``order``) name the same endpoint."""
    path = urlsplit(path).path
    if path.startswith(API_PREFIX):
        path = path[len(API_PREFIX) :]
    return path if path.startswith("/") else "/" + path


def _full(short: str) -> str:
    """``/order`` -> ``/api/v3/order``; the /sapi paths stay as they are."""
    return short if short in SAPI else API_PREFIX + short


def _seconds(ms: int) -> int:
    """``Retry-After``: whole seconds, rounded up."""
    return max(1, math.ceil(ms / 1000))


def _now_ms() -> int:
    return int(time.time() * 1000)


def symbol_like(
    symbol: str, base: str, quote: str, *, status: str = "TRADING", **changes: dict[str, str]
) -> dict[str, Any]:
    """An exchangeInfo symbol shaped like the snapshot's BTCUSDT, with ``changes`` to its
    filters by filter type."""
    info = json.loads(EXCHANGE_INFO.read_text())
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    out = {**btc, "symbol": symbol, "baseAsset": base, "quoteAsset": quote, "status": status}
    out["filters"] = [{**f, **changes.get(f["filterType"], {})} for f in btc["filters"]]
    return out


def _bnb_usdt() -> dict[str, Any]:
    """A BNBUSDT market shaped like the snapshot's BTCUSDT, with BNBUSDT's filters."""
    return symbol_like(
        "BNBUSDT", "BNB", "USDT",
        PRICE_FILTER={"minPrice": "0.01000000", "maxPrice": "100000.00000000"},
        LOT_SIZE={"minQty": "0.00100000", "maxQty": "900000.00000000", "stepSize": "0.00100000"},
        MARKET_LOT_SIZE={"maxQty": "5000.00000000"},
    )  # fmt: skip


def _without_signature(raw: str) -> str:
    return "&".join(part for part in raw.split("&") if part and not part.startswith("signature="))


def _decimal(p: dict[str, str], name: str) -> Decimal:
    try:
        value = Decimal(p[name])
    except (KeyError, ArithmeticError):
        raise mandatory(name) from None
    if not value.is_finite():
        raise mandatory(name)
    return value


def _limit(p: dict[str, str], *, default: int, maximum: int) -> int:
    limit = int(p.get("limit", default))
    if limit <= 0 or limit > maximum:
        raise BinanceError(
            -1100, f"Illegal characters found in parameter 'limit'; legal range is '1-{maximum}'."
        )
    return limit


def _time_window(rows: list[Any], p: dict[str, str], at: Callable[[Any], int]) -> list[Any]:
    """Binance allows at most 24 hours between startTime and endTime."""
    start = int(p["startTime"]) if "startTime" in p else None
    end = int(p["endTime"]) if "endTime" in p else None
    if start is not None and end is not None and end - start > DAY_MS:
        raise BinanceError(-1127, "More than 24 hours between startTime and endTime.")
    if start is not None and end is None:
        end = start + DAY_MS
    if end is not None and start is None:
        start = end - DAY_MS
    if start is None or end is None:
        return rows
    return [r for r in rows if start <= at(r) <= end]
