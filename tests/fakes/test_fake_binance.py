"""The fake exchange, driven by the real ccxt client: if ccxt is happy, the shapes are right."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import ccxt
import pytest

from tests.fakes.fake_binance import EXCHANGE_INFO, FakeBinance

BTC = "BTC/USDT"


@pytest.fixture
def fake(fake_binance: Callable[..., FakeBinance]) -> FakeBinance:
    return fake_binance(
        balances={"USDT": "10000", "BTC": "0.5"}, prices={"BTCUSDT": "100000"}, hang_seconds=2
    )


@pytest.fixture
def client(fake: FakeBinance) -> ccxt.binance:
    client = fake.ccxt_client(timeout_ms=1000)
    client.load_markets()
    return client


def raw_get(fake: FakeBinance, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(fake.base_url + path, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_load_markets_reads_the_real_filters(fake: FakeBinance, client: ccxt.binance) -> None:
    market = client.market(BTC)
    assert market["precision"]["price"] == 0.01
    assert market["precision"]["amount"] == 0.00001
    assert market["limits"]["cost"]["min"] == 5.0
    # Spot only, no sapi, no time sync: the one public call ccxt needed.
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/api/v3/exchangeInfo")]


def test_public_endpoints_speak_binance_types(fake: FakeBinance) -> None:
    assert raw_get(fake, "/ping") == (200, {})
    status, body = raw_get(fake, "/time")
    assert status == 200 and isinstance(body["serverTime"], int)
    status, info = raw_get(fake, "/exchangeInfo?symbol=ETHUSDT")
    assert isinstance(info["serverTime"], int)
    assert [s["symbol"] for s in info["symbols"]] == ["ETHUSDT"]
    assert raw_get(fake, "/ticker/price?symbol=BTCUSDT") == (
        200,
        {"symbol": "BTCUSDT", "price": "100000.00000000"},
    )
    assert raw_get(fake, "/ticker/price?symbol=NOPE") == (
        400,
        {"code": -1121, "msg": "Invalid symbol."},
    )
    status, depth = raw_get(fake, "/depth?symbol=BTCUSDT")
    assert depth["bids"][0][0] == "99999.99000000" and depth["asks"][0][0] == "100000.01000000"


def test_ticker_and_klines_through_ccxt(fake: FakeBinance, client: ccxt.binance) -> None:
    start = 1_749_000_000_000 - 1_749_000_000_000 % 60_000
    rows = [(start + i * 60_000, 100 + i, 101 + i, 99 + i, 100.5 + i, 2) for i in range(10)]
    fake.set_candles("BTCUSDT", rows)

    assert client.fetch_ticker(BTC)["last"] == 100000.0
    candles = client.fetch_ohlcv(BTC, "1m", since=start + 2 * 60_000, limit=3)
    assert [c[0] for c in candles] == [start + i * 60_000 for i in (2, 3, 4)]
    assert candles[0][1:] == [102.0, 103.0, 101.0, 102.5, 2.0]
    assert len(client.fetch_ohlcv(BTC, "1m", limit=4)) == 4  # the latest four
    request = fake.requests[-1]
    assert request.path == "/api/v3/klines" and request.params["interval"] == "1m"
    until = client.fetch_ohlcv(BTC, "1m", since=start, params={"endTime": start + 60_000})
    assert len(until) == 2


def test_limit_order_rests_and_locks_funds(fake: FakeBinance, client: ccxt.binance) -> None:
    order = client.create_order(BTC, "limit", "buy", 0.001, 99000, {"clientOrderId": "g1-b-3"})

    assert order["clientOrderId"] == "g1-b-3"
    assert order["status"] == "open"
    assert (order["price"], order["amount"], order["filled"]) == (99000.0, 0.001, 0.0)
    posted = fake.requests[-1]
    assert posted.params["newClientOrderId"] == "g1-b-3"
    assert posted.params["timeInForce"] == "GTC"
    [resting] = fake.orders("BTCUSDT", "NEW")
    assert isinstance(resting.order_id, int)
    # 99 USDT plus the 0.1 % commission stay locked while it rests.
    assert fake.balance("USDT") == (Decimal("9900.901"), Decimal("99.099"))
    [open_order] = client.fetch_open_orders(BTC)
    assert open_order["id"] == order["id"] and open_order["status"] == "open"


def test_order_response_types(fake: FakeBinance, client: ccxt.binance) -> None:
    ack = client.private_post_order(
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.001",
            "price": "90000",
            "newOrderRespType": "ACK",
        }
    )
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    assert isinstance(ack["orderId"], int) and isinstance(ack["transactTime"], int)
    result = client.private_post_order(
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "MARKET",
            "quantity": "0.001",
            "newOrderRespType": "RESULT",
        }
    )
    assert result["status"] == "FILLED" and "fills" not in result
    assert result["cummulativeQuoteQty"] == "100.00000000"


def test_duplicate_client_id_of_an_open_order_is_refused(
    fake: FakeBinance, client: ccxt.binance
) -> None:
    client.create_order(BTC, "limit", "buy", 0.001, 99000, {"clientOrderId": "dup"})

    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent."):
        client.create_order(BTC, "limit", "buy", 0.001, 99000, {"clientOrderId": "dup"})
    assert fake.requests[-1].status == 400
    assert len(fake.orders()) == 1


def test_a_filled_orders_client_id_may_be_reused_as_on_binance(
    fake: FakeBinance, client: ccxt.binance
) -> None:
    client.create_order(BTC, "limit", "buy", 0.001, 99000, {"clientOrderId": "again"})
    fake.set_price("BTCUSDT", "98000")

    client.create_order(BTC, "limit", "buy", 0.001, 97000, {"clientOrderId": "again"})

    assert [o.status for o in fake.orders()] == ["FILLED", "NEW"]


@pytest.mark.parametrize(
    ("amount", "price", "message"),
    [
        ("0.001", "99000.001", "Filter failure: PRICE_FILTER"),
        ("0.0010001", "99000", "Filter failure: LOT_SIZE"),
        ("10000", "99000", "Filter failure: LOT_SIZE"),
    ],
)
def test_filter_failures_become_invalid_order(
    client: ccxt.binance, amount: str, price: str, message: str
) -> None:
    # Raw endpoint: ccxt's create_order would round these onto the grid first.
    request = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": amount,
        "price": price,
    }
    with pytest.raises(ccxt.InvalidOrder, match=message):
        client.private_post_order(request)


def test_notional_filter_failure(fake: FakeBinance, client: ccxt.binance) -> None:
    # ccxt maps -1013 to BadRequest unless the message names LOT_SIZE or PRICE_FILTER.
    with pytest.raises(ccxt.BadRequest, match='"code": -1013, "msg": "Filter failure: NOTIONAL"'):
        client.create_order(BTC, "limit", "buy", 0.00004, 99000)
    assert fake.orders() == []


def test_insufficient_balance(fake: FakeBinance, client: ccxt.binance) -> None:
    with pytest.raises(ccxt.InsufficientFunds, match="insufficient balance"):
        client.create_order(BTC, "limit", "sell", 0.6, 110000)
    with pytest.raises(ccxt.InsufficientFunds):
        client.create_order(BTC, "limit", "buy", 0.2, 99000)
    assert fake.orders() == []


def test_bad_client_order_id_is_refused(client: ccxt.binance) -> None:
    with pytest.raises(ccxt.BadRequest, match="Illegal characters"):
        client.create_order(BTC, "limit", "buy", 0.001, 99000, {"clientOrderId": "x" * 37})


def test_walk_fills_resting_orders_at_their_own_price(
    fake: FakeBinance, client: ccxt.binance
) -> None:
    buy = client.create_order(BTC, "limit", "buy", 0.001, 99000, {"clientOrderId": "b"})
    sell = client.create_order(BTC, "limit", "sell", 0.002, 101000, {"clientOrderId": "s"})

    trades = fake.walk("BTCUSDT", ["99500", "98999.99", "100500", "101000.01"])

    assert [(t.order_id, t.price) for t in trades] == [
        (int(buy["id"]), Decimal(99000)),
        (int(sell["id"]), Decimal(101000)),
    ]
    assert trades[1].trade_id == trades[0].trade_id + 1
    assert client.fetch_open_orders(BTC) == []
    assert client.fetch_order(buy["id"], BTC)["status"] == "closed"
    # +0.001 BTC -0.002 BTC; USDT: -99 -0.099 +202 -0.202
    assert fake.balance("BTC") == (Decimal("0.499"), Decimal(0))
    assert fake.balance("USDT") == (Decimal("10102.699"), Decimal(0))


def test_my_trades_carry_quote_commission(fake: FakeBinance, client: ccxt.binance) -> None:
    client.create_order(BTC, "limit", "buy", 0.001, 99000)
    client.create_order(BTC, "limit", "buy", 0.002, 98000)
    fake.walk("BTCUSDT", ["99000", "97000"])

    trades = client.fetch_my_trades(BTC)

    assert [(t["price"], t["amount"], t["side"]) for t in trades] == [
        (99000.0, 0.001, "buy"),
        (98000.0, 0.002, "buy"),
    ]
    assert trades[0]["fee"] == {"currency": "USDT", "cost": 0.099}
    assert trades[0]["takerOrMaker"] == "maker"
    raw = trades[1]["info"]
    assert isinstance(raw["id"], int) and isinstance(raw["time"], int)
    assert raw["commission"] == "0.19600000" and raw["quoteQty"] == "196.00000000"
    # fromId and startTime page through them.
    later = client.fetch_my_trades(BTC, params={"fromId": int(trades[1]["id"])})
    assert [t["id"] for t in later] == [trades[1]["id"]]
    assert len(client.fetch_my_trades(BTC, since=trades[0]["timestamp"])) == 2
    assert client.fetch_my_trades(BTC, since=trades[1]["timestamp"] + 1) == []
    with pytest.raises(ccxt.BadRequest, match="-1127"):
        client.fetch_my_trades(BTC, since=0, params={"until": trades[0]["timestamp"]})


def test_marketable_limit_and_market_orders_fill_now(
    fake: FakeBinance, client: ccxt.binance
) -> None:
    taker = client.create_order(BTC, "limit", "buy", 0.001, 100500)
    market = client.create_order(BTC, "market", "sell", 0.003, None, {"clientOrderId": "mkt"})

    assert taker["status"] == "closed" and taker["average"] == 100000.0  # the better price
    assert market["status"] == "closed" and market["filled"] == 0.003
    assert market["clientOrderId"] == "mkt"
    fill = market["info"]["fills"][0]
    assert fill["commissionAsset"] == "USDT" and isinstance(fill["tradeId"], int)
    assert fake.requests[-1].params["type"] == "MARKET"
    assert [t.is_maker for t in fake.trades] == [False, False]


def test_cancel_releases_funds_and_unknown_orders_are_not_found(
    fake: FakeBinance, client: ccxt.binance
) -> None:
    order = client.create_order(BTC, "limit", "sell", 0.1, 110000, {"clientOrderId": "c1"})
    assert fake.balance("BTC") == (Decimal("0.4"), Decimal("0.1"))

    canceled = client.cancel_order("", BTC, {"origClientOrderId": "c1"})

    assert canceled["status"] == "canceled" and canceled["id"] == order["id"]
    assert fake.balance("BTC") == (Decimal("0.5"), Decimal(0))
    with pytest.raises(ccxt.OrderNotFound, match="Unknown order sent."):
        client.cancel_order(order["id"], BTC)  # already canceled
    with pytest.raises(ccxt.OrderNotFound, match="Unknown order sent."):
        client.cancel_order("424242", BTC)
    with pytest.raises(ccxt.OrderNotFound, match="Order does not exist."):
        client.fetch_order("", BTC, {"origClientOrderId": "never-sent"})
    assert client.fetch_order("", BTC, {"origClientOrderId": "c1"})["status"] == "canceled"


def test_cancel_all_and_all_orders(fake: FakeBinance, client: ccxt.binance) -> None:
    for price in (95000, 96000):
        client.create_order(BTC, "limit", "buy", 0.001, price)

    canceled = client.cancel_all_orders(BTC)

    assert [o["status"] for o in canceled] == ["canceled", "canceled"]
    assert [o["status"] for o in client.fetch_orders(BTC)] == ["canceled", "canceled"]
    assert fake.balance("USDT") == (Decimal(10000), Decimal(0))


def test_fetch_balance(fake: FakeBinance, client: ccxt.binance) -> None:
    client.create_order(BTC, "limit", "sell", 0.2, 120000)

    balance = client.fetch_balance()

    assert balance["BTC"] == {"free": 0.3, "used": 0.2, "total": 0.5}
    assert balance["USDT"]["free"] == 10000.0
    raw = balance["info"]["balances"]
    assert {"asset": "BTC", "free": "0.30000000", "locked": "0.20000000"} in raw


def test_bad_signature_and_unknown_key_are_refused(fake: FakeBinance) -> None:
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        fake.ccxt_client(secret="not-the-secret").fetch_balance()
    assert fake.requests[-1].status == 400
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        fake.ccxt_client(api_key="someone-else").fetch_balance()
    assert fake.requests[-1].status == 401


def test_signature_covers_query_and_body_as_binance_does(fake: FakeBinance) -> None:
    query = f"symbol=BTCUSDT&timestamp={int(time.time() * 1000)}"
    body = "side=BUY&type=MARKET&quantity=0.001"
    signature = hmac.new(b"s", (query + body).encode(), hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{fake.base_url}/order?{query}&signature={signature}",
        data=body.encode(),
        method="POST",
        headers={"X-MBX-APIKEY": "k", "Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read())["status"] == "FILLED"


def test_stale_timestamp_is_refused(fake: FakeBinance, client: ccxt.binance) -> None:
    client.nonce = lambda: int(time.time() * 1000) - 60_000
    with pytest.raises(ccxt.InvalidNonce, match="outside of the recvWindow"):
        client.fetch_balance()


def test_fail_next_injects_errors_once(fake: FakeBinance, client: ccxt.binance) -> None:
    fake.fail_next("/account", 503)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        client.fetch_balance()
    client.fetch_balance()  # only the next call failed

    fake.fail_next("/api/v3/account", code=-1003, msg="Too much request weight used.")
    with pytest.raises(ccxt.RateLimitExceeded):
        client.fetch_balance()

    fake.fail_next("/order", "timeout")
    started = time.monotonic()
    with pytest.raises(ccxt.RequestTimeout):
        client.create_order(BTC, "limit", "buy", 0.001, 99000)
    assert time.monotonic() - started < 1.9
    assert fake.orders() == []  # a failure before processing leaves the book alone

    fake.fail_next("/order", "drop")
    with pytest.raises(ccxt.NetworkError):
        client.create_order(BTC, "limit", "buy", 0.001, 99000)
    assert fake.calls("POST", "/order") == 2 and fake.orders() == []


def test_accept_then_fail_response_keeps_the_order(fake: FakeBinance, client: ccxt.binance) -> None:
    fake.accept_then_fail_response("/order")

    with pytest.raises(ccxt.ExchangeNotAvailable):
        client.create_order(BTC, "limit", "buy", 0.001, 99000, {"clientOrderId": "lost"})

    [order] = fake.orders("BTCUSDT", "NEW")
    assert order.client_id == "lost"
    assert client.fetch_order("", BTC, {"origClientOrderId": "lost"})["status"] == "open"


def test_a_fresh_order_does_not_exist_for_lookups_and_cancels_yet(
    fake: FakeBinance, client: ccxt.binance
) -> None:
    """What Binance does for up to a minute after it accepted an order (-2013 / -2011)."""
    fake.not_found_ms = 60_000
    client.create_order(BTC, "limit", "buy", 0.001, 99000, {"clientOrderId": "fresh"})

    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_order("", BTC, {"origClientOrderId": "fresh"})
    with pytest.raises(ccxt.OrderNotFound):
        client.cancel_order("", BTC, {"origClientOrderId": "fresh"})
    assert [o["clientOrderId"] for o in client.fetch_open_orders(BTC)] == ["fresh"]  # it rests

    fake.not_found_ms = 0  # a minute later
    assert client.fetch_order("", BTC, {"origClientOrderId": "fresh"})["status"] == "open"


def test_a_clock_runs_the_fake_in_simulated_time(
    fake_binance: Callable[..., FakeBinance],
) -> None:
    now = [1_750_000_000_000]
    fake = fake_binance(
        balances={"USDT": "10000"}, prices={"BTCUSDT": "100000"}, clock=lambda: now[0]
    )
    client = fake.ccxt_client(timeout_ms=1000)
    client.load_markets()
    fake.not_found_ms = 60_000
    fake.trade_delay_ms = 5_000

    order = client.create_order(BTC, "limit", "buy", 0.001, 99000, {"clientOrderId": "sim"})

    assert client.fetch_time() == now[0] == fake.now_ms()
    assert order["timestamp"] == now[0] and order["info"]["transactTime"] == now[0]
    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_order("", BTC, {"origClientOrderId": "sim"})
    now[0] += 60_000  # a minute later, without sleeping
    fake.set_price("BTCUSDT", "98000")
    looked_up = client.fetch_order("", BTC, {"origClientOrderId": "sim"})
    assert looked_up["status"] == "closed" and looked_up["lastUpdateTimestamp"] == now[0]
    assert client.fetch_my_trades(BTC) == []  # the fill is not in myTrades yet
    now[0] += 5_000
    [trade] = client.fetch_my_trades(BTC)
    assert trade["timestamp"] == now[0] - 5_000


def test_partial_fills_accumulate_until_filled(fake: FakeBinance, client: ccxt.binance) -> None:
    client.create_order(BTC, "limit", "buy", 0.001, 99000, {"clientOrderId": "p1"})

    first = fake.fill_part("p1", "0.0004")

    assert (first.price, first.qty, first.commission, first.is_maker) == (
        Decimal(99000),
        Decimal("0.0004"),
        Decimal("0.0396"),
        True,
    )
    part = client.fetch_order("", BTC, {"origClientOrderId": "p1"})
    assert part["info"]["status"] == "PARTIALLY_FILLED" and part["status"] == "open"
    assert (part["filled"], part["remaining"], part["cost"]) == (0.0004, 0.0006, 39.6)
    assert [o["clientOrderId"] for o in client.fetch_open_orders(BTC)] == ["p1"]
    # The lock of the filled part came back and paid for it; the rest stays locked.
    assert fake.balance("USDT") == (Decimal("9900.901"), Decimal("59.4594"))
    assert fake.balance("BTC") == (Decimal("0.5004"), Decimal(0))
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent."):
        client.create_order(BTC, "limit", "buy", 0.001, 99000, {"clientOrderId": "p1"})

    fake.fill_part("p1", Decimal("0.0002"), price="98500")  # a better price
    [rest] = fake.set_price("BTCUSDT", "98000")  # fills what is left

    assert rest.qty == Decimal("0.0004") and rest.price == Decimal(99000)
    done = client.fetch_order("", BTC, {"origClientOrderId": "p1"})
    assert done["status"] == "closed" and done["filled"] == 0.001
    assert done["cost"] == 98.9 and done["average"] == 98900.0
    trades = client.fetch_my_trades(BTC)
    assert [(t["amount"], t["fee"]["cost"], t["takerOrMaker"]) for t in trades] == [
        (0.0004, 0.0396, "maker"),
        (0.0002, 0.0197, "maker"),
        (0.0004, 0.0396, "maker"),
    ]
    # Exact to the last digit: 98.9 paid plus 0.0989 commission, nothing left locked.
    assert fake.balance("USDT") == (Decimal("9901.0011"), Decimal(0))
    assert fake.balance("BTC") == (Decimal("0.501"), Decimal(0))
    with pytest.raises(LookupError):
        fake.fill_part("p1", "0.0001")  # no longer open
    client.create_order(BTC, "limit", "sell", 0.001, 110000, {"clientOrderId": "p2"})
    with pytest.raises(ValueError, match="left to fill"):
        fake.fill_part("p2", "0.002")
    with pytest.raises(ValueError, match="worse than"):
        fake.fill_part("p2", "0.0005", price="109000")


def test_a_partly_filled_order_is_open_for_cancels_and_limits(
    fake_binance: Callable[..., FakeBinance],
) -> None:
    info = json.loads(EXCHANGE_INFO.read_text())
    for f in info["symbols"][0]["filters"]:
        if f["filterType"] == "MAX_NUM_ORDERS":
            f["maxNumOrders"] = 1
    fake = fake_binance(
        balances={"USDT": "10000", "BTC": "0.5"}, prices={"BTCUSDT": "100000"}, exchange_info=info
    )
    client = fake.ccxt_client(timeout_ms=1000)
    order = client.create_order(BTC, "limit", "sell", 0.01, 101000, {"clientOrderId": "s1"})
    fake.fill_part("s1", "0.004")

    with pytest.raises(ccxt.BadRequest, match="MAX_NUM_ORDERS"):
        client.create_order(BTC, "limit", "sell", 0.001, 102000)
    canceled = client.cancel_order(order["id"], BTC)

    assert canceled["status"] == "canceled" and canceled["info"]["status"] == "CANCELED"
    assert (canceled["filled"], canceled["remaining"]) == (0.004, 0.006)
    assert canceled["info"]["cummulativeQuoteQty"] == "404.00000000"
    assert fake.balance("BTC") == (Decimal("0.496"), Decimal(0))
    assert fake.balance("USDT") == (Decimal("10403.596"), Decimal(0))  # +404 -0.404
    with pytest.raises(ccxt.OrderNotFound, match="Unknown order sent."):
        client.cancel_order(order["id"], BTC)
    client.create_order(BTC, "limit", "sell", 0.001, 102000, {"clientOrderId": "s2"})
    fake.fill_part("s2", "0.0005")
    [all_canceled] = client.cancel_all_orders(BTC)
    # ccxt's clientOrderId is the cancel's own id; the order's is origClientOrderId.
    assert all_canceled["info"]["origClientOrderId"] == "s2" and all_canceled["filled"] == 0.0005


def test_cancels_and_expiries_done_on_the_exchange(fake: FakeBinance, client: ccxt.binance) -> None:
    for cid, price in (("u1", 99000), ("e1", 98000), ("e2", 97000)):
        client.create_order(BTC, "limit", "buy", 0.001, price, {"clientOrderId": cid})
    fake.fill_part("u1", "0.0005")

    assert fake.user_cancel("u1").status == "CANCELED"
    assert fake.expire("e1").status == "EXPIRED"
    assert fake.expire("e2", "EXPIRED_IN_MATCH").status == "EXPIRED_IN_MATCH"

    def seen(cid: str) -> dict[str, Any]:
        return client.fetch_order("", BTC, {"origClientOrderId": cid})

    assert (seen("u1")["status"], seen("u1")["filled"]) == ("canceled", 0.0005)
    assert (seen("e1")["status"], seen("e1")["info"]["status"]) == ("expired", "EXPIRED")
    assert (seen("e2")["status"], seen("e2")["info"]["status"]) == ("expired", "EXPIRED_IN_MATCH")
    assert client.fetch_open_orders(BTC) == []
    # Every lock came back; only the half fill moved money: -49.5 -0.0495.
    assert fake.balance("USDT") == (Decimal("9950.4505"), Decimal(0))
    with pytest.raises(ccxt.OrderNotFound, match="Unknown order sent."):
        client.cancel_order("", BTC, {"origClientOrderId": "e1"})
    with pytest.raises(LookupError):
        fake.user_cancel("e1")
    with pytest.raises(ValueError, match="EXPIRED"):
        fake.expire("u1", "CANCELED")


def test_maker_and_taker_commission_rates(fake_binance: Callable[..., FakeBinance]) -> None:
    fake = fake_binance(
        balances={"USDT": "10000", "BTC": "0.5"},
        prices={"BTCUSDT": "100000"},
        commission={"maker": "0.00075", "taker": "0.0012"},
    )
    client = fake.ccxt_client(timeout_ms=1000)
    client.load_markets()

    client.create_order(BTC, "limit", "buy", 0.001, 99000)
    assert fake.balance("USDT")[1] == Decimal("99.07425")  # it rests, so it will pay maker
    fake.set_price("BTCUSDT", "99000")
    client.create_order(BTC, "market", "sell", 0.002, None)

    maker, taker = client.fetch_my_trades(BTC)
    assert (maker["takerOrMaker"], maker["fee"]) == ("maker", {"currency": "USDT", "cost": 0.07425})
    assert (taker["takerOrMaker"], taker["fee"]) == ("taker", {"currency": "USDT", "cost": 0.2376})
    account = client.fetch_balance()["info"]
    assert (account["makerCommission"], account["takerCommission"]) == (8, 12)
    assert account["commissionRates"] == {
        "maker": "0.00075000",
        "taker": "0.00120000",
        "buyer": "0.00000000",
        "seller": "0.00000000",
    }
    zero = {"maker": "0.00000000", "taker": "0.00000000", "buyer": "0.00000000"}
    zero["seller"] = "0.00000000"
    assert client.private_get_account_commission({"symbol": "BTCUSDT"}) == {
        "symbol": "BTCUSDT",
        "standardCommission": account["commissionRates"],
        "specialCommission": zero,
        "taxCommission": zero,
        "discount": {
            "enabledForAccount": False,
            "enabledForSymbol": True,
            "discountAsset": "BNB",
            "discount": "0.75000000",
        },
    }
    assert fake.requests[-1].path == "/api/v3/account/commission"
    with pytest.raises(ccxt.BadRequest, match="-1102"):
        client.private_get_account_commission()
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        fake.ccxt_client(secret="wrong").private_get_account_commission({"symbol": "BTCUSDT"})

    fake.buyer_pays_base = True
    client.create_order(BTC, "limit", "buy", 0.001, 98000)
    fake.set_price("BTCUSDT", "98000")
    assert client.fetch_my_trades(BTC)[-1]["fee"] == {"currency": "BTC", "cost": 0.00000075}


def test_fees_in_bnb_while_the_bnb_lasts(fake_binance: Callable[..., FakeBinance]) -> None:
    fake = fake_binance(
        balances={"USDT": "10000", "BTC": "0.5", "BNB": "0.0002"},
        prices={"BTCUSDT": "100000", "BNBUSDT": "612.34"},
        bnb_fees=True,
    )
    client = fake.ccxt_client(timeout_ms=1000)
    client.load_markets()
    assert client.market("BNB/USDT")["precision"]["amount"] == 0.001
    assert client.market("BNB/USDT")["limits"]["cost"]["min"] == 5.0
    assert client.fetch_ticker("BNB/USDT")["last"] == 612.34

    client.create_order(BTC, "limit", "buy", 0.001, 99000)
    fake.set_price("BTCUSDT", "99000")  # maker: 99 USDT * 0.1 % * 0.75 / 612.34 USDT per BNB
    client.create_order(BTC, "market", "sell", 0.001, None)  # 0.00012126 BNB: not there

    paid, fallback = client.fetch_my_trades(BTC)
    assert paid["fee"] == {"currency": "BNB", "cost": 0.00012126}
    assert fallback["fee"] == {"currency": "USDT", "cost": 0.099}
    assert fake.balance("BNB") == (Decimal("0.00007874"), Decimal(0))
    assert fake.balance("USDT") == (Decimal("9999.901"), Decimal(0))  # -99 +99 -0.099
    assert fake.balance("BTC") == (Decimal("0.5"), Decimal(0))
    discount = client.private_get_account_commission({"symbol": "BTCUSDT"})["discount"]
    assert discount["enabledForAccount"] is True

    bought = client.create_order("BNB/USDT", "market", "buy", 0.01, None)  # pays with its BNB
    assert bought["status"] == "closed"
    assert bought["info"]["fills"][0]["commissionAsset"] == "BNB"
    assert fake.balance("BNB") == (Decimal("0.01007124"), Decimal(0))  # +0.01 -0.0000075


def test_failures_aimed_at_one_client_id(fake: FakeBinance, client: ccxt.binance) -> None:
    fake.fail_next("/order", 503, method="POST", client_id="b2")
    fake.accept_then_fail_response("/order", method="DELETE", client_id="a1")

    client.create_order(BTC, "limit", "buy", 0.001, 99000, {"clientOrderId": "a1"})
    with pytest.raises(ccxt.ExchangeNotAvailable):
        client.create_order(BTC, "limit", "buy", 0.001, 98000, {"clientOrderId": "b2"})
    client.create_order(BTC, "limit", "buy", 0.001, 98000, {"clientOrderId": "b2"})  # once
    client.cancel_order("", BTC, {"origClientOrderId": "b2"})  # not aimed at: untouched
    assert [o.client_id for o in fake.open_orders()] == ["a1"]

    with pytest.raises(ccxt.ExchangeNotAvailable):
        client.cancel_order("", BTC, {"origClientOrderId": "a1"})

    assert fake.open_orders() == []  # the cancel was carried out; the answer was lost
    assert [r.status for r in fake.requests if r.method == "DELETE"] == [200, 500]


# ---------------------------------------------------------------- limits, order types, status

MINUTE = 1_750_000_020_000  # the start of a minute (and of a 10-second window)


def answer(client: ccxt.binance) -> Any:
    """The JSON body of the client's last answer, an error's too."""
    return json.loads(client.last_http_response)


def weight_limit(limit: int) -> list[dict[str, Any]]:
    return [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": limit}
    ]


def test_exchange_info_ships_binances_rate_limits(fake: FakeBinance) -> None:
    status, info = raw_get(fake, "/exchangeInfo")

    assert info["rateLimits"] == [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
    ]


def test_each_endpoint_costs_its_documented_weight(
    fake_binance: Callable[..., FakeBinance],
) -> None:
    now = [MINUTE]
    fake = fake_binance(
        balances={"USDT": "10000", "BTC": "0.5"},
        prices={"BTCUSDT": "100000"},
        clock=lambda: now[0],
    )
    client = fake.ccxt_client(timeout_ms=1000)
    client.load_markets()
    assert client.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "20"  # exchangeInfo
    order = client.create_order(BTC, "limit", "buy", 0.001, 99000)
    oid = order["id"]
    calls: list[tuple[Callable[[], Any], str, int]] = [
        (client.fetch_time, "GET /api/v3/time", 1),
        (client.public_get_ping, "GET /api/v3/ping", 1),
        (lambda: client.fetch_ticker(BTC), "GET /api/v3/ticker/24hr", 2),
        (client.public_get_ticker_24hr, "GET /api/v3/ticker/24hr", 80),
        (
            lambda: client.public_get_ticker_price({"symbol": "BTCUSDT"}),
            "GET /api/v3/ticker/price",
            2,
        ),
        (client.public_get_ticker_price, "GET /api/v3/ticker/price", 4),
        (lambda: client.fetch_order_book(BTC), "GET /api/v3/depth", 5),
        (lambda: client.fetch_order_book(BTC, 500), "GET /api/v3/depth", 25),
        (lambda: client.fetch_order_book(BTC, 1000), "GET /api/v3/depth", 50),
        (lambda: client.fetch_ohlcv(BTC, "1m"), "GET /api/v3/klines", 2),
        (lambda: client.fetch_order(oid, BTC), "GET /api/v3/order", 4),
        (lambda: client.fetch_open_orders(BTC), "GET /api/v3/openOrders", 6),
        (client.private_get_openorders, "GET /api/v3/openOrders", 80),
        (lambda: client.fetch_orders(BTC), "GET /api/v3/allOrders", 20),
        (lambda: client.fetch_my_trades(BTC), "GET /api/v3/myTrades", 20),
        (lambda: client.fetch_my_trades(BTC, params={"orderId": oid}), "GET /api/v3/myTrades", 5),
        (client.fetch_balance, "GET /api/v3/account", 20),
        (
            lambda: client.private_get_account_commission({"symbol": "BTCUSDT"}),
            "GET /api/v3/account/commission",
            20,
        ),
        (lambda: client.cancel_order(oid, BTC), "DELETE /api/v3/order", 1),
        (lambda: client.create_order(BTC, "limit", "buy", 0.001, 98000), "POST /api/v3/order", 1),
        (lambda: client.cancel_all_orders(BTC), "DELETE /api/v3/openOrders", 1),
    ]
    for call, endpoint, weight in calls:
        charged, used = fake.weight_by_endpoint[endpoint], fake.used_weight()
        call()
        assert fake.weight_by_endpoint[endpoint] - charged == weight, endpoint
        assert fake.used_weight() - used == weight, endpoint
        assert client.last_response_headers["X-MBX-USED-WEIGHT-1M"] == str(fake.used_weight())

    # An error is charged too and says so.
    used = fake.used_weight()
    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_order("424242", BTC)
    assert client.last_response_headers["X-MBX-USED-WEIGHT-1M"] == str(used + 4)
    # /sapi counts apart, in its own header.
    client.fetch_status()
    assert client.last_response_headers["X-SAPI-USED-IP-WEIGHT-1M"] == "1"
    assert "X-MBX-USED-WEIGHT-1M" not in client.last_response_headers
    assert fake.used_weight() == used + 4
    assert fake.weight_total == sum(fake.weight_by_endpoint.values()) == used + 4 + 1

    now[0] += 60_000  # the next minute starts from nothing; the totals stay
    assert fake.used_weight() == 0
    client.fetch_time()
    assert client.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "1"
    assert fake.weight_total == used + 4 + 1 + 1


def test_past_the_weight_limit_429_then_an_ip_ban(fake_binance: Callable[..., FakeBinance]) -> None:
    now = [MINUTE]
    fake = fake_binance(
        prices={"BTCUSDT": "100000"},
        clock=lambda: now[0],
        rate_limits=weight_limit(30),
        ban_seconds=300,
    )
    client = fake.ccxt_client(timeout_ms=1000)
    client.load_markets()  # 20
    for _ in range(5):
        client.fetch_ticker(BTC)  # 2 each: 30, right at the limit
    now[0] += 15_000

    with pytest.raises(ccxt.DDoSProtection, match="429") as refused:
        client.fetch_ticker(BTC)

    assert type(refused.value) is ccxt.DDoSProtection  # not RateLimitExceeded: 429 comes first
    assert answer(client) == {
        "code": -1003,
        "msg": "Too much request weight used; current limit is 30 request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
    }
    assert client.last_response_headers["Retry-After"] == "45"  # this minute ends in 45 s
    assert client.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "32"
    assert fake.requests[-1].status == 429

    # An injected 429 is no strike and costs nothing.
    fake.fail_next("/ticker/24hr", 429, code=-1003, msg="Too many requests.")
    with pytest.raises(ccxt.DDoSProtection):
        client.fetch_ticker(BTC)
    assert fake.used_weight() == 32

    now[0] += 1_000
    with pytest.raises(ccxt.DDoSProtection, match="429"):
        client.fetch_ticker(BTC)  # the second 429: still not backing off
    with pytest.raises(ccxt.DDoSProtection, match="418") as banned:
        client.fetch_ticker(BTC)

    until = now[0] + 300_000
    assert fake.banned_until == until
    assert answer(client) == {
        "code": -1003,
        "msg": f"Way too much request weight used; IP banned until {until}. "
        "Please use WebSocket Streams for live updates to avoid bans.",
    }
    assert client.last_response_headers["Retry-After"] == "300"
    assert type(banned.value) is ccxt.DDoSProtection
    now[0] += 120_000  # a new minute, but still banned, every endpoint
    for call in (client.fetch_time, client.fetch_status, lambda: client.fetch_order_book(BTC)):
        with pytest.raises(ccxt.DDoSProtection, match="418"):
            call()
        assert client.last_response_headers["Retry-After"] == "180"
    assert fake.used_weight() == 0  # a banned request costs nothing

    now[0] = until  # the ban lifts
    assert client.fetch_ticker(BTC)["last"] == 100000.0
    assert client.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "2"
    assert fake.banned_until is None


def test_backing_off_after_a_429_avoids_the_ban(fake_binance: Callable[..., FakeBinance]) -> None:
    now = [MINUTE]
    fake = fake_binance(clock=lambda: now[0], rate_limits=weight_limit(4))
    client = fake.ccxt_client(timeout_ms=1000)

    def spend(n: int) -> None:
        for _ in range(n):
            client.fetch_time()

    spend(4)
    for _ in range(2):  # ban_after=2: two 429s in one window are tolerated
        with pytest.raises(ccxt.DDoSProtection, match="429"):
            spend(1)
    now[0] += 60_000  # backed off for Retry-After: the strikes are forgiven
    spend(4)
    for _ in range(2):
        with pytest.raises(ccxt.DDoSProtection, match="429"):
            spend(1)
    assert fake.banned_until is None
    with pytest.raises(ccxt.DDoSProtection, match="418"):
        spend(1)  # the third in a window
    assert fake.banned_until == now[0] + 120_000  # ban_seconds defaults to Binance's first ban


def test_order_count_limits_and_headers(fake_binance: Callable[..., FakeBinance]) -> None:
    now = [MINUTE]
    fake = fake_binance(
        balances={"USDT": "10000", "BTC": "0.5"},
        prices={"BTCUSDT": "100000"},
        clock=lambda: now[0],
        rate_limits=[
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 3},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 5},
        ],
    )
    client = fake.ccxt_client(timeout_ms=1000)
    client.load_markets()

    def counts() -> tuple[str, str]:
        h = client.last_response_headers
        return h["X-MBX-ORDER-COUNT-10S"], h["X-MBX-ORDER-COUNT-1D"]

    for i, price in enumerate((99000, 98000, 97000), start=1):
        client.create_order(BTC, "limit", "buy", 0.001, price, {"clientOrderId": f"o{i}"})
        assert counts() == (str(i), str(i))
        assert "X-MBX-USED-WEIGHT-1M" in client.last_response_headers

    with pytest.raises(ccxt.DDoSProtection, match="429") as refused:
        client.create_order(BTC, "limit", "buy", 0.001, 96000, {"clientOrderId": "o4"})

    assert type(refused.value) is ccxt.DDoSProtection
    assert answer(client) == {
        "code": -1015,
        "msg": "Too many new orders; current limit is 3 orders per TEN_SECONDS.",
    }
    assert "Retry-After" not in client.last_response_headers  # Binance sends none for orders
    assert [o.client_id for o in fake.orders()] == ["o1", "o2", "o3"]
    # Other requests are not order placements: no count headers, and not refused.
    client.fetch_open_orders(BTC)
    assert "X-MBX-ORDER-COUNT-10S" not in client.last_response_headers

    fake.set_price("BTCUSDT", "98500")  # o1 fills: no longer an unfilled order
    assert fake.usage()["X-MBX-ORDER-COUNT-10S"] == 2
    client.create_order(BTC, "limit", "buy", 0.001, 96000, {"clientOrderId": "o4"})
    assert counts() == ("3", "3")

    now[0] += 10_000  # a new 10 seconds; the day goes on
    market = client.create_order(BTC, "market", "sell", 0.001, None, {"clientOrderId": "m1"})
    assert market["status"] == "closed"
    assert counts() == ("1", "4")  # counted as placed; its fill takes it off afterwards
    assert fake.usage() == {
        "X-MBX-USED-WEIGHT-1M": fake.used_weight(),
        "X-MBX-ORDER-COUNT-10S": 0,
        "X-MBX-ORDER-COUNT-1D": 3,
    }
    client.create_order(BTC, "limit", "buy", 0.001, 95000, {"clientOrderId": "o5"})
    client.create_order(BTC, "limit", "buy", 0.001, 94000, {"clientOrderId": "o6"})
    assert counts() == ("2", "5")
    now[0] += 10_000
    with pytest.raises(ccxt.DDoSProtection):
        client.create_order(BTC, "limit", "buy", 0.001, 93000, {"clientOrderId": "o7"})
    assert answer(client)["msg"] == ("Too many new orders; current limit is 5 orders per DAY.")
    client.cancel_order("", BTC, {"origClientOrderId": "o6"})  # cancels are not placements


def test_post_only_is_a_limit_maker_order(fake: FakeBinance, client: ccxt.binance) -> None:
    order = client.create_order(BTC, "limit", "buy", 0.001, 99000, {"postOnly": True})

    posted = fake.requests[-1].params
    assert posted["type"] == "LIMIT_MAKER" and "timeInForce" not in posted
    assert (order["type"], order["postOnly"], order["status"]) == ("limit", True, "open")
    [resting] = fake.orders("BTCUSDT", "NEW")
    assert resting.type == "LIMIT_MAKER"
    info = client.fetch_order(order["id"], BTC)["info"]
    assert (info["type"], info["timeInForce"]) == ("LIMIT_MAKER", "GTC")
    assert fake.balance("USDT")[1] == Decimal("99.099")  # it can only pay the maker rate

    for side, price in (("buy", 100000), ("sell", 99999.99)):
        with pytest.raises(ccxt.OrderImmediatelyFillable, match="Order would immediately match"):
            client.create_order(BTC, "limit", side, 0.001, price, {"postOnly": True})
        assert fake.requests[-1].status == 400
        assert answer(client) == {
            "code": -2010,
            "msg": "Order would immediately match and take.",
        }
    assert len(fake.orders()) == 1
    assert fake.balance("BTC") == (Decimal("0.5"), Decimal(0))

    [fill] = fake.set_price("BTCUSDT", "98000")
    assert fill.is_maker and fill.price == Decimal(99000)
    request = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT_MAKER", "quantity": "0.001"}
    with pytest.raises(ccxt.BadRequest, match="-1106"):
        client.private_post_order({**request, "price": "110000", "timeInForce": "GTC"})


def test_percent_price_by_side(fake_binance: Callable[..., FakeBinance]) -> None:
    info = json.loads(EXCHANGE_INFO.read_text())
    for f in info["symbols"][0]["filters"]:
        if f["filterType"] == "PERCENT_PRICE_BY_SIDE":  # the example in Binance's filters.md
            f.update(bidMultiplierUp="1.2", bidMultiplierDown="0.2")
            f.update(askMultiplierUp="5", askMultiplierDown="0.8")
    fake = fake_binance(
        balances={"USDT": "100000", "BTC": "1"}, prices={"BTCUSDT": "100000"}, exchange_info=info
    )
    client = fake.ccxt_client(timeout_ms=1000)
    client.load_markets()

    for side, price in (("buy", 120000.01), ("buy", 19999.99), ("sell", 79999.99)):
        with pytest.raises(ccxt.InvalidOrder, match="Filter failure: PERCENT_PRICE_BY_SIDE"):
            client.create_order(BTC, "limit", side, 0.001, price)
        assert answer(client)["code"] == -1013
    assert fake.orders() == []
    client.create_order(BTC, "limit", "buy", 0.001, 20000)  # the edges are in
    client.create_order(BTC, "limit", "sell", 0.001, 500000)
    client.create_order(BTC, "limit", "sell", 0.001, 120000.01)  # in for a sell
    client.create_order(BTC, "limit", "buy", 0.001, 79999.99)  # and this for a buy
    client.create_order(BTC, "limit", "sell", 0.001, 80000, {"postOnly": False})
    with pytest.raises(ccxt.InvalidOrder, match="PERCENT_PRICE_BY_SIDE"):
        client.create_order(BTC, "limit", "sell", 0.001, 500000.01, {"postOnly": True})
    client.create_order(BTC, "market", "sell", 0.001, None)  # market orders are not checked
    # The snapshot's own: 5 and 0.2 either side.
    shipped = fake_binance(balances={"USDT": "1000"}, prices={"BTCUSDT": "100000"})
    with pytest.raises(ccxt.InvalidOrder, match="PERCENT_PRICE_BY_SIDE"):
        shipped.ccxt_client().create_order(BTC, "limit", "buy", 0.001, 19999.99)


def test_system_status_follows_maintenance(fake: FakeBinance, client: ccxt.binance) -> None:
    status = client.fetch_status()

    assert status["status"] == "ok" and status["info"] == {"status": 0, "msg": "normal"}
    assert fake.requests[-1].path == "/sapi/v1/system/status"
    assert fake.calls("GET", "/sapi/v1/system/status") == 1
    fake.maintenance = True
    status = client.fetch_status()
    assert status["status"] == "maintenance"
    assert status["info"] == {"status": 1, "msg": "system_maintenance"}
    assert client.last_response_headers["X-SAPI-USED-IP-WEIGHT-1M"] == "2"


def test_a_halted_symbol_takes_no_new_orders(fake: FakeBinance, client: ccxt.binance) -> None:
    resting = client.create_order(BTC, "limit", "buy", 0.001, 99000, {"clientOrderId": "h1"})

    fake.halt("BTCUSDT")

    client.load_markets(reload=True)
    assert client.market(BTC)["active"] is False
    assert client.market(BTC)["info"]["status"] == "HALT"
    assert client.market("ETH/USDT")["active"] is True
    for type_, price in (("limit", 98000), ("market", None)):
        with pytest.raises(ccxt.MarketClosed, match="Market is closed."):
            client.create_order(BTC, type_, "buy", 0.001, price)
        assert fake.requests[-1].status == 400
        assert answer(client) == {"code": -1013, "msg": "Market is closed."}
    assert client.fetch_order(resting["id"], BTC)["status"] == "open"
    assert client.cancel_order(resting["id"], BTC)["status"] == "canceled"  # cancels still work

    fake.resume("BTCUSDT")
    client.load_markets(reload=True)
    assert client.market(BTC)["active"] is True
    assert client.create_order(BTC, "limit", "buy", 0.001, 98000)["status"] == "open"
    assert json.loads(EXCHANGE_INFO.read_text())["symbols"][0]["status"] == "TRADING"


@pytest.mark.parametrize(
    ("skew_ms", "message"),
    [
        (30_000, "outside of the recvWindow"),
        (-30_000, "1000ms ahead of the server's time"),
    ],
)
def test_a_skewed_server_clock_needs_the_time_difference(
    fake_binance: Callable[..., FakeBinance], skew_ms: int, message: str
) -> None:
    fake = fake_binance(
        balances={"USDT": "10000"}, prices={"BTCUSDT": "100000"}, clock_skew_ms=skew_ms
    )
    naive = fake.ccxt_client(timeout_ms=1000)

    assert abs(naive.fetch_time() - (time.time() * 1000 + skew_ms)) < 2000
    with pytest.raises(ccxt.InvalidNonce, match=message):
        naive.fetch_balance()
    assert answer(naive)["code"] == -1021

    adjusted = fake.ccxt_client(timeout_ms=1000)
    adjusted.options["adjustForTimeDifference"] = True
    adjusted.load_time_difference()
    assert abs(adjusted.options["timeDifference"] + skew_ms) < 2000
    assert adjusted.fetch_balance()["USDT"]["free"] == 10000.0
    order = adjusted.create_order(BTC, "limit", "buy", 0.001, 99000)
    assert abs(order["timestamp"] - (time.time() * 1000 + skew_ms)) < 2000  # the server's time


def test_more_symbols_can_be_listed(fake: FakeBinance, client: ccxt.binance) -> None:
    fake.list_symbol("SOLUSDT", "SOL", "USDT", PRICE_FILTER={"tickSize": "0.00100000"})
    fake.list_symbol("OLDBTC", "OLD", "BTC", status="BREAK")

    client.load_markets(reload=True)
    sol = client.market("SOL/USDT")
    assert (sol["base"], sol["quote"], sol["spot"], sol["active"]) == ("SOL", "USDT", True, True)
    assert sol["precision"]["price"] == 0.001
    assert client.market("OLD/BTC")["active"] is False
    status, info = raw_get(fake, "/exchangeInfo?symbol=SOLUSDT")
    assert status == 200 and info["symbols"][0]["quoteAsset"] == "USDT"
    fake.set_candles("SOLUSDT", [(1_749_000_000_000, 150, 151, 149, 150.5, 3)])
    assert client.fetch_ohlcv("SOL/USDT", "1m", since=1_749_000_000_000)[0][4] == 150.5
