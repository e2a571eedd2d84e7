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
