"""The advisor: market context → Claude → validated suggestion → backtested → the user decides.

`create_run` checks the throttle and the inputs and stores an `AdvisorRun`; `execute_run`
builds the context from market/ (never credentials, never who the user is), asks Claude
(or, without an API key, runs the quantitative baseline alone and says so), backtests the
suggestion beside the bot's current config and the baseline on the last 7 and 30 days of
stored candles, and stores all of it. `accept_run` / `reject_run` record the user's
decision; only an accepted run changes a bot, through bots.services.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx2
import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ai_advisor.client import (
    AdvisorError,
    ClaudeAdvisor,
    InvalidSuggestion,
    MalformedSuggestion,
    RawSuggestion,
)
from ai_advisor.models import AdvisorRun
from ai_advisor.prompt import AdvisorContext, RiskLevel, context_json
from bots import backtest_runs
from bots import config as schema
from bots import services as bot_services
from bots.errors import BotError
from bots.grid.backtest import Candles, run_backtest
from bots.grid.engine import GridConfig, InvalidGrid
from bots.models import Bot
from market import indicators
from market import services as market_services
from market.indicators import MarketSnapshot
from market.precision import canonical, round_price
from market.services import MarketDataError

logger = logging.getLogger(__name__)

RISKS: tuple[RiskLevel, ...] = ("low", "medium", "high")
WINDOW_DAYS = (7, 30)
DAY_MS = 86_400_000
MINUTE_MS = 60_000
# The baseline's search: total range width around the price × number of lines.
BASELINE_WIDTHS = (Decimal("0.02"), Decimal("0.03"), Decimal("0.05"), Decimal("0.075"),
                   Decimal("0.10"), Decimal("0.15"), Decimal("0.20"))  # fmt: skip
BASELINE_LEVEL_STEPS = 6
# Score on the fitting period: return minus this many times the max drawdown.
DRAWDOWN_PENALTY = {"low": Decimal(2), "medium": Decimal(1), "high": Decimal("0.5")}
CURVE_POINTS = 60

# Tests and proxies replace this: the httpx2.Client the Anthropic SDK should use (None: its own).
HTTP_CLIENT_FACTORY: Callable[[], httpx2.Client | None] = lambda: None  # noqa: E731


class AdviceError(Exception):
    """Bad input for the advisor, or the market cannot be advised on; in words for the user."""


class Throttled(AdviceError):
    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def claude_configured() -> bool:
    return bool(settings.ANTHROPIC_API_KEY)


# --- asking ---------------------------------------------------------------------------------


def check_throttle(owner: Any) -> None:
    """At most settings.ADVISOR_RATE_PER_HOUR runs per user in any hour (counted in the DB,
    so every web process and worker sees the same count)."""
    limit = settings.ADVISOR_RATE_PER_HOUR
    recent = AdvisorRun.objects.owned_by(owner).within_last_hour()
    if recent.count() < limit:
        return
    oldest = recent.order_by("created_at").values_list("created_at", flat=True)[0]
    wait = max(60, int(3600 - (timezone.now() - oldest).total_seconds()))
    raise Throttled(
        f"You have asked the advisor {limit} times in the last hour, the limit. "
        f"Try again in {-(-wait // 60)} minute(s).",
        retry_after=wait,
    )


def create_run(
    owner: Any,
    *,
    symbol: str | None = None,
    capital: Any,
    risk: str = "medium",
    bot: Bot | None = None,
    exchange: str = "binance",
    current: dict[str, Any] | None = None,
    client_hints: dict[str, Any] | None = None,
    throttle: bool = True,
) -> AdvisorRun:
    """Check and store a question; `execute_run` answers it. `current` is a bot config to
    compare against when there is no bot (the API's range)."""
    if bot is not None:
        if owner is not None and bot.owner_id != owner.pk:
            raise AdviceError("That bot is not yours.")
        symbol, exchange = bot.symbol, bot.exchange
    if not symbol or "/" not in symbol:
        raise AdviceError("Give the pair as BASE/QUOTE, e.g. BTC/USDT.")
    if risk not in RISKS:
        raise AdviceError("The risk preference must be low, medium or high.")
    amount = _positive_decimal(capital, "capital")
    try:
        schema.rules_for(exchange, symbol)
    except BotError as e:
        raise AdviceError(str(e)) from None
    if owner is not None and throttle:
        check_throttle(owner)
    inputs: dict[str, Any] = {}
    if current is not None:
        inputs["compare_config"] = current
    if client_hints:
        inputs["client_hints"] = client_hints
    return AdvisorRun.objects.create(
        owner=owner,
        bot=bot,
        exchange=exchange,
        symbol=symbol,
        capital=amount,
        risk_preference=risk,
        inputs=inputs,
        source=AdvisorRun.Source.CLAUDE if claude_configured() else AdvisorRun.Source.BASELINE,
    )


def _positive_decimal(value: Any, name: str) -> Decimal:
    try:
        d = Decimal(str(value).strip().replace(",", ""))
    except (InvalidOperation, ValueError, TypeError):
        raise AdviceError(f"The {name} must be a number.") from None
    if not d.is_finite() or d <= 0:
        raise AdviceError(f"The {name} must be above 0.")
    return canonical(d)


def execute_run(run: AdvisorRun | int, *, http_client: httpx2.Client | None = None) -> AdvisorRun:
    """Answer a stored question; every outcome, failures included, ends up on the run."""
    if isinstance(run, int):
        run = AdvisorRun.objects.select_related("bot").get(pk=run)
    if run.status not in (AdvisorRun.Status.QUEUED, AdvisorRun.Status.RUNNING):
        return run  # answered already: a retried task changes nothing
    _save(run, status=AdvisorRun.Status.RUNNING)
    try:
        _execute(run, http_client=http_client)
    except (AdviceError, AdvisorError) as e:
        _save(run, status=AdvisorRun.Status.FAILED, error=_message(e)[:500],
              finished_at=timezone.now())  # fmt: skip
    except Exception:
        logger.exception("advisor run %s failed", run.pk)
        _save(run, status=AdvisorRun.Status.FAILED, finished_at=timezone.now(),
              error="The advisor failed unexpectedly; the log has the details.")  # fmt: skip
    return run


def _message(e: Exception) -> str:
    return e.message if isinstance(e, AdvisorError) else str(e)


def _save(run: AdvisorRun, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(run, name, value)
    run.save(update_fields=list(fields))


def _execute(run: AdvisorRun, *, http_client: httpx2.Client | None) -> None:
    current = current_config_of(run)
    ctx = build_context(run, current=current)
    _save(run, inputs={**context_json(ctx), **_extra_inputs(run)})
    candles, windows = window_candles(ctx)
    baseline = baseline_search(ctx, candles, current=current)

    if run.source == AdvisorRun.Source.BASELINE:
        suggestion = baseline.suggestion
        _save(run, model="", validation="ok", suggestion=suggestion)
    else:
        advisor = ClaudeAdvisor(
            api_key=settings.ANTHROPIC_API_KEY,
            model=settings.ANTHROPIC_MODEL,
            timeout_s=getattr(settings, "ANTHROPIC_TIMEOUT_SECONDS", 30),
            http_client=http_client if http_client is not None else HTTP_CLIENT_FACTORY(),
        )
        try:
            result = advisor.suggest(ctx, validate=lambda s: check_suggestion(s, ctx))
        except (InvalidSuggestion, MalformedSuggestion) as e:
            invalid = isinstance(e, InvalidSuggestion)
            rejected = suggestion_json(e.suggestion, ctx) if invalid else None
            _save(run, model=settings.ANTHROPIC_MODEL, validation=e.reason[:500],
                  suggestion=rejected)  # fmt: skip
            raise
        finally:
            advisor.close()
        suggestion = suggestion_json(result.suggestion, ctx)
        _save(
            run,
            model=result.model,
            raw_response=result.raw_response,
            validation="ok",
            suggestion=suggestion,
            attempts=result.attempts,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            cost_usd=result.cost_usd,
            latency_ms=result.latency_ms,
        )

    candidates: list[tuple[str, str, dict[str, Any]]] = [
        (
            "suggestion",
            "Claude's suggestion"
            if run.source == AdvisorRun.Source.CLAUDE
            else "Quantitative baseline (suggested)",
            suggestion["config"],
        )
    ]
    if current is not None:
        candidates.append(("current", "Current config", current))
    if run.source == AdvisorRun.Source.CLAUDE:
        candidates.append(("baseline", "Quantitative baseline", baseline.suggestion["config"]))
    backtests = compare(ctx, candles, windows, candidates)
    backtests["baseline"] = baseline.report
    _save(run, backtests=backtests, status=AdvisorRun.Status.DONE, finished_at=timezone.now())


def _extra_inputs(run: AdvisorRun) -> dict[str, Any]:
    """What the caller gave besides the context: kept beside it."""
    return {k: run.inputs[k] for k in ("client_hints", "compare_config") if k in run.inputs}


# --- the context ----------------------------------------------------------------------------


def market_snapshot(exchange: str, symbol: str) -> MarketSnapshot:
    """The market's indicators now (a seam: tests give a fixed snapshot)."""
    return indicators.market_snapshot(exchange, symbol)


CONFIG_KEYS = ("capital", "lower_bound", "upper_bound", "grid_levels", "spacing",
               "stop_loss_pct", "max_daily_loss", "take_profit")  # fmt: skip


def current_config_of(run: AdvisorRun) -> dict[str, str] | None:
    """The bot's config (only the grid's own keys), or the API's range, or None."""
    source = run.bot.config if run.bot is not None else run.inputs.get("compare_config")
    if not source:
        return None
    config = schema.normalise({k: source.get(k) for k in CONFIG_KEYS})
    if not (config["lower_bound"] and config["upper_bound"] and config["grid_levels"]):
        return None
    return config


def build_context(run: AdvisorRun, *, current: dict[str, str] | None) -> AdvisorContext:
    try:
        snap = market_snapshot(run.exchange, run.symbol)
    except MarketDataError as e:
        raise AdviceError(f"Not enough market data for {run.symbol}: {e}") from None
    try:
        rules = schema.rules_for(run.exchange, run.symbol)
    except BotError as e:
        raise AdviceError(str(e)) from None
    base, quote = run.symbol.split("/")
    prompt_config = None
    if current is not None:
        take_profit = current.get("take_profit") or None
        prompt_config = {
            "lower": Decimal(current["lower_bound"]),
            "upper": Decimal(current["upper_bound"]),
            "levels": int(current["grid_levels"]),
            "spacing": current["spacing"],
            "stop_loss_pct": Decimal(current["stop_loss_pct"] or "0"),
            "take_profit": Decimal(take_profit) if take_profit else None,
        }
    return AdvisorContext(
        exchange=run.exchange,
        symbol=run.symbol,
        base=base,
        quote=quote,
        price=_d(snap.price),
        rsi14=_d(snap.rsi14),
        volatility_daily=_d(snap.volatility_daily),
        atr14=_d(snap.atr14),
        support=_d(snap.support),
        resistance=_d(snap.resistance),
        volume_24h=(_d(snap.volume_24h_base), _d(snap.volume_24h_quote)),
        range_7d=(_d(snap.range_7d[0]), _d(snap.range_7d[1])),
        range_30d=(_d(snap.range_30d[0]), _d(snap.range_30d[1])),
        tick=canonical(rules.tick),
        step=canonical(rules.step),
        min_notional=canonical(rules.min_notional),
        fee=canonical(rules.fee),
        capital=canonical(run.capital),
        risk_preference=run.risk_preference,  # type: ignore[arg-type]
        min_levels=settings.GRID_MIN_LEVELS,
        max_levels=settings.GRID_MAX_LEVELS,
        current_config=prompt_config,
    )


def _d(value: Any) -> Decimal:
    return canonical(value if isinstance(value, Decimal) else Decimal(str(value)))


# --- validation -----------------------------------------------------------------------------


def suggestion_config(s: RawSuggestion, ctx: AdvisorContext) -> dict[str, str]:
    """The bot config a suggestion stands for (bounds on the tick, the context's capital)."""
    return schema.normalise(
        {
            "capital": ctx.capital,
            "lower_bound": canonical(round_price(s.grid_lower, ctx.tick)),
            "upper_bound": canonical(round_price(s.grid_upper, ctx.tick)),
            "grid_levels": s.num_levels,
            "spacing": s.spacing,
            "stop_loss_pct": canonical(s.stop_loss_pct),
            "max_daily_loss": "",  # the trader's own limit: accepting keeps the bot's
            "take_profit": canonical(s.take_profit) if s.take_profit is not None else "",
        }
    )


def grid_for(config: dict[str, str], ctx: AdvisorContext) -> GridConfig:
    """The engine's GridConfig for a config under the context's market rules."""
    take_profit = config.get("take_profit")
    base, quote = ctx.symbol.split("/")
    try:
        return GridConfig(
            lower=Decimal(config["lower_bound"]),
            upper=Decimal(config["upper_bound"]),
            levels=int(config["grid_levels"]),
            spacing=config.get("spacing") or "arithmetic",  # type: ignore[arg-type]
            capital=Decimal(config["capital"]),
            fee=ctx.fee,
            tick=ctx.tick,
            step=ctx.step,
            min_notional=ctx.min_notional,
            stop_loss_pct=Decimal(config.get("stop_loss_pct") or "0"),
            take_profit=Decimal(take_profit) if take_profit else None,
            min_levels=ctx.min_levels,
            max_levels=ctx.max_levels,
            base_asset=base,
            quote_asset=quote,
        )
    except (KeyError, ArithmeticError, TypeError) as e:
        raise InvalidGrid(f"not a usable config: {e}") from None


def check_config(config: dict[str, str], ctx: AdvisorContext) -> str | None:
    """None when the config is a grid that can run at the current price; else why not."""
    try:
        grid = grid_for(config, ctx)
    except InvalidGrid as e:
        return str(e)
    price = ctx.price
    if not grid.lower < price < grid.upper:
        return (
            f"the range {grid.lower} .. {grid.upper} must contain the current price {price}: "
            "grid_lower below it and grid_upper above it"
        )
    try:
        grid.order_amount(price)
    except InvalidGrid as e:
        return str(e)
    # The narrowest grid, as a share of the price it sells at, must beat the round trip's fees.
    lines = grid.lines
    gap, top = min(((hi - lo) / hi, hi) for lo, hi in zip(lines, lines[1:], strict=False))
    if gap <= 2 * ctx.fee:
        return (
            f"the narrowest grid (just below {top}) earns {_pct(gap)} per round trip, which does "
            f"not beat the round-trip fee of {_pct(2 * ctx.fee)}; use fewer levels or a wider range"
        )
    return None


def check_suggestion(s: RawSuggestion, ctx: AdvisorContext) -> str | None:
    return check_config(suggestion_config(s, ctx), ctx)


def _pct(fraction: Decimal) -> str:
    return f"{(fraction * 100).quantize(Decimal('0.001')).normalize():f} %"


def suggestion_json(s: RawSuggestion, ctx: AdvisorContext) -> dict[str, Any]:
    return {
        "grid_lower": _plain(s.grid_lower),
        "grid_upper": _plain(s.grid_upper),
        "num_levels": s.num_levels,
        "spacing": s.spacing,
        "stop_loss_pct": _plain(s.stop_loss_pct),
        "take_profit": _plain(s.take_profit) if s.take_profit is not None else None,
        "confidence": s.confidence,
        "risk_level": s.risk_level,
        "reasoning": s.reasoning,
        "config": suggestion_config(s, ctx),
    }


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}"


# --- candles and backtests ------------------------------------------------------------------


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
        "total_profit": _plain(r.total_profit),
        "return": _plain((r.total_profit / grid.capital).quantize(Decimal("0.000001"))),
        "grid_profit": _plain(r.grid_profit),
        "total_trades": r.total_trades,
        "fills": r.fills,
        "max_drawdown": _plain(r.max_drawdown.quantize(Decimal("0.000001"))),
        "time_in_range": _plain(r.time_in_range.quantize(Decimal("0.0001"))),
        "stopped": r.stopped,
        "start_price": _plain(r.start_price),
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
            "from": _iso(int(candles.time_ms[w.start])),
            "to": _iso(int(candles.time_ms[-1]) + MINUTE_MS),
            "covered_days": _plain(w.covered_days),
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
        except InvalidGrid as e:
            results = {str(w.days): {"error": str(e)} for w in windows}
        else:
            for w in windows:
                results[str(w.days)] = backtest_stats(grid, candles.slice(w.start, len(candles)))
        out.append({"key": key, "label": label, "config": config, "results": results})
    return {"windows": out_windows, "candidates": out}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


# --- the quantitative baseline --------------------------------------------------------------


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
                "total_profit": _plain(r.total_profit), "max_drawdown": _plain(
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
        held = {"from": _iso(int(holdout.time_ms[0])),
                "to": _iso(int(holdout.time_ms[-1]) + MINUTE_MS), **stats}  # fmt: skip
    in_range = Decimal(held["time_in_range"]) if held and "time_in_range" in held else None
    confidence = int((in_range or Decimal("0.5")) * 100)
    width_pct = _plain(width * 100)
    fit_from, fit_to = _iso(int(fit.time_ms[0])), _iso(int(fit.time_ms[-1]) + MINUTE_MS)
    reasoning = (
        f"Quantitative baseline, not Claude: of {tried} valid grids (among "
        f"{len(BASELINE_WIDTHS)} range widths from 2 % to 20 % × "
        f"{len(level_choices(ctx.min_levels, ctx.max_levels))} line counts) fitted on "
        f"{fit_from[:10]} .. {fit_to[:10]}, a range {width_pct} % wide with "
        f"{levels} lines scored best for a {ctx.risk_preference} risk preference (profit "
        f"{_money(fit_stats['total_profit'])} {ctx.quote}, max drawdown "
        f"{_pct(Decimal(fit_stats['max_drawdown']))})."
    )
    if held and "total_profit" in held:
        reasoning += (
            f" On the newer {held['from'][:10]} .. {held['to'][:10]}, which the fit never saw, "
            f"it made {_money(held['total_profit'])} {ctx.quote} with the price in its range "
            f"{_pct(Decimal(held['time_in_range']))} of the time."
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
            "score": _plain(score.quantize(Decimal("0.000001"))),
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


def _money(value: str) -> str:
    return f"{Decimal(value).quantize(Decimal('0.01')):+,}"


# --- the decision ---------------------------------------------------------------------------


class DecisionError(AdviceError):
    """The decision cannot be carried out; nothing about the bot changed."""


class NeedsConfirmation(DecisionError):
    """The bot is running: accepting restarts it, which the user must confirm."""


def accept_run(run: AdvisorRun, *, confirm_restart: bool = False, name: str = "") -> Bot:
    """Apply the suggestion: a stopped bot's config is updated; a running one is stopped,
    updated and started again on the new grid (after confirmation), all in one transaction so
    a failure anywhere leaves the bot as it was; without a bot, a new stopped bot is created."""
    if not run.can_decide:
        raise DecisionError("This advice cannot be accepted: " + _why_not(run))
    assert run.suggestion is not None
    config = dict(run.suggestion["config"])
    bot = _accept(run, config, confirm_restart=confirm_restart, name=name)
    run.refresh_from_db()
    bot.refresh_from_db()
    return bot


def _accept(run: AdvisorRun, config: dict[str, Any], *, confirm_restart: bool, name: str) -> Bot:
    with transaction.atomic():
        locked = AdvisorRun.objects.select_for_update().get(pk=run.pk)
        if not locked.can_decide:
            raise DecisionError("This advice cannot be accepted: " + _why_not(locked))
        bot = Bot.objects.select_for_update().filter(pk=run.bot_id).first() if run.bot_id else None
        try:
            if bot is None:
                if run.owner is None:
                    raise DecisionError("An operator's advice has no owner to create a bot for.")
                bot = bot_services.create_bot(
                    run.owner, symbol=run.symbol, exchange=run.exchange, config=config, name=name
                )
                locked.bot = bot
            else:
                # The daily loss limit is the trader's, not the advisor's: keep it.
                config["max_daily_loss"] = bot.config.get("max_daily_loss") or "0"
                if bot.is_running and bot.mode == Bot.Mode.LIVE:
                    raise DecisionError(
                        f"{bot} is trading live: stop it first, then accept. aibo does not "
                        "cancel and re-buy on an exchange inside one step."
                    )
                if bot.is_running:
                    if not confirm_restart:
                        raise NeedsConfirmation(
                            f"{bot} is running: accepting cancels its orders, returns its "
                            "holdings to your paper wallet and starts it again on the new grid."
                        )
                    schema.validate(config, exchange=bot.exchange, symbol=bot.symbol)
                    bot_services.stop_bot(bot, reason="restarting on the advisor's grid")
                    bot.refresh_from_db()
                    bot_services.update_bot_config(bot, config)
                    bot_services.start_bot(bot)
                else:
                    bot_services.update_bot_config(bot, config)
        except (BotError, InvalidGrid) as e:
            raise DecisionError(str(e)) from None
        locked.decision = AdvisorRun.Decision.ACCEPTED
        locked.decided_at = timezone.now()
        locked.save(update_fields=["decision", "decided_at", "bot"])
    return bot


def reject_run(run: AdvisorRun, *, reason: str = "") -> None:
    if run.decision != AdvisorRun.Decision.PENDING:
        raise DecisionError(f"This advice was {run.get_decision_display().lower()} already.")
    updated = AdvisorRun.objects.filter(pk=run.pk, decision=AdvisorRun.Decision.PENDING).update(
        decision=AdvisorRun.Decision.REJECTED,
        decision_reason=reason.strip()[:500],
        decided_at=timezone.now(),
    )
    if not updated:
        raise DecisionError("This advice was decided already.")
    run.refresh_from_db()


def _why_not(run: AdvisorRun) -> str:
    if run.decision != AdvisorRun.Decision.PENDING:
        return f"it was {run.get_decision_display().lower()} already."
    if run.status == AdvisorRun.Status.FAILED:
        return "it failed."
    return "it is not finished yet."
