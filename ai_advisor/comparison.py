"""Backtests side by side: the advice, the bot's current config and the baseline, each on the
last 7 and 30 days of stored candles, as the JSON the advisor's pages and API show; and the
held-out check of the suggestion that its confidence comes from (``held_out``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np

from ai_advisor.errors import AdviceError
from ai_advisor.prompt import AdvisorContext
from ai_advisor.suggestions import grid_for
from bots import backtest_runs
from bots.errors import BotError, ConfigError
from bots.grid.backtest import Candles, run_backtest
from bots.grid.params import GridConfig, InvalidGrid
from market import services as market_services
from market.precision import canonical, plain, round_price

WINDOW_DAYS = (7, 30)
DAY_MS = 86_400_000
MINUTE_MS = 60_000
CURVE_POINTS = 60


@dataclass(frozen=True)
class Window:
    days: int
    start: int  # index into the loaded candles
    covered_days: Decimal
    note: str


def window_candles(ctx: AdvisorContext) -> tuple[Candles, list[Window]]:
    """The last 30 days of stored candles (up to the newest one) and the 7- and 30-day windows;
    a window with less stored than asked for uses what there is and says so."""
    last = market_services.last_candle(ctx.exchange, ctx.symbol)
    if last is None:
        raise AdviceError(f"No stored {ctx.symbol} candles to backtest on: import them first.")
    end = last[0].timestamp() * 1000 + MINUTE_MS
    start = datetime.fromtimestamp((end - max(WINDOW_DAYS) * DAY_MS) / 1000, UTC)
    try:
        candles = backtest_runs.stored_candles(
            ctx.exchange, ctx.symbol, start=start, end=last[0] + timedelta(minutes=1), tick=ctx.tick
        )
    except BotError as e:
        raise AdviceError(str(e)) from None
    windows = []
    for days in WINDOW_DAYS:
        i = int(np.searchsorted(candles.time_ms, end - days * DAY_MS))
        covered = Decimal(int(end - candles.time_ms[i])) / DAY_MS
        covered = covered.quantize(Decimal("0.1"))
        note = (
            ""
            if i > 0 or covered >= days
            else (f"only {covered} days of candles are stored: this window uses those")
        )
        windows.append(Window(days, i, covered, note))
    return candles, windows


def backtest_stats(grid: GridConfig, candles: Candles) -> dict[str, Any]:
    """The comparison's numbers for one grid on one window (or the reason it cannot run)."""
    try:
        r = run_backtest(grid, candles)
    except InvalidGrid as e:
        return {"error": str(e)}
    curve: list[float] = []
    if r.equity_curve is not None and len(r.equity_curve):
        idx = np.unique(np.linspace(0, len(r.equity_curve) - 1, CURVE_POINTS).astype(int))
        curve = [round(float(r.equity_curve[i]), 2) for i in idx]
    return {
        "total_profit": plain(r.total_profit),
        "return": plain((r.total_profit / grid.capital).quantize(Decimal("0.000001"))),
        "grid_profit": plain(r.grid_profit),
        "total_trades": r.total_trades,
        "fills": r.fills,
        "max_drawdown": plain(r.max_drawdown.quantize(Decimal("0.000001"))),
        "time_in_range": plain(r.time_in_range.quantize(Decimal("0.0001"))),
        "stopped": r.stopped,
        # trigger and trailing (zero and None for a grid without them)
        "shifts_up": r.shifts_up,
        "shifts_down": r.shifts_down,
        "triggered_at": r.triggered_at,
        "start_price": plain(r.start_price),
        "candles": r.candles,
        "equity_curve": curve,
    }


def compare(
    ctx: AdvisorContext,
    candles: Candles,
    windows: list[Window],
    candidates: list[tuple[str, str, dict[str, Any]]],
) -> dict[str, Any]:
    out_windows = [
        {
            "days": w.days,
            "from": iso(int(candles.time_ms[w.start])),
            "to": iso(int(candles.time_ms[-1]) + MINUTE_MS),
            "covered_days": plain(w.covered_days),
            "candles": len(candles) - w.start,
            "note": w.note,
        }
        for w in windows
    ]
    out = []
    for key, label, config in candidates:
        results: dict[str, Any] = {}
        try:
            grid = grid_for(config, ctx)
        except ConfigError as e:
            results = {str(w.days): {"error": str(e)} for w in windows}
        else:
            for w in windows:
                results[str(w.days)] = backtest_stats(grid, candles.slice(w.start, len(candles)))
        out.append({"key": key, "label": label, "config": config, "results": results})
    return {"windows": out_windows, "candidates": out}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


# --- the held-out check ---------------------------------------------------------------------

HOLDOUT_DAYS = 7


def holdout_split(candles: Candles) -> tuple[Candles, Candles | None]:
    """The older candles a grid is fitted on and the newer ones held out from the fit: the
    last HOLDOUT_DAYS days, or the last third when less is stored (None: too few to split)."""
    n = len(candles)
    if n < 3:
        return candles, None
    newest = candles.time_ms[-1] + MINUTE_MS
    last_week = int(np.searchsorted(candles.time_ms, newest - HOLDOUT_DAYS * DAY_MS))
    split = max(last_week, n - n // 3)
    if split <= 0 or split >= n:
        return candles, None
    return candles.slice(0, split), candles.slice(split, n)


def recentred(config: dict[str, str], *, price: Decimal, at: Decimal, tick: Decimal) -> dict:
    """The same grid shape (bounds, take-profit, trigger and trailing limits as ratios of
    `price`, the levels, spacing and stop-loss) placed around the price `at`, on the tick:
    where a trader starting then would have put it."""
    out = dict(config)
    prices = ("lower_bound", "upper_bound", "take_profit", "trigger_price",
              "trailing_up_limit", "trailing_down_limit")  # fmt: skip
    for key in prices:
        if config.get(key):
            out[key] = plain(canonical(round_price(Decimal(config[key]) * at / price, tick)))
    return out


def held_out(ctx: AdvisorContext, candles: Candles, config: dict[str, str]) -> dict[str, Any]:
    """The suggestion's shape placed at the start of the fitting period and run over it, and
    placed at the start of the held-out period and run over that: the held-out result is
    what its confidence comes from (``confidence.assess``)."""
    fit, holdout = holdout_split(candles)
    out: dict[str, Any] = {"holdout_days": HOLDOUT_DAYS}
    for name, part in (("fit", fit), ("holdout", holdout)):
        if part is None or not len(part):
            out[name] = None
            continue
        start = part.price(part.open[0])
        shaped = recentred(config, price=ctx.price, at=start, tick=ctx.tick)
        try:
            stats = backtest_stats(grid_for(shaped, ctx), part)
        except ConfigError as e:
            stats = {"error": str(e)}
        stats.pop("equity_curve", None)
        first, last = int(part.time_ms[0]), int(part.time_ms[-1]) + MINUTE_MS
        out[name] = {
            "from": iso(first),
            "to": iso(last),
            "days": plain((Decimal(last - first) / DAY_MS).quantize(Decimal("0.01"))),
            "lower_bound": shaped["lower_bound"],
            "upper_bound": shaped["upper_bound"],
            **stats,
        }
    return out
