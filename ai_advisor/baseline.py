"""The quantitative baseline: the grid a simple search would pick, to set beside Claude's.

Range width × number of lines, fitted on the older part of the stored candles and scored on
the newer part it never saw; it is also the whole answer when no Claude key is configured.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import numpy as np

from ai_advisor.comparison import DAY_MS, MINUTE_MS, backtest_stats, iso
from ai_advisor.errors import AdviceError
from ai_advisor.prompt import AdvisorContext
from ai_advisor.suggestions import check_config, grid_for, money, pct
from bots import config as schema
from bots.grid.backtest import Candles, run_backtest
from market.precision import canonical, plain, round_price

# The search: total range width around the price × number of lines.
BASELINE_WIDTHS = (Decimal("0.02"), Decimal("0.03"), Decimal("0.05"), Decimal("0.075"),
                   Decimal("0.10"), Decimal("0.15"), Decimal("0.20"))  # fmt: skip
BASELINE_LEVEL_STEPS = 6
# Score on the fitting period: return minus this many times the max drawdown.
DRAWDOWN_PENALTY = {"low": Decimal(2), "medium": Decimal(1), "high": Decimal("0.5")}


@dataclass
class Baseline:
    suggestion: dict[str, Any]
    report: dict[str, Any]


def level_choices(lo: int, hi: int) -> list[int]:
    return sorted({round(lo + (hi - lo) * i / (BASELINE_LEVEL_STEPS - 1))
                   for i in range(BASELINE_LEVEL_STEPS)})  # fmt: skip


def _around(price: Decimal, width: Decimal, levels: int, ctx: AdvisorContext,
            stop_loss_pct: str) -> dict[str, str]:  # fmt: skip
    half = width / 2
    return schema.normalise(
        {
            "capital": ctx.capital,
            "lower_bound": canonical(round_price(price * (1 - half), ctx.tick)),
            "upper_bound": canonical(round_price(price * (1 + half), ctx.tick)),
            "grid_levels": levels,
            "spacing": "arithmetic",
            "stop_loss_pct": stop_loss_pct,
            "max_daily_loss": "",
            "take_profit": "",
        }
    )


def baseline_search(
    ctx: AdvisorContext, candles: Candles, *, current: dict[str, str] | None
) -> Baseline:
    """Range width × levels, fitted on the older part of the stored window and scored on the
    newer part (the last 7 days, or the last third when less is stored), so the score is on
    candles the choice never saw. The chosen shape is then centred on the current price."""
    n = len(candles)
    last_week = int(np.searchsorted(candles.time_ms, candles.time_ms[-1] + MINUTE_MS - 7 * DAY_MS))
    split = max(last_week, n - n // 3) if n >= 3 else n
    fit = candles.slice(0, split) if split > 0 else candles
    holdout = candles.slice(split, n) if split < n else None
    stop_loss = (current or {}).get("stop_loss_pct") or "0"
    penalty = DRAWDOWN_PENALTY[ctx.risk_preference]
    fit_price = fit.price(fit.open[0])

    scored: list[tuple[Decimal, Decimal, int, dict[str, Any]]] = []
    tried = 0
    for width in BASELINE_WIDTHS:
        for levels in level_choices(ctx.min_levels, ctx.max_levels):
            config = _around(fit_price, width, levels, ctx, stop_loss)
            if check_config(config, _at_price(ctx, fit_price)) is not None:
                continue
            tried += 1
            r = run_backtest(grid_for(config, ctx), fit)
            score = r.total_profit / ctx.capital - penalty * r.max_drawdown
            scored.append((score, width, levels, {
                "total_profit": plain(r.total_profit), "max_drawdown": plain(
                    r.max_drawdown.quantize(Decimal("0.000001"))), "total_trades": r.total_trades,
            }))  # fmt: skip
    scored.sort(key=lambda t: (-t[0], t[1], t[2]))
    # The best fit whose shape also runs at the current price (the capital may not stretch).
    usable = (
        t for t in scored if check_config(_around(ctx.price, *t[1:3], ctx, stop_loss), ctx) is None
    )
    chosen = next(usable, None)
    if chosen is None:
        raise AdviceError(
            f"No grid the baseline tried can run on {ctx.capital} {ctx.quote} at the current "
            f"price {ctx.price}: {_smallest_problem(ctx, stop_loss)}"
        )
    score, width, levels, fit_stats = chosen
    config = _around(ctx.price, width, levels, ctx, stop_loss)

    held: dict[str, Any] | None = None
    if holdout is not None and len(holdout):
        hp = holdout.price(holdout.open[0])
        stats = backtest_stats(grid_for(_around(hp, width, levels, ctx, stop_loss), ctx), holdout)
        stats.pop("equity_curve", None)
        held = {"from": iso(int(holdout.time_ms[0])),
                "to": iso(int(holdout.time_ms[-1]) + MINUTE_MS), **stats}  # fmt: skip
    in_range = Decimal(held["time_in_range"]) if held and "time_in_range" in held else None
    confidence = int((in_range or Decimal("0.5")) * 100)
    width_pct = plain(width * 100)
    fit_from, fit_to = iso(int(fit.time_ms[0])), iso(int(fit.time_ms[-1]) + MINUTE_MS)
    reasoning = (
        f"Quantitative baseline, not Claude: of {tried} valid grids (among "
        f"{len(BASELINE_WIDTHS)} range widths from 2 % to 20 % × "
        f"{len(level_choices(ctx.min_levels, ctx.max_levels))} line counts) fitted on "
        f"{fit_from[:10]} .. {fit_to[:10]}, a range {width_pct} % wide with "
        f"{levels} lines scored best for a {ctx.risk_preference} risk preference (profit "
        f"{money(fit_stats['total_profit'])} {ctx.quote}, max drawdown "
        f"{pct(Decimal(fit_stats['max_drawdown']))})."
    )
    if held and "total_profit" in held:
        reasoning += (
            f" On the newer {held['from'][:10]} .. {held['to'][:10]}, which the fit never saw, "
            f"it made {money(held['total_profit'])} {ctx.quote} with the price in its range "
            f"{pct(Decimal(held['time_in_range']))} of the time."
        )
    reasoning += f" Centred on the current price {ctx.price}."
    suggestion = {
        "grid_lower": config["lower_bound"],
        "grid_upper": config["upper_bound"],
        "num_levels": levels,
        "spacing": "arithmetic",
        "stop_loss_pct": stop_loss,
        "take_profit": None,
        "confidence": confidence,
        "risk_level": ctx.risk_preference,
        "reasoning": reasoning,
        "config": config,
    }
    report = {
        "width_pct": width_pct,
        "levels": levels,
        "candidates_tried": tried,
        "fit": {
            "from": fit_from,
            "to": fit_to,
            "candles": len(fit),
            "score": plain(score.quantize(Decimal("0.000001"))),
            **fit_stats,
        },  # fmt: skip
        "holdout": held,
        "note": "" if held else "too few candles stored to hold any back: fitted on all of them",
    }
    return Baseline(suggestion=suggestion, report=report)


def _at_price(ctx: AdvisorContext, price: Decimal) -> AdvisorContext:
    return replace(ctx, price=price)


def _smallest_problem(ctx: AdvisorContext, stop_loss: str) -> str:
    config = _around(ctx.price, BASELINE_WIDTHS[-1], ctx.min_levels, ctx, stop_loss)
    return check_config(config, ctx) or "no usable grid"
