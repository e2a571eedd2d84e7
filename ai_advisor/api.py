"""The advisor in the JSON API: ``POST /api/ai/optimize`` and ``GET /api/ai/runs/{id}``.

Signed in like the rest of the API (a token, or the session with its CSRF token). Like the
page, it stores the run and hands it to Huey: Claude's call and the backtests take seconds and
never run in a web process. It answers 202 with the run's URL (also in ``Location``), which
answers 202 while the run works, then 200 with the suggestion or 502 with the error; where tasks
run in-line (the tests) the answer is there at once. Each client address may ask
``ADVISOR_RUNS_PER_CLIENT_PER_HOUR`` times an hour, each user ``ADVISOR_RATE_PER_HOUR``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Router, Schema, Status
from ninja.errors import HttpError
from pydantic import Field

from ai_advisor import services
from ai_advisor.models import AdvisorRun
from aibo.api_common import API_LIMITS, Error, Limit, Refused, errors
from bots import config as schema
from bots import pages
from bots.errors import ConfigError

router = Router(tags=["advisor"])

Number = Annotated[Decimal, Field(description="a number: a JSON number or a string")]


class OptimizeIn(Schema):
    pair: str | None = Field(default=None, max_length=30, examples=["BTC/USDT"])
    capital: Number
    current_price: Number | None = None
    lower_bound: Number | None = Field(default=None, description="the current grid's, if any")
    upper_bound: Number | None = None
    grid_levels: Number | None = None
    spacing: Literal["arithmetic", "geometric"] | None = None
    volatility: Number | None = None
    volume_24h: Number | None = None
    risk: Literal["low", "medium", "high", "conservative", "moderate", "aggressive"] | None = None
    bot: int | None = Field(default=None, description="one of your bots, to compare against")


class Advice(Schema):
    run_id: int
    source: str
    grid_lower: str | None
    grid_upper: str | None
    num_levels: int | None
    spacing: str | None
    stop_loss_pct: str | None
    take_profit: str | None
    confidence: int | None = Field(description="0..100, from the held-out backtest")
    confidence_reasons: list[str]
    stated_confidence: int | None = Field(description="Claude's own figure (it only lowers it)")
    reasoning: str | None
    risk: str
    risk_level: str | None
    config: dict[str, str] | None
    model: str
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: str | None
    latency_ms: int | None
    backtests: dict[str, Any] | None


class Pending(Schema):
    run_id: int
    status: str
    url: str


class Failed(Error):
    run_id: int
    validation: Any = None


ANSWERS = {200: Advice, 202: Pending, 502: Failed}


@router.post(
    "/optimize",
    response={**ANSWERS, **errors(400, 404, 422)},
    # Each run costs a call to Claude: a tighter limit per client address, checked first.
    throttle=[
        Limit("client", "ADVISOR_RUNS_PER_CLIENT_PER_HOUR", scope="advisor", window=3600),
        *API_LIMITS,
    ],
    summary="Ask the advisor",
)
def optimize(request: HttpRequest, payload: OptimizeIn, response: HttpResponse) -> Any:
    """The suggestion for ``pair`` (or ``bot``'s pair) and ``capital``; ``lower_bound``,
    ``upper_bound`` and ``grid_levels`` (or a ``bot``) are the grid it is compared against.
    ``current_price``, ``volatility`` and ``volume_24h`` are kept with the run as the client's
    view; the market facts come from aibo's own data."""
    try:
        run = _create_run(request, payload.dict(exclude_none=True))
    except services.Throttled as e:
        raise Refused(str(e), e.retry_after) from None
    except services.AdviceError as e:
        raise HttpError(422, str(e)) from None
    # The run is committed (no request-wide transaction): a worker answers it, never this
    # process.
    from ai_advisor.tasks import advise_task

    advise_task(run.pk)
    run.refresh_from_db()
    return _answer(run, response)


@router.get(
    "/runs/{run_id}",
    response={**ANSWERS, **errors(404)},
    url_name="advisor_run",
    summary="An advisor run, until it has answered",
)
def run(request: HttpRequest, run_id: int, response: HttpResponse) -> Any:
    found = AdvisorRun.objects.filter(pk=run_id, owner=request.auth).first()
    if found is None:
        raise HttpError(404, "No such advisor run.")
    return _answer(found, response)


def _answer(run: AdvisorRun, response: HttpResponse) -> Any:
    if run.status == AdvisorRun.Status.DONE:
        return payload(run)
    if run.status == AdvisorRun.Status.FAILED:
        return Status(502, {"detail": run.error, "run_id": run.pk, "validation": run.validation})
    url = reverse("api:advisor_run", args=[run.pk])
    response["Location"] = url
    response["Retry-After"] = "2"
    return Status(202, {"run_id": run.pk, "status": run.status, "url": url})


def _number(body: dict[str, Any], name: str) -> Decimal | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    try:
        d = schema.number(value, name)  # finite, of sane size: the config schema's own rule
    except ConfigError as e:
        raise services.AdviceError(f"{name} must be a number ({e}).") from None
    if d <= 0:
        raise services.AdviceError(f"{name} must be a number above 0.")
    return d


def _create_run(request: HttpRequest, body: dict[str, Any]) -> AdvisorRun:
    bot = None
    if body.get("bot") is not None:
        try:
            bot = pages.own_bot(request.auth, body["bot"])
        except Http404:
            raise HttpError(404, "No such bot.") from None
    pair = body.get("pair")
    if bot is None and (not isinstance(pair, str) or "/" not in pair):
        raise services.AdviceError("pair is required, as BASE/QUOTE, e.g. BTC/USDT.")
    capital = _number(body, "capital")
    lower, upper = _number(body, "lower_bound"), _number(body, "upper_bound")
    if lower is not None and upper is not None and lower >= upper:
        raise services.AdviceError("lower_bound must be below upper_bound.")
    hints = {
        name: str(value)
        for name in ("current_price", "volatility", "volume_24h")
        if (value := _number(body, name)) is not None
    }
    current = None
    if bot is None and lower is not None and upper is not None and body.get("grid_levels"):
        levels = _number(body, "grid_levels")
        if levels is None or levels > 10_000 or levels != levels.to_integral_value():
            raise services.AdviceError("grid_levels must be a whole number.")
        current = {
            "capital": str(capital), "lower_bound": str(lower), "upper_bound": str(upper),
            "grid_levels": str(int(levels)), "spacing": body.get("spacing") or "arithmetic",
        }  # fmt: skip
    elif lower is not None or upper is not None:
        hints.update({k: str(v) for k, v in (("lower_bound", lower), ("upper_bound", upper)) if v})
    return services.create_run(
        request.auth,
        symbol=pair if isinstance(pair, str) else None,
        capital=capital,
        risk=str(body.get("risk") or "medium"),
        bot=bot,
        current=current,
        client_hints=hints,
    )


def payload(run: AdvisorRun) -> dict[str, Any]:
    s = run.suggestion or {}
    return {
        "run_id": run.pk,
        "source": run.source,
        "grid_lower": s.get("grid_lower"),
        "grid_upper": s.get("grid_upper"),
        "num_levels": s.get("num_levels"),
        "spacing": s.get("spacing"),
        "stop_loss_pct": s.get("stop_loss_pct"),
        "take_profit": s.get("take_profit"),
        # 0..100 from the held-out backtest (why: confidence_reasons); Claude's own figure is
        # stated_confidence, which can only lower it.
        "confidence": s.get("confidence"),
        "confidence_reasons": s.get("confidence_reasons", []),
        "stated_confidence": s.get("stated_confidence"),
        "reasoning": s.get("reasoning"),
        "risk": run.risk_preference,
        "risk_level": s.get("risk_level"),
        "config": s.get("config"),
        "model": run.model,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cost_usd": str(run.cost_usd) if run.cost_usd is not None else None,
        "latency_ms": run.latency_ms,
        "backtests": run.backtests,
    }
