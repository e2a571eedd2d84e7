"""Backtest a grid on stored candles or a CSV file (GRID_SPEC.md semantics, the bots' engine)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from aibo.cli import parse_date, parse_decimal
from bots import backtest_runs
from bots.errors import BotError
from bots.grid.backtest import BacktestResult, Candles, load_csv, run_backtest
from bots.grid.params import GridConfig, InvalidGrid
from market.models import MarketRules
from market.precision import canonical


class Command(BaseCommand):
    help = "Backtest a grid: --csv FILE or --symbol BTC/USDT [--start] [--end], and the grid."

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_argument_group("candles")
        source.add_argument("--csv", help="timestamp_ms,open,high,low,close[,volume] (.csv/.gz)")
        source.add_argument("--symbol", help="stored candles of this pair, e.g. BTC/USDT")
        source.add_argument("--exchange", default="binance")
        source.add_argument("--start", type=parse_date, help="first candle (stored candles)")
        source.add_argument("--end", type=parse_date, help="stop before this time (stored candles)")
        grid = parser.add_argument_group("grid")
        grid.add_argument("--lower", type=parse_decimal, required=True)
        grid.add_argument("--upper", type=parse_decimal, required=True)
        grid.add_argument("--levels", type=int, required=True, help="price lines, 2..500")
        grid.add_argument("--capital", type=parse_decimal, required=True, help="quote to commit")
        grid.add_argument("--geometric", action="store_true", help="equal ratios between lines")
        grid.add_argument(
            "--fee", type=parse_decimal, help="per fill (default: the market's, 0.001)"
        )
        grid.add_argument(
            "--tick", type=parse_decimal, help="price increment (default: the market's)"
        )
        grid.add_argument("--step", type=parse_decimal, help="amount increment")
        grid.add_argument("--min-notional", type=parse_decimal, help="minimum order value")
        grid.add_argument("--stop-loss-pct", type=parse_decimal, default=Decimal(0))
        grid.add_argument("--take-profit", type=parse_decimal)
        trail = parser.add_argument_group("trigger and trailing (GRID_SPEC.md, Extensions)")
        trail.add_argument(
            "--trigger-price", type=parse_decimal, help="wait until the price reaches this"
        )
        trail.add_argument(
            "--trailing-up", action="store_true", help="move the grid up when the price leaves it"
        )
        trail.add_argument(
            "--trailing-up-limit", type=parse_decimal, help="no line above this price"
        )
        trail.add_argument(
            "--trailing-down", action="store_true", help="move the grid down (needs its limit)"
        )
        trail.add_argument(
            "--trailing-down-limit", type=parse_decimal, help="no line below this price"
        )
        out = parser.add_argument_group("output")
        out.add_argument("--json", action="store_true", help="print one JSON object")
        out.add_argument("--plot", help="draw price, grid, fills and equity to this PNG")

    def handle(self, *args: Any, **o: Any) -> None:
        if bool(o["csv"]) == bool(o["symbol"]):
            raise CommandError("Give exactly one of --csv FILE or --symbol PAIR.")
        market = self.market_rules(o)
        try:
            config = GridConfig(
                lower=o["lower"], upper=o["upper"], levels=o["levels"],
                spacing="geometric" if o["geometric"] else "arithmetic", capital=o["capital"],
                fee=o["fee"] if o["fee"] is not None else market["fee"],
                tick=o["tick"] or market["tick"], step=o["step"] or market["step"],
                min_notional=(
                    o["min_notional"] if o["min_notional"] is not None else market["min_notional"]
                ),
                stop_loss_pct=o["stop_loss_pct"], take_profit=o["take_profit"],
                trigger_price=o["trigger_price"], trailing_up=o["trailing_up"],
                trailing_up_limit=o["trailing_up_limit"], trailing_down=o["trailing_down"],
                trailing_down_limit=o["trailing_down_limit"],
            )  # fmt: skip
        except InvalidGrid as e:
            raise CommandError(f"Invalid grid: {e}") from None
        candles = self.candles(o, config.tick)
        try:
            result = run_backtest(config, candles)
        except InvalidGrid as e:
            raise CommandError(f"Invalid grid: {e}") from None
        if o["plot"]:
            plot(result, candles, config, o["plot"])
        if o["json"]:
            data = result.to_json_dict()
            data.pop("equity_curve", None), data.pop("equity_curve_index", None)
            self.stdout.write(json.dumps(data))
        else:
            self.stdout.write(summary(result, config))
        if o["plot"] and not o["json"]:
            self.stdout.write(f"plot written to {o['plot']}")

    def market_rules(self, o: dict[str, Any]) -> dict[str, Decimal]:
        defaults = {"fee": Decimal("0.001"), "tick": Decimal("0.01"),
                    "step": Decimal("0.00001"), "min_notional": Decimal("5")}  # fmt: skip
        if not o["symbol"]:
            return defaults
        rules = MarketRules.objects.filter(exchange=o["exchange"], symbol=o["symbol"]).first()
        if rules is None:
            return defaults
        return {k: canonical(getattr(rules, k)) for k in defaults}

    def candles(self, o: dict[str, Any], tick: Decimal) -> Candles:
        try:
            if o["csv"]:
                return load_csv(o["csv"], tick)
            return backtest_runs.stored_candles(
                o["exchange"], o["symbol"], start=o["start"], end=o["end"], tick=tick
            )
        except FileNotFoundError:
            raise CommandError(f"{o['csv']}: no such file") from None
        except (ValueError, BotError) as e:
            raise CommandError(str(e)) from None


def summary(r: BacktestResult, config: GridConfig) -> str:
    def when(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")

    q = config.quote_asset
    lines = [
        f"Backtest {when(r.start_time_ms)} → {when(r.end_time_ms)} UTC, {r.candles:,} candles",
        f"Grid: {len(r.levels)} {config.spacing} lines {config.lower}–{config.upper}, "
        f"{r.order_amount} per order, capital {config.capital:,} {q}",
        f"Fills {r.fills:,}; round trips {r.total_trades:,}, win rate {r.win_rate:.1%}",
        f"Grid profit   {r.grid_profit:>14,.2f} {q}",
        f"Total profit  {r.total_profit:>14,.2f} {q} ({r.total_profit / config.capital:+.2%})",
        f"Final equity  {r.final_equity:>14,.2f} {q}",
        f"Max drawdown  {r.max_drawdown:>14.2%}",
        f"Fees paid     {r.fees_paid:>14,.2f} {q}",
        f"Time in range {r.time_in_range:>14.1%}",
    ]
    if config.trigger_price is not None:
        lines.append(
            f"Triggered at {config.trigger_price} on {when(r.triggered_at)}"
            if r.triggered_at is not None
            else f"The price never reached the trigger price {config.trigger_price}"
        )
    if config.trailing_up or config.trailing_down:
        lines.append(
            f"Trailing: {r.shifts_up:,} shift(s) up, {r.shifts_down:,} down; "
            f"grid now {r.levels[0]}–{r.levels[-1]}"
        )
    if r.stopped:
        lines.append(f"Stopped by {r.stopped.replace('_', '-')} at {when(r.stop_time_ms or 0)}")
    return "\n".join(lines)


def plot(r: BacktestResult, candles: Candles, config: GridConfig, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    times = candles.time_ms.astype("datetime64[ms]")
    close = candles.close * (10.0**-candles.decimals)
    fig, (ax, eq) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, height_ratios=[3, 1])
    ax.plot(times, close, lw=0.6, color="#555", label="close")
    for line in r.start_levels or r.levels:
        ax.axhline(float(line), lw=0.4, color="#999", ls="--")
    if r.grid_moves:  # trailing: the grid's outer lines as they moved
        t = [candles.time_ms[0], *(m.time_ms for m in r.grid_moves), candles.time_ms[-1]]
        first = r.start_levels or r.levels
        lows = [first[0], *(m.lowest for m in r.grid_moves)]
        highs = [first[-1], *(m.highest for m in r.grid_moves)]
        t = np.array(t).astype("datetime64[ms]")
        for edge in (lows, highs):
            ax.step(t, [float(p) for p in [*edge, edge[-1]]], where="post", lw=0.8,
                    color="#f0b90b", label="grid" if edge is lows else None)  # fmt: skip
    for side, colour, marker in (("buy", "#26a69a", "^"), ("sell", "#ef5350", "v")):
        pts = [(p.time_ms, float(p.price)) for p in r.fill_points if p.side == side]
        if pts:
            t, p = zip(*pts, strict=True)
            ax.scatter(np.array(t).astype("datetime64[ms]"), p, s=10, c=colour, marker=marker,
                       label=f"{side} fills", zorder=3)  # fmt: skip
    ax.set_ylabel(f"price ({config.quote_asset})")
    ax.legend(loc="upper left")
    ax.set_title(f"Grid {config.lower}–{config.upper}, {len(r.levels)} lines")
    if r.equity_curve is not None:
        eq.plot(times, r.equity_curve, lw=0.8, color="#3fb68b")
    eq.set_ylabel("equity")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
