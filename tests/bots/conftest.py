from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from bots.grid.params import GridConfig
from bots.models import Bot
from market.models import Candle, LatestPrice, MarketRules

WORKED_CONFIG = {
    "capital": "1000",
    "lower_bound": "100",
    "upper_bound": "110",
    "grid_levels": "3",
    "spacing": "arithmetic",
    "stop_loss_pct": "0",
    "max_daily_loss": "0",
    "take_profit": "",
}
# GRID_SPEC.md's worked example, after a first candle that closes at P0 = 104.
WORKED_CANDLES = [
    (0, "104", "104", "104", "104"),
    (60_000, "104", "106", "99", "105"),
    (120_000, "105", "111", "104", "108"),
    (180_000, "108", "108", "96", "97"),
]


# A grid around the worked example's prices, for tests that run real consumer processes.
WORKER_CONFIG = {
    "capital": "1000", "lower_bound": "95", "upper_bound": "115", "grid_levels": "10",
    "spacing": "arithmetic", "stop_loss_pct": "0", "max_daily_loss": "0", "take_profit": "",
}  # fmt: skip


def database_url() -> str:
    """The test database, as a URL a consumer process started by the test can reach."""
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def add_candles(rows: Iterable[Sequence[Any]], symbol: str = "BTC/USDT") -> None:
    Candle.objects.bulk_create(
        [
            Candle(exchange="binance", symbol=symbol, timeframe="1m", open_time=at(int(r[0])),
                   open=Decimal(r[1]), high=Decimal(r[2]), low=Decimal(r[3]),
                   close=Decimal(r[4]), volume=Decimal(r[5]) if len(r) > 5 else Decimal(1))
            for r in rows
        ]
    )  # fmt: skip


def make_rules(
    symbol: str = "BTC/USDT",
    *,
    tick: str = "0.01",
    step: str = "0.00001",
    min_notional: str = "5",
    fee: str = "0.001",
) -> MarketRules:
    base, quote = symbol.split("/")
    rules, _ = MarketRules.objects.update_or_create(
        exchange="binance", symbol=symbol,
        defaults={"base": base, "quote": quote, "tick": Decimal(tick), "step": Decimal(step),
                  "min_notional": Decimal(min_notional), "min_amount": Decimal(step),
                  "fee": Decimal(fee), "source": "snapshot"},
    )  # fmt: skip
    return rules


@pytest.fixture
def worked_market(db: None, settings: Any) -> None:
    """BTC/USDT with the worked example's rules (step 0.001) and its first candle stored."""
    settings.GRID_MIN_LEVELS = 2
    make_rules(step="0.001")
    add_candles(WORKED_CANDLES[:1])


@pytest.fixture
def worked_bot(worked_market: None, make_bot: Callable[..., Bot]) -> Bot:
    return make_bot(WORKED_CONFIG)


def example_config(**overrides: object) -> GridConfig:
    """The worked example (WORKED_CONFIG) as the pure grid's GridConfig, with ``overrides``."""
    fields: dict[str, object] = {
        "lower": Decimal(100),
        "upper": Decimal(110),
        "levels": 3,
        "spacing": "arithmetic",
        "capital": Decimal(1000),
        "fee": Decimal("0.001"),
        "tick": Decimal("0.01"),
        "step": Decimal("0.001"),
        "min_notional": Decimal(5),
    }
    fields.update(overrides)
    return GridConfig(**fields)  # type: ignore[arg-type]


# --- the desk (tests/bots/test_views.py and its neighbours): BTC/USDT at 65,000 --------------

CONFIG = {
    "capital": "1000",
    "lower_bound": "60000",
    "upper_bound": "70000",
    "grid_levels": "20",
    "spacing": "arithmetic",
    "stop_loss_pct": "0",
    "max_daily_loss": "0",
    "take_profit": "",
}
FORM = CONFIG | {"name": "", "symbol": "BTC/USDT", "mode": "paper"}


def set_price(symbol: str, price: Decimal, at: datetime = datetime(2025, 6, 1, tzinfo=UTC)) -> None:
    """What the market feed leaves behind: a closed candle at ``price`` and the latest price."""
    Candle.objects.update_or_create(
        exchange="binance",
        symbol=symbol,
        timeframe="1m",
        open_time=at,
        defaults={"open": price, "high": price, "low": price, "close": price, "volume": Decimal(1)},
    )
    LatestPrice.objects.update_or_create(
        exchange="binance", symbol=symbol, defaults={"price": price, "at": at}
    )


@pytest.fixture
def rules(db: None) -> None:
    for symbol, tick, step in (("BTC/USDT", "0.01", "0.00001"), ("ETH/USDT", "0.01", "0.0001")):
        MarketRules.objects.update_or_create(
            exchange="binance",
            symbol=symbol,
            defaults={
                "base": symbol.split("/")[0],
                "quote": symbol.split("/")[1],
                "tick": Decimal(tick),
                "step": Decimal(step),
                "min_notional": Decimal("5"),
                "fee": Decimal("0.001"),
            },
        )


@pytest.fixture
def price(rules: None) -> Decimal:
    set_price("BTC/USDT", Decimal("65000"))
    set_price("ETH/USDT", Decimal("2500"))
    return Decimal("65000")


@pytest.fixture
def bot(make_bot: Callable[..., Bot], rules: None, price: Decimal) -> Bot:
    return make_bot(dict(CONFIG), name="Test grid")


# --- going live (issue 13) --------------------------------------------------------------------


def open_live_gate(user: Any, reason: str = "tests about live trading, not about the gate") -> Any:
    """An operator's waiver of the paper-first gate for ``user`` (``bots.starting.live_gate``)."""
    from bots.models import LiveGateWaiver

    waiver, _ = LiveGateWaiver.objects.get_or_create(user=user, defaults={"reason": reason})
    return waiver


@pytest.fixture
def live_gate_open(user: Any) -> Any:
    """The ``user`` past paper first, for tests of live bots that are not about the gate."""
    return open_live_gate(user)
