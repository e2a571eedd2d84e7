"""The confidence the advisor shows, from the held-out backtest, never from a model's own word.

A grid is believed as far as it earned on candles it was not fitted to: the held-out
period's time in range, scaled by how its daily return held up against the fitting
period's, then capped low (with the reason in plain words) when it lost money, hit its
stop-loss, made no round trip, left its range most of the time, or fell far short of the
fit. Claude's own figure is one more cap, never a floor: it can lower the score, not raise it.
Pure: no Django, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bots.templatetags.money import format_money, pct

# The caps and why: a held-out loss is worth little whatever the fit said.
CAP_NO_HOLDOUT = 30
CAP_CANNOT_RUN = 10
CAP_STOPPED = 15
CAP_LOSS = 25
CAP_NO_TRADES = 30
CAP_FAR_BELOW_FIT = 50
CAP_OUT_OF_RANGE = 50
FAR_BELOW = Decimal("0.5")  # held-out daily return below half the fitted one
MOSTLY_OUT = Decimal("0.5")  # in range less than half the held-out time


@dataclass
class Confidence:
    score: int  # 0..100, what is shown and what the API answers
    reasons: list[str] = field(default_factory=list)  # why, in plain words; first one first
    stated: int | None = None  # Claude's own figure, an input only


def _d(value: Any) -> Decimal:
    return Decimal(str(value))


def _per_day(result: dict[str, Any]) -> Decimal | None:
    days = _d(result.get("days") or 0)
    if days <= 0 or "return" not in result:
        return None
    return _d(result["return"]) / days


def _period(result: dict[str, Any]) -> str:
    return f"{result['from'][:10]} .. {result['to'][:10]}"


def assess(held: dict[str, Any], *, quote: str, stated: int | None = None) -> Confidence:
    """`held` is ``comparison.held_out``'s answer: the grid's shape run on the fitting period
    and on the held-out one."""
    fit, out = held.get("fit"), held.get("holdout")
    caps: list[tuple[int, str]] = []

    def cap(at: int, why: str) -> None:
        caps.append((at, why))

    if not out:
        score = CAP_NO_HOLDOUT
        cap(score, "Too few candles are stored to hold any back, so the grid could not be "
            "tested on data it was not fitted to.")  # fmt: skip
    elif "error" in out:
        score = CAP_CANNOT_RUN
        cap(score, f"Placed at the price of {out['from'][:10]}, the start of the held-out days, "
            f"this grid could not run: {out['error']}.")  # fmt: skip
    else:
        in_range = _d(out["time_in_range"])
        ret = _d(out["return"])
        made = format_money(out["total_profit"], quote, signed=True)
        held_daily = _per_day(out)
        fit_daily = _per_day(fit) if fit and "error" not in fit else None
        keeps = Decimal(1)
        if fit_daily is not None and fit_daily > 0 and held_daily is not None:
            keeps = min(Decimal(1), max(Decimal(0), held_daily / fit_daily))
        score = int((in_range * (Decimal("0.5") + keeps / 2) * 100).to_integral_value())
        where = f"on the held-out {_period(out)}"
        if out.get("stopped"):
            cap(CAP_STOPPED, f"Its stop-loss was hit {where}: the bot would have sold "
                f"everything and stopped ({made}).")  # fmt: skip
        if ret < 0:
            cap(CAP_LOSS, f"It lost money {where}, data it was not fitted to: {made} "
                f"({pct(ret)}).")  # fmt: skip
        elif not out.get("total_trades"):
            cap(CAP_NO_TRADES, f"It completed no round trip {where}.")
        elif fit and fit_daily and held_daily is not None and held_daily < fit_daily * FAR_BELOW:
            fitted = f"{pct(fit_daily)} a day on {_period(fit)}, the days it was fitted to"
            cap(CAP_FAR_BELOW_FIT, f"It earned {pct(held_daily)} a day {where}, far below the "
                f"{fitted}.")  # fmt: skip
        if in_range < MOSTLY_OUT:
            cap(CAP_OUT_OF_RANGE, f"The price was inside its range only {pct(in_range)} of the "
                f"time {where}.")  # fmt: skip
        if not caps:
            cap(score, f"It made {made} ({pct(ret)}) {where}, data it was not fitted to, with "
                f"the price in its range {pct(in_range)} of the time.")  # fmt: skip
    reasons = [why for _, why in sorted(caps, key=lambda c: c[0])]
    score = min([score, *(at for at, _ in caps)])
    if stated is not None and stated < score:
        score = stated
        reasons.append(f"Claude rated it lower ({stated}), and the lower figure is kept.")
    elif stated is not None:
        reasons.append(f"Claude's own estimate was {stated}; it counts only when it is lower.")
    return Confidence(score=max(0, min(100, score)), reasons=reasons, stated=stated)
