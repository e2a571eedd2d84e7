"""The trading desk: dashboard, bot forms with a live grid preview, the bot page, backtest_runs.

Every query is scoped to ``request.user``: another user's bot or backtest is a 404. Pages are
one template each, rendered whole or as one of its partials for htmx (``page.html#part``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.http import AuthedRequest
from aibo.limits import per_client
from bots import backtest_runs, pages, services, starting, tasks
from bots.errors import BotError, Throttled
from bots.forms import BacktestForm, BotForm
from bots.grid.preview import grid_preview
from bots.models import BacktestRun, Bot
from market import history, pairs
from market import services as market_services
from market import tasks as market_tasks

EXCHANGE = "binance"  # the exchange bots are made for (the forms' default)


def _own_bot(request: AuthedRequest, pk: int) -> Bot:
    return get_object_or_404(Bot.objects.select_related("credential"), pk=pk, owner=request.user)


# --- dashboard -----------------------------------------------------------------------------------


@login_required
@require_GET
def dashboard(request: AuthedRequest) -> HttpResponse:
    return render(request, "bots/dashboard.html", _dashboard_context(request))


def _dashboard_context(request: AuthedRequest) -> dict[str, Any]:
    return {
        "cards": pages.dashboard_cards(request.user.pk),
        "balances": pages.paper_balances(request.user.pk),
        "replayed": pages.replayed(),
        "starting_balance": settings.PAPER_STARTING_BALANCE,
        "without_keys": pages.live_bots_without_keys(request.user.pk),
        "exchange_pauses": pages.exchange_pauses(request.user.pk),
    }


@login_required
@require_POST
def emergency_stop(request: AuthedRequest) -> HttpResponse:
    try:
        stopped = services.emergency_stop(request.user, reason="emergency stop (by you)")
    except BotError as e:
        messages.error(request, f"Emergency stop: {e}")
    else:
        _emergency_message(request, stopped)
    return _emergency_response(request)


def _emergency_message(request: AuthedRequest, stopped: int) -> None:
    if stopped:
        messages.warning(
            request, f"Emergency stop: {stopped} bot(s) stopped, every order cancelled."
        )
    else:
        messages.info(request, "Emergency stop: no bot was running; open orders were cancelled.")


def _emergency_response(request: AuthedRequest) -> HttpResponse:
    if request.htmx:
        return _with_balance(
            request, render(request, "bots/dashboard.html#bot-cards", _dashboard_context(request))
        )
    return redirect("bots:dashboard")


def _with_balance(request: AuthedRequest, response: HttpResponse) -> HttpResponse:
    """Add the paper wallet, out of band: starting and stopping bots moves money."""
    response.write(pages.render_paper_balance(request.user.pk))
    return response


# --- start / stop --------------------------------------------------------------------------------


def _after_start_stop(
    request: AuthedRequest, bot: Bot, confirm: starting.ConfirmationNeeded | None = None
) -> HttpResponse:
    """The card on the dashboard, the status card on the bot page, a redirect without htmx;
    with htmx, the live start's confirmation slot too, out of band: holding the dialog when
    ``confirm`` asks for the pair, emptied (the dialog gone) otherwise."""
    if not request.htmx:
        if confirm is None:
            return redirect("bots:detail", pk=bot.pk)
        ctx = pages.bot_context(bot) | {"confirm": confirm}
        return render(request, "bots/bot_detail.html", ctx)
    on_card = request.htmx.target == f"bot-{bot.pk}-card"
    if on_card:
        (card,) = pages.dashboard_cards(request.user.pk, [bot.pk])
        response = _with_balance(
            request, render(request, "bots/dashboard.html#bot-card", {"card": card})
        )
    else:
        ctx = pages.bot_context(bot, parts=("status",))
        response = render(request, "bots/bot_detail.html#status-card", ctx)
    slot = {"bot": bot, "confirm": confirm, "target": "card" if on_card else "status"}
    response.write(render_to_string("bots/_start_confirm.html", slot | {"oob": True}, request))
    return response


@login_required
@require_POST
def bot_start(request: AuthedRequest, pk: int) -> HttpResponse:
    """Start a bot. A live one first answers with what the start will do and a dialog that
    asks for its pair; the start happens when the pair typed comes back (checked here)."""
    bot = _own_bot(request, pk)
    typed = request.POST.get("confirm_pair")  # None: Start was pressed, nothing typed yet
    try:
        services.start_asked(bot, typed_pair=typed)
    except starting.ConfirmationNeeded as e:
        return _after_start_stop(request, bot, confirm=e)
    except BotError as e:
        messages.error(request, f"{bot} did not start: {e}")
    else:
        messages.success(request, f"{bot} started.")
    bot.refresh_from_db()
    return _after_start_stop(request, bot)


@login_required
@require_POST
def bot_stop(request: AuthedRequest, pk: int) -> HttpResponse:
    bot = _own_bot(request, pk)
    try:
        services.stop_bot(bot, reason="stopped by you")
    except BotError as e:
        messages.error(request, str(e))
    else:
        messages.success(request, f"{bot} stopped.")
    bot.refresh_from_db()
    return _after_start_stop(request, bot)


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
    bot = _own_bot(request, pk)
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


# --- the bot page --------------------------------------------------------------------------------


@login_required
@require_GET
def bot_detail(request: AuthedRequest, pk: int) -> HttpResponse:
    bot = _own_bot(request, pk)
    page = request.GET.get("trades", 1)
    if request.htmx and "trades" in request.GET:  # the history's pager
        ctx = pages.bot_context(bot, trades=page, parts=("trades",))
        return render(request, "bots/bot_detail.html#trades", ctx)
    return render(request, "bots/bot_detail.html", pages.bot_context(bot, trades=page))


@login_required
@require_GET
@per_client("candles", limit_setting="CANDLE_REQUESTS_PER_CLIENT_PER_MINUTE", window=60)
def bot_candles(request: AuthedRequest, pk: int) -> JsonResponse:
    """Recent candles of the bot's pair, its grid lines, resting orders and recent fills."""
    bot = _own_bot(request, pk)
    data = pages.chart_state(bot)
    data["candles"] = pages.recent_candles(bot.exchange, bot.symbol)
    data["symbol"] = bot.symbol
    return JsonResponse(data)


# --- backtests -----------------------------------------------------------------------------------


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


@login_required
@require_GET
def backtest_detail(request: AuthedRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(BacktestRun, pk=pk, owner=request.user)
    ctx = backtest_runs.page_context(run)
    if request.htmx:
        return render(request, "bots/backtest_detail.html#progress", ctx)
    return render(request, "bots/backtest_detail.html", ctx)


@login_required
@require_GET
@per_client("candles", limit_setting="CANDLE_REQUESTS_PER_CLIENT_PER_MINUTE", window=60)
def backtest_data(request: AuthedRequest, pk: int) -> JsonResponse:
    run = get_object_or_404(BacktestRun, pk=pk, owner=request.user)
    return JsonResponse(backtest_runs.chart_data(run))
