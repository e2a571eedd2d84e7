"""What the trader's risk choice means in numbers, for Claude's prompt, the check of Claude's
answer and the quantitative baseline alike. Pure: no Django, no I/O.

Conservative, moderate and aggressive are stored as low, medium and high (the API's words).
The bands of range width only touch, and the widths the baseline tries in each are apart, so
the three choices always give three different grids on the same market.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from market.precision import plain

RiskLevel = Literal["low", "medium", "high"]


@dataclass(frozen=True, slots=True)
class RiskProfile:
    level: RiskLevel
    label: str  # what the trader picks: Conservative, Moderate, Aggressive
    # (upper - lower) / price, the whole range as a fraction of the current price
    width: tuple[Decimal, Decimal]
    # The narrowest grid must earn at least this many round-trip fees.
    min_grid_fees: Decimal
    # stop_loss_pct (percent below the lower price); 0 (none) only where the band starts at 0
    stop_loss: tuple[Decimal, Decimal]
    # The baseline: the range widths it tries, its stop-loss when the bot's own is outside the
    # band, and how much of the max drawdown it takes off the fitted return when scoring.
    search_widths: tuple[Decimal, ...]
    default_stop_loss: Decimal
    drawdown_penalty: Decimal
    aim: str  # one sentence, what the choice is for

    def summary(self) -> str:
        """The band in a few words, for the choice itself: "range 10-30 % wide, stop-loss
        2-5 %"."""
        lo, hi = self.width
        sl_lo, sl_hi = self.stop_loss
        stop = (
            f"{plain(sl_lo)}-{plain(sl_hi)} %" if sl_lo > 0 else f"up to {plain(sl_hi)} % or none"
        )
        return f"range {plain(lo * 100)}-{plain(hi * 100)} % wide, stop-loss {stop}"

    def describe(self, fee: Decimal) -> str:
        """The band in words and numbers (the prompt and the page say the same)."""
        lo, hi = self.width
        sl_lo, sl_hi = self.stop_loss
        stop = (
            f"a stop-loss {plain(sl_lo)}-{plain(sl_hi)} % below the lower price"
            if sl_lo > 0
            else f"a stop-loss of at most {plain(sl_hi)} % below the lower price, or none"
        )
        return (
            f"{self.label}: a range {plain(lo * 100)}-{plain(hi * 100)} % of the price wide, "
            f"each grid earning at least {plain(self.min_grid_fees)} x the round-trip fee "
            f"({plain(self.min_grid_fees * 2 * fee * 100)} %), {stop}. {self.aim}"
        )


PROFILES: dict[str, RiskProfile] = {
    "low": RiskProfile(
        level="low",
        label="Conservative",
        width=(Decimal("0.10"), Decimal("0.30")),
        min_grid_fees=Decimal("2.5"),
        stop_loss=(Decimal(2), Decimal(5)),
        search_widths=(Decimal("0.12"), Decimal("0.16"), Decimal("0.20"), Decimal("0.25")),
        default_stop_loss=Decimal(3),
        drawdown_penalty=Decimal(2),
        aim="Stays in range through large swings and cuts a fall early; fewer, fatter trades.",
    ),
    "medium": RiskProfile(
        level="medium",
        label="Moderate",
        width=(Decimal("0.05"), Decimal("0.10")),
        min_grid_fees=Decimal("1.5"),
        stop_loss=(Decimal(3), Decimal(8)),
        search_widths=(Decimal("0.055"), Decimal("0.065"), Decimal("0.08"), Decimal("0.10")),
        default_stop_loss=Decimal(6),
        drawdown_penalty=Decimal(1),
        aim="Covers the usual week's moves with a balance of trade count and room.",
    ),
    "high": RiskProfile(
        level="high",
        label="Aggressive",
        width=(Decimal("0.015"), Decimal("0.05")),
        min_grid_fees=Decimal(1),
        stop_loss=(Decimal(0), Decimal(10)),
        search_widths=(Decimal("0.02"), Decimal("0.03"), Decimal("0.04"), Decimal("0.05")),
        default_stop_loss=Decimal(10),
        drawdown_penalty=Decimal("0.5"),
        aim="Trades often in a tight range; the price leaves it sooner and a fall goes further.",
    ),
}

# The trader's words for the stored levels, accepted wherever a level is.
ALIASES = {"conservative": "low", "moderate": "medium", "aggressive": "high"}

# A range rounded to the tick may miss a band's edge by a hair: that is still inside.
_SLACK = Decimal("0.001")


def profile_for(level: str) -> RiskProfile:
    return PROFILES[ALIASES.get(level, level)]


def shape_of(config: dict[str, Any], price: Decimal, fee: Decimal) -> dict[str, Decimal]:
    """A grid config as the risk bands measure it: its width as a fraction of the price, its
    narrowest grid's gain in round-trip fees, its stop-loss percent."""
    lower, upper = Decimal(config["lower_bound"]), Decimal(config["upper_bound"])
    levels = int(config["grid_levels"])
    if config.get("spacing") == "geometric":
        gap = (upper / lower) ** (Decimal(1) / (levels - 1)) - 1
        narrowest = gap / (1 + gap)  # as a share of the price it sells at
    else:
        narrowest = (upper - lower) / (levels - 1) / upper
    return {
        "width": (upper - lower) / price,
        "below": (price - lower) / price,
        "above": (upper - price) / price,
        "grid": narrowest,
        "grid_fees": narrowest / (2 * fee) if fee > 0 else Decimal(0),
        "stop_loss_pct": Decimal(config.get("stop_loss_pct") or 0),
    }


def profile_problem(
    config: dict[str, Any], profile: RiskProfile, price: Decimal, fee: Decimal
) -> str | None:
    """None when the config fits the risk choice; else why not, in words Claude can act on."""
    shape = shape_of(config, price, fee)
    lo, hi = profile.width
    width = shape["width"]
    name = profile.label.lower()
    if width < lo * (1 - _SLACK) or width > hi * (1 + _SLACK):
        return (
            f"for a {name} trader the range must be {plain(lo * 100)}-{plain(hi * 100)} % of the "
            f"current price wide; grid_lower..grid_upper is {_pct(width)} wide"
        )
    if fee > 0 and shape["grid_fees"] < profile.min_grid_fees * (1 - _SLACK):
        return (
            f"for a {name} trader each grid must earn at least {plain(profile.min_grid_fees)} x "
            f"the round-trip fee ({_pct(profile.min_grid_fees * 2 * fee)}); the narrowest "
            f"earns {_pct(shape['grid'])}: use fewer levels"
        )
    sl = shape["stop_loss_pct"]
    sl_lo, sl_hi = profile.stop_loss
    if not sl_lo <= sl <= sl_hi:
        return (
            f"for a {name} trader stop_loss_pct must be between {plain(sl_lo)} and {plain(sl_hi)}; "
            f"it is {plain(sl)}"
        )
    return None


def _pct(fraction: Decimal) -> str:
    return f"{(fraction * 100).quantize(Decimal('0.01')):f} %"
