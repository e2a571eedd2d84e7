"""Backtests a user asks for from the page: a BacktestRun row, a Huey task, a result to show.

"Backtest" alone is the walk (``bots.grid.backtest``); this module is the job a person asks
for. ``run_backtest_job(run_id)`` is the task's body (``bots.tasks.backtest_task`` calls it): it
loads the stored candles of the range, runs ``bots.grid.backtest.run_backtest`` with the grid the
run was saved with, and keeps the result with a chart-sized summary (candles merged into at
most ``CHART_BARS`` bars, the equity curve, the fills) so the page never reloads the range.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.db.models.fields.json import KT
from django.utils import timezone

from aibo import limits
from bots import config as schema
from bots.errors import BotError, Throttled
from bots.grid.backtest import BacktestResult, Candles, run_backtest
from bots.models import BacktestRun
from bots.pages import sparkline
from market.models import Candle

logger = logging.getLogger(__name__)

CHART_BARS = 1000
CHART_MARKERS = 400
DEFAULT_DAYS = 7


def default_range() -> dict[str, dt.date]:
    """The last week of stored candles, or of the calendar when none are stored yet."""
    last = (
        Candle.objects.filter(timeframe="1m")
        .order_by("-open_time")
        .values_list("open_time", flat=True)
        .first()
    )
    end = (last or timezone.now()).date()
    return {"start": end - dt.timedelta(days=DEFAULT_DAYS - 1), "end": end}


def check_limits(owner: Any) -> None:
    """At most ``BACKTESTS_AT_ONCE`` queued or running and ``BACKTESTS_PER_HOUR`` started in
    any hour, per user (``aibo.limits``)."""
    mine = BacktestRun.objects.filter(owner=owner)
    active = (BacktestRun.Status.QUEUED, BacktestRun.Status.RUNNING)
    if limits.under_way(mine, active=active) >= settings.BACKTESTS_AT_ONCE:
        raise Throttled(
            f"You have {settings.BACKTESTS_AT_ONCE} backtests queued or running; "
            "start another when one has finished.",
            retry_after=10,
        )
    wait = limits.hourly_wait(mine, settings.BACKTESTS_PER_HOUR)
    if wait is not None:
        raise Throttled(
            f"You have started {settings.BACKTESTS_PER_HOUR} backtests in the last hour, the "
            f"limit. Try again in {-(-wait // 60)} minute(s).",
            retry_after=wait,
        )


def create_run(owner: Any, *, enqueue: Any, **fields: Any) -> BacktestRun:
    """Store a page backtest within the owner's limits and queue it once the row is committed;
    ``Throttled`` (nothing stored) beyond them."""
    with transaction.atomic():
        check_limits(owner)
        run = BacktestRun.objects.create(owner=owner, **fields)
        transaction.on_commit(lambda: enqueue(run.pk))
    return run


def stored_candles(
    exchange: str, symbol: str, *, start: dt.datetime | None, end: dt.datetime | None, tick: Decimal
) -> Candles:
    """The stored 1-minute candles of a market with start <= open time < end, oldest first."""
    rows = (
        Candle.objects.for_series(exchange, symbol, "1m")
        .between(start, end)
        .order_by("open_time")
        .values_list("open_time", "open", "high", "low", "close")
    )
    # Floats only carry the prices to Candles, which checks they convert back exactly.
    table = np.array(
        [(t.timestamp() * 1000, o, h, low, c) for t, o, h, low, c in rows.iterator(5000)],
        dtype=np.float64,
    ).reshape(-1, 5)
    if not len(table):
        raise BotError(
            f"No stored {symbol} candles on {exchange} in that period: import them first "
            "(manage.py import_candles)."
        )
    return Candles.from_floats(table, tick)


def _set(run: BacktestRun, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(run, name, value)
    run.save(update_fields=list(fields))


def run_backtest_job(run_id: int) -> None:
    """Run one page backtest to the end, saving progress (percent) and the result or the error."""
    run = BacktestRun.objects.get(pk=run_id)
    if run.status not in (BacktestRun.Status.QUEUED, BacktestRun.Status.RUNNING):
        return  # done already: a retried task changes nothing
    _set(run, status=BacktestRun.Status.RUNNING, progress=5)
    try:
        grid = schema.grid_config_for(run.config, exchange=run.exchange, symbol=run.symbol)
        candles = stored_candles(
            run.exchange, run.symbol, start=run.start, end=run.end, tick=grid.tick
        )
        _set(run, progress=40)
        result = run_backtest(grid, candles)
        _set(run, progress=90)
        data = result.to_json_dict()
        data["chart"] = chart_summary(result, candles)
    except (ValueError, BotError) as e:
        _set(
            run,
            status=BacktestRun.Status.FAILED,
            error=str(e)[:500],
            finished_at=timezone.now(),
        )
        return
    except Exception:
        logger.exception("backtest %s failed", run_id)
        _set(
            run,
            status=BacktestRun.Status.FAILED,
            error="the backtest failed unexpectedly; the log has the details",
            finished_at=timezone.now(),
        )
        return
    _set(run, status=BacktestRun.Status.DONE, progress=100, result=data, finished_at=timezone.now())


def chart_summary(result: BacktestResult, candles: Candles) -> dict[str, Any]:
    """At most CHART_BARS merged bars, the equity curve and up to CHART_MARKERS fills.

    Times are epoch seconds (what the chart library takes); fills sit on their bar's time.
    """
    n = len(candles)
    per_bar = max(1, -(-n // CHART_BARS))
    starts = np.arange(0, n, per_bar)
    ends = np.minimum(starts + per_bar, n) - 1
    unit = 10.0**-candles.decimals
    times = candles.time_ms[starts] // 1000
    bars = np.column_stack(
        [
            times,
            candles.open[starts] * unit,
            np.maximum.reduceat(candles.high, starts) * unit,
            np.minimum.reduceat(candles.low, starts) * unit,
            candles.close[ends] * unit,
        ]
    )
    digits = max(candles.decimals, 2)
    out_bars = [
        [int(t), round(o, digits), round(h, digits), round(lo, digits), round(c, digits)]
        for t, o, h, lo, c in bars.tolist()
    ]
    equity: list[list[float]] = []
    if result.equity_curve is not None and len(result.equity_curve):
        idx = np.unique(np.linspace(0, n - 1, min(n, CHART_BARS)).astype(int))
        equity = [
            [int(candles.time_ms[i] // 1000), round(float(result.equity_curve[i]), 2)] for i in idx
        ]
    points = result.fill_points
    if len(points) > CHART_MARKERS:
        keep = np.unique(np.linspace(0, len(points) - 1, CHART_MARKERS).astype(int))
        points = [points[i] for i in keep]
    markers = []
    if points:
        positions = np.searchsorted(candles.time_ms, [p.time_ms for p in points])
        for p, pos in zip(points, positions, strict=True):
            bar = min(int(pos), n - 1) // per_bar
            markers.append([int(times[bar]), p.side.value, float(p.price)])
    return {"bars": out_bars, "bar_seconds": per_bar * 60, "equity": equity, "fills": markers}


def page_context(run: BacktestRun) -> dict[str, Any]:
    result = run.result or {}
    stats = {k: v for k, v in result.items() if k not in ("chart", "round_trips", "fill_points")}
    capital = Decimal(run.config.get("capital", "0") or "0")
    ctx: dict[str, Any] = {
        "run": run,
        "done": run.status in (BacktestRun.Status.DONE, BacktestRun.Status.FAILED),
        "stats": stats,
        "quote": run.symbol.split("/")[-1],
        "base": run.symbol.split("/")[0],
        "capital": capital,
        "last_day": (run.end - dt.timedelta(microseconds=1)).date(),  # the range ends before
        "return_pct": (
            Decimal(stats["total_profit"]) / capital
            if capital and "total_profit" in stats
            else None
        ),
    }
    curve = (result.get("chart") or {}).get("equity") or []
    if curve:
        ctx["equity_spark"] = sparkline([v for _, v in curve], width=600, height=120)
        ctx["equity_up"] = curve[-1][1] >= curve[0][1]
    return ctx


HISTORY_PER_PAGE = 30


@dataclass
class HistoryRow:
    """One past backtest in the list: the run (without its result) and its headline figures."""

    run: BacktestRun
    total_profit: Decimal | None
    round_trips: int | None

    @property
    def quote(self) -> str:
        return self.run.symbol.split("/")[-1]

    @property
    def capital(self) -> Decimal | None:
        try:
            return Decimal(str(self.run.config.get("capital") or "0")) or None
        except ArithmeticError:
            return None

    @property
    def return_ratio(self) -> Decimal | None:
        capital = self.capital
        if self.total_profit is None or not capital:
            return None
        return self.total_profit / capital

    @property
    def last_day(self) -> dt.date:
        return (self.run.end - dt.timedelta(microseconds=1)).date()


def history_page(owner: Any, number: Any = 1) -> Page:
    """A page of the owner's backtests, newest first. The stored result (its chart can be
    large) is not read: its two headline figures come out of the JSON in the query."""
    runs = (
        BacktestRun.objects.filter(owner=owner)
        .defer("result")
        .annotate(profit=KT("result__total_profit"), trips=KT("result__total_trades"))
        .order_by("-created_at", "-id")
    )
    page = Paginator(runs, HISTORY_PER_PAGE).get_page(number)
    page.object_list = [_history_row(run) for run in page.object_list]
    return page


def _history_row(run: BacktestRun) -> HistoryRow:
    profit = trips = None
    try:
        if run.profit is not None:  # type: ignore[attr-defined]
            profit = Decimal(str(run.profit))  # type: ignore[attr-defined]
        if run.trips is not None:  # type: ignore[attr-defined]
            trips = int(run.trips)  # type: ignore[attr-defined]
    except (ArithmeticError, ValueError):
        pass
    return HistoryRow(run, profit, trips)


def chart_data(run: BacktestRun) -> dict[str, Any]:
    result = run.result or {}
    chart = result.get("chart") or {}
    return {
        "status": run.status,
        "symbol": run.symbol,
        "lines": (run.result or {}).get("levels", []),
        "candles": chart.get("bars", []),
        "bar_seconds": chart.get("bar_seconds", 60),
        "equity": chart.get("equity", []),
        "fills": chart.get("fills", []),
        # the grid moving (trailing): its range at the start, then each shift
        "start_lines": _ends(result.get("start_levels") or result.get("levels") or []),
        "moves": result.get("grid_moves", []),
    }


def _ends(lines: list[str]) -> list[str]:
    return [lines[0], lines[-1]] if lines else []
