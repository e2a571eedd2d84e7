"""The advisor on the page: a <dialog> that polls a run (its JSON API is ``ai_advisor.api``).

Every query is scoped to ``request.user``: another user's run or bot is a 404.
"""

from __future__ import annotations

import contextlib
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.http import AuthedRequest
from ai_advisor import services
from ai_advisor.models import AdvisorRun
from ai_advisor.profiles import PROFILES, shape_of
from ai_advisor.templatetags.advice import price_at_tick
from aibo.limits import per_client
from bots import pages
from bots.templatetags.money import format_money

DIFF_FIELDS = (
    ("lower_bound", "Lower price"),
    ("upper_bound", "Upper price"),
    ("grid_levels", "Lines"),
    ("spacing", "Spacing"),
    ("stop_loss_pct", "Stop-loss below the range"),
    ("take_profit", "Take-profit"),
    ("trigger_price", "Trigger price"),
    ("trailing_up", "Trailing up"),
    ("trailing_up_limit", "Trailing up limit"),
    ("trailing_down", "Trailing down"),
    ("trailing_down_limit", "Trailing down floor"),
    ("capital", "Capital"),
)
EXTENSIONS = ("trigger_price", "trailing_up", "trailing_up_limit", "trailing_down",
              "trailing_down_limit")  # fmt: skip
PRICE_KEYS = ("lower_bound", "upper_bound", "take_profit", "trigger_price", "trailing_up_limit",
              "trailing_down_limit")  # fmt: skip


def _own_run(request: AuthedRequest, pk: int) -> AdvisorRun:
    return get_object_or_404(AdvisorRun.objects.select_related("bot"), pk=pk, owner=request.user)


# --- the dialog -------------------------------------------------------------------------------


@login_required
@require_POST
@per_client("advisor", limit_setting="ADVISOR_RUNS_PER_CLIENT_PER_HOUR", window=3600)
def run_create(request: AuthedRequest) -> HttpResponse:
    """Store the question, hand it to Huey, answer with the panel that polls it."""
    bot = None
    if pk := request.POST.get("bot"):
        bot = pages.own_bot(request.user, pk)
    try:
        with transaction.atomic():
            run = services.create_run(
                request.user,
                symbol=request.POST.get("symbol"),
                capital=request.POST.get("capital", ""),
                risk=request.POST.get("risk", "medium"),
                bot=bot,
            )
            transaction.on_commit(lambda: _enqueue(run.pk))
    except services.AdviceError as e:
        status = 429 if isinstance(e, services.Throttled) else 400
        # htmx swaps only 2xx answers by default: the dialog shows the problem in place.
        return render(
            request,
            "ai_advisor/run_detail.html#advisor-problem",
            {"problem": str(e)},
            status=200 if request.htmx else status,
        )
    return render(request, "ai_advisor/run_detail.html#advisor-run", panel_context(run))


def _enqueue(run_id: int) -> None:
    from ai_advisor.tasks import advise_task

    advise_task(run_id)


@login_required
@require_GET
def run_detail(request: AuthedRequest, pk: int) -> HttpResponse:
    run = _own_run(request, pk)
    template = "ai_advisor/run_detail.html"
    if request.htmx:
        template += "#advisor-run"
    return render(request, template, panel_context(run))


@login_required
@require_POST
def run_accept(request: AuthedRequest, pk: int) -> HttpResponse:
    run = _own_run(request, pk)
    try:
        bot = services.accept_run(run, confirm_restart=request.POST.get("confirm") == "restart")
    except services.NeedsConfirmation as e:
        ctx = panel_context(run) | {"confirm": str(e)}
        return render(request, "ai_advisor/run_detail.html#advisor-run", ctx)
    except services.DecisionError as e:
        ctx = panel_context(run) | {"problem": str(e)}
        return render(request, "ai_advisor/run_detail.html#advisor-run", ctx)
    url = reverse("bots:detail", args=[bot.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@login_required
@require_POST
def run_reject(request: AuthedRequest, pk: int) -> HttpResponse:
    run = _own_run(request, pk)
    ctx: dict[str, Any] = {}
    try:
        services.reject_run(run, reason=request.POST.get("reason", ""))
    except services.DecisionError as e:
        ctx["problem"] = str(e)
    return render(request, "ai_advisor/run_detail.html#advisor-run", panel_context(run) | ctx)


def panel_context(run: AdvisorRun) -> dict[str, Any]:
    """The run as the dialog shows it: the confidence and why, how the risk choice shaped the
    grid, the diff, a row per candidate and window, and the link that fills the bot form."""
    from bots.pages import sparkline

    suggested = (run.suggestion or {}).get("config") or {}
    current = services.current_config_of(run) if run.bot_id or run.inputs else None
    tick = run.inputs.get("tick") or ""
    diff = [
        {
            "label": label,
            "current": _shown(key, (current or {}).get(key, ""), tick, run.quote_asset),
            "suggested": _shown(key, suggested.get(key, ""), tick, run.quote_asset),
            "changed": current is not None and _differs(current.get(key), suggested.get(key)),
        }
        for key, label in DIFF_FIELDS
        # the trigger and trailing only when either grid uses them
        if key not in EXTENSIONS or (current or {}).get(key) or suggested.get(key)
    ]
    rows = []
    backtests = run.backtests or {}
    for cand in backtests.get("candidates", []):
        for window in backtests.get("windows", []):
            result = cand["results"].get(str(window["days"]), {})
            curve = result.get("equity_curve") or []
            rows.append(
                {
                    "candidate": cand,
                    "window": window,
                    "result": result,
                    "spark": sparkline(curve, width=120, height=28) if curve else "",
                    "up": len(curve) < 2 or curve[-1] >= curve[0],
                }
            )
    return {
        "run": run,
        "suggestion": run.suggestion,
        "confidence": _confidence(run),
        "risk": _risk(run, suggested),
        "use_url": _use_url(run, suggested) if suggested else "",
        "backtested": _backtested(backtests),
        "held_out": backtests.get("held_out"),
        "tick": tick,
        "diff": diff,
        "has_current": current is not None,
        "rows": rows,
        "windows": backtests.get("windows", []),
        "baseline": backtests.get("baseline"),
        "running_bot": run.bot is not None and run.bot.is_running,
    }


# The bot form's own field names (forms prefills from them as GET parameters).
FORM_FIELDS = ("capital", "lower_bound", "upper_bound", "grid_levels", "spacing",
               "stop_loss_pct", "take_profit", "trigger_price", "trailing_up",
               "trailing_up_limit", "trailing_down", "trailing_down_limit")  # fmt: skip


def _use_url(run: AdvisorRun, config: dict[str, Any]) -> str:
    """The new-bot form filled with the suggestion: nothing is created until the trader
    submits the form."""
    params = {"symbol": run.symbol}
    params |= {k: str(config[k]) for k in FORM_FIELDS if config.get(k) not in (None, "")}
    return f"{reverse('bots:new')}?{urlencode(params)}"


def _backtested(backtests: dict[str, Any]) -> dict[str, Any] | None:
    """The suggestion's return on the shortest window, shown beside "Use these settings"."""
    candidates = backtests.get("candidates") or []
    windows = backtests.get("windows") or []
    if not candidates or not windows:
        return None
    days = str(windows[0]["days"])
    result = candidates[0]["results"].get(days) or {}
    if "total_profit" not in result:
        return None
    return {"days": days, **result}


def _confidence(run: AdvisorRun) -> dict[str, Any] | None:
    s = run.suggestion or {}
    if "confidence_reasons" in s:
        return {"score": s["confidence"], "reasons": s["confidence_reasons"],
                "stated": s.get("stated_confidence")}  # fmt: skip
    if s.get("confidence") is not None:
        # A run from before the held-out check: the model's own figure, said to be just that.
        return {"score": None, "reasons": [], "stated": s["confidence"]}
    return None


def _risk(run: AdvisorRun, config: dict[str, Any]) -> dict[str, Any] | None:
    """The risk choice's band and where this grid sits in it, for the page to say how the
    choice shaped the suggestion."""
    if run.risk_preference not in PROFILES:
        return None
    profile = PROFILES[run.risk_preference]
    fee = Decimal(run.inputs.get("fee") or "0")
    price = run.inputs.get("price")
    out: dict[str, Any] = {"profile": profile, "band": profile.describe(fee)}
    if config and price:
        with contextlib.suppress(InvalidOperation, KeyError, ValueError, ZeroDivisionError):
            out["shape"] = shape_of(config, Decimal(price), fee)
    return out


def _shown(key: str, value: Any, tick: str, quote: str) -> str:
    """A config value as people read it: prices to the tick, capital to the cent."""
    if key in ("trailing_up", "trailing_down"):
        return "on" if str(value) == "true" else "off"  # left out of a config: off
    if value in (None, ""):
        return ""
    if key in PRICE_KEYS and tick:
        return price_at_tick(value, tick)
    if key == "capital":
        return format_money(value, quote)
    if key == "stop_loss_pct":
        return "none" if Decimal(str(value)) == 0 else f"{Decimal(str(value)).normalize():f} %"
    return str(value)


def _differs(a: Any, b: Any) -> bool:
    try:
        return Decimal(str(a or 0)) != Decimal(str(b or 0))
    except InvalidOperation:
        return (a or "") != (b or "")
