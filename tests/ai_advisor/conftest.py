from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anthropic
import pytest

from ai_advisor import services
from bots.models import Bot
from market.indicators import MarketSnapshot
from market.models import Candle
from tests.bots.conftest import make_rules
from tests.fakes import anthropic_fakes as fakes

API_KEY = "sk-ant-api03-TEST-KEY-must-never-leak-0123456789"
DAYS = 10
EVERY_MINUTES = 3
END_MS = 1_750_000_000_000 - 1_750_000_000_000 % 86_400_000  # a midnight, UTC
PRICE = Decimal("65000")


def _price(t_days: float) -> float:
    # A 3 % swing every 2 days with a 0.3 % ripple every 2 hours; 65 000 at the end.
    return 65000 * (1 + 0.03 * math.sin(2 * math.pi * t_days / 2)
                    + 0.003 * math.sin(2 * math.pi * t_days * 12))  # fmt: skip


def synthetic_rows() -> list[tuple[int, Decimal, Decimal, Decimal, Decimal]]:
    step = EVERY_MINUTES * 60_000
    n = DAYS * 86_400_000 // step
    start = END_MS - n * step
    rows = []
    prev = Decimal(str(round(_price(-DAYS), 2)))
    for i in range(1, n + 1):
        t = start + i * step
        close = Decimal(str(round(_price((t - END_MS) / 86_400_000), 2)))
        hi = max(prev, close) + Decimal("15.5")
        lo = min(prev, close) - Decimal("15.5")
        rows.append((t - step, prev, hi, lo, close))
        prev = close
    return rows


def snapshot(exchange: str = "binance", symbol: str = "BTC/USDT", **kw: Any) -> MarketSnapshot:
    fields: dict[str, Any] = {
        "exchange": exchange, "symbol": symbol, "at": datetime.fromtimestamp(END_MS / 1000, UTC),
        "price": PRICE, "rsi14": Decimal("48.2"), "volatility_daily": Decimal("0.0231"),
        "atr14": Decimal("1210.5"), "support": Decimal("63100"), "resistance": Decimal("66900"),
        "volume_24h_base": Decimal("18234.12"), "volume_24h_quote": Decimal("1185432100.55"),
        "range_7d": (Decimal("63020"), Decimal("66990")),
        "range_30d": (Decimal("62990"), Decimal("67010")), "candles_used": 4800,
    }  # fmt: skip
    fields.update(kw)
    return MarketSnapshot(**fields)


@pytest.fixture
def market(db: None, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """BTC/USDT rules, 10 days of stored candles ending at 65 000, and the snapshot stub."""
    make_rules()
    rows = synthetic_rows()
    Candle.objects.bulk_create(
        [
            Candle(exchange="binance", symbol="BTC/USDT", timeframe="1m",
                   open_time=datetime.fromtimestamp(t / 1000, UTC), open=o, high=h, low=lo,
                   close=c, volume=Decimal(1))
            for t, o, h, lo, c in rows
        ]
    )  # fmt: skip
    calls: list[Any] = []

    def fake_snapshot(exchange: str, symbol: str) -> MarketSnapshot:
        calls.append((exchange, symbol))
        return snapshot(exchange, symbol)

    monkeypatch.setattr(services, "market_snapshot", fake_snapshot)
    return calls


@pytest.fixture
def no_key(settings: Any) -> None:
    settings.ANTHROPIC_API_KEY = ""


@pytest.fixture
def claude(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Iterable[fakes.Reply]], fakes.FakeAnthropic]:
    """Configure a key and route the SDK to a scripted fake Messages API."""
    settings.ANTHROPIC_API_KEY = API_KEY
    settings.ANTHROPIC_MODEL = fakes.MODEL

    def script(replies: Iterable[fakes.Reply]) -> fakes.FakeAnthropic:
        fake = fakes.FakeAnthropic(replies)
        monkeypatch.setattr(services, "HTTP_CLIENT_FACTORY", fake.http_client)
        return fake

    return script


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    sleeps: list[float] = []
    monkeypatch.setattr(anthropic._base_client.time, "sleep", sleeps.append)
    return sleeps


BOT_CONFIG = {
    "capital": "1000", "lower_bound": "60000", "upper_bound": "70000", "grid_levels": "12",
    "spacing": "arithmetic", "stop_loss_pct": "5", "max_daily_loss": "50", "take_profit": "",
}  # fmt: skip


@pytest.fixture
def bot(market: Any, make_bot: Callable[..., Bot], settings: Any) -> Bot:
    return make_bot(BOT_CONFIG)


def good_input(**overrides: Any) -> dict[str, Any]:
    """A tool input that is a valid grid around 65 000 under these rules."""
    fields: dict[str, Any] = {
        "grid_lower": 63000, "grid_upper": 67000, "num_levels": 20, "take_profit": None,
    }  # fmt: skip
    return fakes.suggestion_input(**{**fields, **overrides})
