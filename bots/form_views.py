"""The trading desk's forms: a new bot and its edit with the live grid preview, the pair
picker with its history import, and the backtest form.

Every query is scoped to ``request.user``: another user's bot is a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.http import AuthedRequest
from aibo.limits import per_client
from bots import backtest_runs, pages, services, tasks
from bots.errors import BotError, Throttled
from bots.forms import BacktestForm, BotForm
from bots.grid.preview import grid_preview
from bots.models import Bot
from bots.views import own_bot
from market import history, pairs
from market import services as market_services
from market import tasks as market_tasks

EXCHANGE = "binance"  # the exchange bots are made for (the forms' default)


# --- new / edit, and the grid preview ------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def bot_new(request: AuthedRequest) -> HttpResponse:
    form = BotForm(request.POST or None, owner=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            bot = services.create_bot(
                request.user,
                symbol=data["symbol"],
                config=form.config(),
                name=data["name"],
                mode=data["mode"],
                credential=data["credential"] if data["mode"] == Bot.Mode.LIVE else None,
            )
        except BotError as e:
            form.add_error(None, str(e))
        else:
            market_tasks.start_history(bot.exchange, bot.symbol)  # a new pair's history
            messages.success(request, f"{bot} created. Start it when you are ready.")
            return redirect("bots:detail", pk=bot.pk)
    return render(request, "bots/bot_form.html", _form_context(form, None))


@login_required
@require_http_methods(["GET", "POST"])
def bot_edit(request: AuthedRequest, pk: int) -> HttpResponse:
    bot = own_bot(request, pk)
    if bot.mode == Bot.Mode.LIVE and bot.is_running:
        # 409: the grid rests on the exchange with real money; changing it means stopping it.
        form = BotForm(initial=BotForm.initial_for(bot), owner=request.user)
        ctx = _form_context(form, bot) | {"live_running": True}
        return render(request, "bots/bot_form.html", ctx, status=409)
    data = request.POST.copy() if request.method == "POST" else None
    if data is not None:
        # A bot keeps its pair, mode and keys; only the grid and the name change.
        data["symbol"], data["mode"] = bot.symbol, bot.mode
        data["credential"] = bot.credential_id or ""
    form = BotForm(data, initial=BotForm.initial_for(bot), owner=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            services.update_bot_config(bot, form.config())
        except BotError as e:
            form.add_error(None, str(e))
        else:
            if bot.name != form.cleaned_data["name"]:
                bot.name = form.cleaned_data["name"]
                bot.save(update_fields=["name", "updated_at"])
            messages.success(request, f"{bot} saved.")
            return redirect("bots:detail", pk=bot.pk)
    return render(request, "bots/bot_form.html", _form_context(form, bot))


def _form_context(form: BotForm, bot: Bot | None) -> dict[str, Any]:
    job = history.import_for(bot.exchange, bot.symbol) if bot else None
    return {
        "form": form, "bot": bot, "preview": None, "history": job,
        "pair_options": () if bot else pairs.stored_pairs(form.exchange),
    }  # fmt: skip


@login_required
@require_POST
@per_client("preview", limit_setting="PREVIEWS_PER_CLIENT_PER_MINUTE", window=60)
def bot_preview(request: AuthedRequest) -> HttpResponse:
    """The grid preview for the form as typed so far, with each field's error out of band."""
    form = BotForm(request.POST, owner=request.user)
    form.is_valid()
    preview = None
    price = None
    job = None
    if form.rules is not None:  # a pair the exchange lists: its history, imported if new
        job = market_tasks.start_history(form.exchange, form.rules.symbol)
        # and its live price, streamed by the feed while the trader looks at it
        market_services.watch_market(form.exchange, form.rules.symbol)
    if form.grid is not None:
        price = market_services.latest_price(form.exchange, form.cleaned_data["symbol"])
        preview = grid_preview(form.grid, price)
    # While typing, an empty field is not yet an error: say so only on submit.
    errors = {
        name: [] if not request.POST.get(name, "").strip() else form.errors.get(name, [])
        for name in form.fields
    }
    return render(
        request,
        "bots/bot_form.html#grid-preview",
        {"form": form, "preview": preview, "field_errors": errors, "oob_errors": True,
         "history": job},
    )  # fmt: skip


# --- pairs: the exchange's list, and a pair's history import -----------------------------------


@login_required
@require_GET
@per_client("pairs", limit_setting="PREVIEWS_PER_CLIENT_PER_MINUTE", window=60)
def pair_search(request: AuthedRequest) -> HttpResponse:
    """The pair input's suggestions: the exchange's pairs matching what is typed so far."""
    query = request.GET.get("symbol", request.GET.get("q", ""))[:30]
    options = pairs.search(EXCHANGE, query)
    return render(request, "market/_pair_options.html", {"options": options})


@login_required
@require_http_methods(["GET", "POST"])
@per_client("pairs", limit_setting="PREVIEWS_PER_CLIENT_PER_MINUTE", window=60)
def pair_history(request: AuthedRequest) -> HttpResponse:
    """A pair's history import, beside the pair: GET shows it (polled while it runs); POST
    (a pair just chosen) fetches the pair's rules if new and starts its import if needed."""
    exchange = EXCHANGE
    text = (request.POST if request.method == "POST" else request.GET).get("symbol", "")[:30]
    job, problem = None, ""
    if request.method == "POST":
        try:
            rules = pairs.choose_pair(exchange, text)
        except pairs.PairError as e:
            problem = str(e)
        else:
            job = market_tasks.start_history(exchange, rules.symbol)
    else:
        job = history.import_for(exchange, pairs.normalise(text))
    return render(request, "market/_pair_history.html", {"history": job, "pair_problem": problem})


@login_required
@require_http_methods(["GET", "POST"])
def backtest_new(request: AuthedRequest) -> HttpResponse:
    initial: dict[str, Any] = backtest_runs.default_range()
    source = None
    if pk := request.GET.get("bot"):
        source = pages.own_bot(request.user, pk)
        initial |= {"symbol": source.symbol, **source.config}
    form = BacktestForm(request.POST or None, initial=initial)
    retry_after = None
    job = history.import_for(form.exchange, source.symbol) if source else None
    ready = False
    if request.method == "POST" and form.is_valid():
        job = market_tasks.start_history(form.exchange, form.cleaned_data["symbol"])
        ready = form.imported(job)  # not while the days asked for are still being imported
    if ready:
        start, end = form.time_range()
        try:
            run = backtest_runs.create_run(
                request.user,
                enqueue=tasks.backtest_task,
                bot=source,
                exchange=form.exchange,
                symbol=form.cleaned_data["symbol"],
                start=start,
                end=end,
                config=form.config(),
            )
        except Throttled as e:
            form.add_error(None, str(e))
            retry_after = e.retry_after
        else:
            return redirect("bots:backtest", pk=run.pk)
    context = {
        "form": form, "source": source, "history": job,
        "pair_options": pairs.stored_pairs(form.exchange),
    }  # fmt: skip
    if retry_after is None:
        return render(request, "bots/backtest_form.html", context)
    response = render(request, "bots/backtest_form.html", context, status=429)
    response["Retry-After"] = str(retry_after)
    return response
