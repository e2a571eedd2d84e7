"""The quantitative baseline: the grid a simple search would pick, to set beside Claude's.

Range width × number of lines, inside the trader's risk band (``profiles``), fitted on the
older part of the stored candles and scored on the newer part it never saw; it is also the
whole answer when no Claude key is configured.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from ai_advisor.comparison import MINUTE_MS, backtest_stats, holdout_split, iso
from ai_advisor.errors import AdviceError
from ai_advisor.profiles import RiskProfile, profile_for, profile_problem
from ai_advisor.prompt import AdvisorContext
from ai_advisor.suggestions import check_config, grid_for, money, pct
from ai_advisor.templatetags.advice import price_at_tick
from bots import config as schema
from bots.grid.backtest import Candles, run_backtest
from bots.templatetags.money import format_money
from market.precision import canonical, plain, round_price

# The search: total range width around the price (the risk choice's widths) × number of lines.
BASELINE_LEVEL_STEPS = 6


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
    fit, holdout = holdout_split(candles)
    profile = profile_for(ctx.risk_preference)
    stop_loss = _stop_loss(profile, current)
    penalty = profile.drawdown_penalty
    fit_price = fit.price(fit.open[0])

    scored: list[tuple[Decimal, Decimal, int, dict[str, Any]]] = []
    tried = 0
    for width in profile.search_widths:
        for levels in level_choices(ctx.min_levels, ctx.max_levels):
            config = _around(fit_price, width, levels, ctx, stop_loss)
            if _problem(config, _at_price(ctx, fit_price), profile) is not None:
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
        t
        for t in scored
        if _problem(_around(ctx.price, *t[1:3], ctx, stop_loss), ctx, profile) is None
    )
    chosen = next(usable, None)
    if chosen is None:
        raise AdviceError(
            f"No {profile.label.lower()} grid the baseline tried can run on "
            f"{format_money(ctx.capital)} {ctx.quote} at the current price "
            f"{price_at_tick(ctx.price, ctx.tick)}: {_smallest_problem(ctx, profile, stop_loss)}"
        )
    score, width, levels, fit_stats = chosen
    config = _around(ctx.price, width, levels, ctx, stop_loss)

    held: dict[str, Any] | None = None
    if holdout is not None:
        hp = holdout.price(holdout.open[0])
        stats = backtest_stats(grid_for(_around(hp, width, levels, ctx, stop_loss), ctx), holdout)
        stats.pop("equity_curve", None)
        held = {"from": iso(int(holdout.time_ms[0])),
                "to": iso(int(holdout.time_ms[-1]) + MINUTE_MS), **stats}  # fmt: skip
    width_pct = plain(width * 100)
    fit_from, fit_to = iso(int(fit.time_ms[0])), iso(int(fit.time_ms[-1]) + MINUTE_MS)
    reasoning = (
        f"Quantitative baseline, not Claude: of {tried} valid grids (among "
        f"{len(profile.search_widths)} range widths from {_pct(profile.search_widths[0])} to "
        f"{_pct(profile.search_widths[-1])}, the {profile.label.lower()} band, × "
        f"{len(level_choices(ctx.min_levels, ctx.max_levels))} line counts) fitted on "
        f"{fit_from[:10]} .. {fit_to[:10]}, a range {_pct(width)} wide with "
        f"{levels} lines scored best (profit {money(fit_stats['total_profit'])} {ctx.quote}, "
        f"max drawdown {pct(Decimal(fit_stats['max_drawdown']))}, counted "
        f"{plain(penalty)} times against it)."
    )
    if held and "total_profit" in held:
        reasoning += (
            f" On the newer {held['from'][:10]} .. {held['to'][:10]}, which the fit never saw, "
            f"it made {money(held['total_profit'])} {ctx.quote} with the price in its range "
            f"{pct(Decimal(held['time_in_range']))} of the time."
        )
    reasoning += (
        f" Centred on the current price {price_at_tick(ctx.price, ctx.tick)}, "
        f"with a stop-loss {plain(Decimal(stop_loss))} % below the range."
    )
    suggestion = {
        "grid_lower": config["lower_bound"],
        "grid_upper": config["upper_bound"],
        "num_levels": levels,
        "spacing": "arithmetic",
        "stop_loss_pct": stop_loss,
        "take_profit": None,
        "confidence": None,  # from the held-out check, once it has run
        "stated_confidence": None,
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


def _problem(config: dict[str, str], ctx: AdvisorContext, profile: RiskProfile) -> str | None:
    return check_config(config, ctx) or profile_problem(config, profile, ctx.price, ctx.fee)


def _stop_loss(profile: RiskProfile, current: dict[str, str] | None) -> str:
    """The bot's own stop-loss when it fits the risk band, else the band's default."""
    own = Decimal((current or {}).get("stop_loss_pct") or "0")
    low, high = profile.stop_loss
    return plain(own if low <= own <= high and own > 0 else profile.default_stop_loss)


def _smallest_problem(ctx: AdvisorContext, profile: RiskProfile, stop_loss: str) -> str:
    config = _around(ctx.price, profile.search_widths[-1], ctx.min_levels, ctx, stop_loss)
    return _problem(config, ctx, profile) or "no usable grid"


def _pct(fraction: Decimal) -> str:
    return f"{plain(fraction * 100)} %"
