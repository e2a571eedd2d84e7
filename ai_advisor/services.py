"""The advisor: market context → Claude → validated suggestion → backtested → the user decides.

`create_run` checks the throttle and the inputs and stores an `AdvisorRun`; `execute_run`
builds the context from market/ (never credentials, never who the user is), asks Claude
(or, without an API key, runs the quantitative baseline alone and says so: ``baseline``),
checks the suggestion against the market and the trader's risk band (``suggestions``,
``profiles``), backtests it beside the bot's current config and the baseline on the last 7 and
30 days of stored candles (``comparison``), scores its confidence on the held-out candles
(``comparison.held_out``, ``confidence``), and stores all of it. `accept_run` / `reject_run`
record the user's decision; only an accepted run changes a bot, through bots.services.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx2
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ai_advisor.baseline import baseline_search
from ai_advisor.client import (
    AdvisorError,
    ClaudeAdvisor,
    InvalidSuggestion,
    MalformedSuggestion,
)
from ai_advisor.comparison import compare, held_out, window_candles
from ai_advisor.confidence import assess
from ai_advisor.errors import AdviceError, DecisionError, NeedsConfirmation, Throttled
from ai_advisor.models import AdvisorRun
from ai_advisor.profiles import ALIASES
from ai_advisor.prompt import AdvisorContext, RiskLevel, context_json
from ai_advisor.suggestions import check_suggestion, suggestion_json
from aibo import limits, metrics
from bots import config as schema
from bots import services as bot_services
from bots.errors import BotError
from bots.grid.params import InvalidGrid
from bots.models import Bot
from market import indicators
from market.indicators import MarketSnapshot
from market.precision import canonical, plain
from market.services import MarketDataError

logger = logging.getLogger(__name__)

RISKS: tuple[RiskLevel, ...] = ("low", "medium", "high")
# Tests and proxies replace this: the httpx2.Client the Anthropic SDK should use (None: its own).
HTTP_CLIENT_FACTORY: Callable[[], httpx2.Client | None] = lambda: None  # noqa: E731


def claude_configured() -> bool:
    return bool(settings.ANTHROPIC_API_KEY)


# --- asking ---------------------------------------------------------------------------------


def check_throttle(owner: Any) -> None:
    """At most settings.ADVISOR_RATE_PER_HOUR runs per user in any hour (counted in the DB,
    so every web process and worker sees the same count)."""
    mine = AdvisorRun.objects.owned_by(owner)
    at_once = settings.ADVISOR_RUNS_AT_ONCE
    active = (AdvisorRun.Status.QUEUED, AdvisorRun.Status.RUNNING)
    if limits.under_way(mine, active=active) >= at_once:
        raise Throttled(
            f"You have {at_once} advisor runs under way; ask again when one has answered.",
            retry_after=10,
        )
    limit = settings.ADVISOR_RATE_PER_HOUR
    wait = limits.hourly_wait(mine, limit)
    if wait is not None:
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
    risk = ALIASES.get(risk, risk)
    if risk not in RISKS:
        raise AdviceError(
            "The risk preference must be conservative, moderate or aggressive "
            "(or as the API says them: low, medium or high)."
        )
    try:
        amount = schema.check_capital(schema.number(str(capital).replace(",", ""), "capital"))
        rules = schema.rules_for(exchange, symbol)
        if current is not None:
            schema.grid_config_for(current, exchange=exchange, symbol=symbol)
    except BotError as e:
        raise AdviceError(e.sentence()) from None
    if owner is not None and throttle:
        check_throttle(owner)
    smallest = schema.capital_floor(rules, settings.GRID_MIN_LEVELS)
    if amount < smallest:
        raise AdviceError(
            f"A grid of {settings.GRID_MIN_LEVELS} lines on {symbol} needs at least "
            f"{plain(smallest)} {symbol.split('/')[1]}: each order must reach the exchange's "
            f"minimum of {plain(canonical(rules.min_notional))}."
        )
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
        capital=canonical(amount),
        risk_preference=risk,
        inputs=inputs,
        source=AdvisorRun.Source.CLAUDE if claude_configured() else AdvisorRun.Source.BASELINE,
    )


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
    metrics.ADVISOR_CALLS.labels(run.source, run.status).inc()
    if run.cost_usd:
        metrics.ADVISOR_COST.inc(float(run.cost_usd))
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
    # The confidence shown is earned on the held-out candles; the model's own is an input.
    backtests["held_out"] = held_out(ctx, candles, suggestion["config"])
    confidence = assess(
        backtests["held_out"], quote=ctx.quote, stated=suggestion.get("stated_confidence")
    )
    suggestion = {
        **suggestion,
        "confidence": confidence.score,
        "confidence_reasons": confidence.reasons,
    }
    _save(
        run,
        suggestion=suggestion,
        backtests=backtests,
        status=AdvisorRun.Status.DONE,
        finished_at=timezone.now(),
    )


def _extra_inputs(run: AdvisorRun) -> dict[str, Any]:
    """What the caller gave besides the context: kept beside it."""
    return {k: run.inputs[k] for k in ("client_hints", "compare_config") if k in run.inputs}


# --- the context ----------------------------------------------------------------------------


def market_snapshot(exchange: str, symbol: str) -> MarketSnapshot:
    """The market's indicators now (a seam: tests give a fixed snapshot)."""
    return indicators.market_snapshot(exchange, symbol)


def current_config_of(run: AdvisorRun) -> dict[str, str] | None:
    """The bot's config (only the grid's own keys), or the API's range, or None."""
    source = run.bot.config if run.bot is not None else run.inputs.get("compare_config")
    if not source:
        return None
    config = schema.normalise({k: source.get(k) for k in schema.KEYS})
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
        # The extensions only when set: a grid without them reads as before.
        if current.get("trigger_price"):
            prompt_config["trigger_price"] = Decimal(current["trigger_price"])
        for side in ("up", "down"):
            if current.get(f"trailing_{side}") == "true":
                prompt_config[f"trailing_{side}"] = True
                if limit := current.get(f"trailing_{side}_limit"):
                    prompt_config[f"trailing_{side}_limit"] = Decimal(limit)
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
        min_price=canonical(rules.min_price),
        max_price=canonical(rules.max_price),
    )


def _d(value: Any) -> Decimal:
    return canonical(value if isinstance(value, Decimal) else Decimal(str(value)))


# --- the decision ---------------------------------------------------------------------------


def accept_run(run: AdvisorRun, *, confirm_restart: bool = False, name: str = "") -> Bot:
    """Apply the suggestion: a stopped bot's config is updated; a running one gets the new grid
    laid on it (after confirmation: ``bots.services.regrid_bot``, its history and coins kept),
    all in one transaction so a failure anywhere leaves the bot as it was; without a bot, a new
    stopped bot is created. Settings the suggestion leaves unset keep the trader's values."""
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
                # The daily loss limit is the trader's, not the advisor's: keep it. What the
                # suggestion leaves unset (take-profit, say) stays as the trader set it.
                config["max_daily_loss"] = bot.config.get("max_daily_loss") or "0"
                config = {k: v for k, v in config.items() if v not in (None, "")}
                if bot.is_running and bot.mode == Bot.Mode.LIVE:
                    raise DecisionError(
                        f"{bot} is trading live: stop it first, then accept. aibo does not "
                        "cancel and re-buy on an exchange inside one step."
                    )
                if bot.is_running:
                    if not confirm_restart:
                        raise NeedsConfirmation(
                            f"{bot} is running: accepting cancels its orders and lays the new "
                            "grid, keeping its history and the coins it holds (only the "
                            "difference is bought or sold at market)."
                        )
                    bot_services.regrid_bot(bot, config)
                else:
                    bot_services.update_bot_config(bot, bot.config | config)
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
