"""The trading desk: dashboard, start and stop, the bot page, backtest results (the forms are
in ``bots.form_views``).

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
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseClientRefresh

from accounts.http import AuthedRequest
from aibo.limits import per_client
from bots import backtest_runs, exports, pages, services, starting
from bots.errors import BotError
from bots.models import BacktestRun, Bot


def own_bot(request: AuthedRequest, pk: int) -> Bot:
    return get_object_or_404(Bot.objects.select_related("credential"), pk=pk, owner=request.user)


# --- dashboard -----------------------------------------------------------------------------------


@login_required
@require_GET
def dashboard(request: AuthedRequest) -> HttpResponse:
    return render(request, "bots/dashboard.html", _dashboard_context(request))


def _dashboard_context(request: AuthedRequest) -> dict[str, Any]:
    cards, archived = pages.desk(request.user.pk)
    return pages.paper_wallet(request.user.pk, cards) | {
        "cards": cards,
        "archived": archived,
        "totals": pages.totals(cards),
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
    """Add the paper wallet and the all-bots totals, out of band: starting and stopping bots
    moves money."""
    response.write(pages.render_totals(request.user.pk))
    response.write(pages.render_paper_balance(request.user.pk))
    return response


# --- start / stop --------------------------------------------------------------------------------


def _after_start_stop(
    request: AuthedRequest, bot: Bot, confirm: starting.ConfirmationNeeded | None = None
) -> HttpResponse:
    """The card on the dashboard (with the paper wallet), every card of the bot page (status,
    statistics, ladder, round trips, log: a start or a stop changes them all), a redirect
    without htmx; with htmx, the desk's confirmation slot too, out of band: holding the live
    start's dialog when ``confirm`` asks for the pair, emptied (a dialog gone) otherwise."""
    if not request.htmx:
        if confirm is None:
            return redirect("bots:detail", pk=bot.pk)
        ctx = pages.bot_context(bot) | {"confirm": confirm}
        return render(request, "bots/bot_detail.html", ctx)
    on_card = request.htmx.target == f"bot-{bot.pk}-card"
    if on_card:
        cards = pages.dashboard_cards(request.user.pk, [bot.pk])
        if not cards:  # archived meanwhile (in another tab): it has no card any more
            return HttpResponseClientRefresh()
        (card,) = cards
        response = _with_balance(
            request, render(request, "bots/dashboard.html#bot-card", {"card": card})
        )
    else:
        response = render_whole_bot(request, bot)
    slot = {"bot": bot, "confirm": confirm, "target": "card" if on_card else "status"}
    response.write(render_to_string("bots/_start_confirm.html", slot | {"oob": True}, request))
    return response


def render_whole_bot(request: AuthedRequest, bot: Bot) -> HttpResponse:
    """The bot page's status card, and its other cards out of band."""
    ctx = pages.bot_context(bot)
    response = render(request, "bots/bot_detail.html#status-card", ctx)
    for part in ("stats", "ladder", "trades", "events"):
        response.write(render_to_string(f"bots/bot_detail.html#{part}", ctx | {"oob": True}))
    return response


@login_required
@require_POST
def bot_start(request: AuthedRequest, pk: int) -> HttpResponse:
    """Start a bot. A live one first answers with what the start will do and a dialog that
    asks for its pair; the start happens when the pair typed comes back (checked here)."""
    bot = own_bot(request, pk)
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
@require_http_methods(["GET", "POST"])
def bot_stop(request: AuthedRequest, pk: int) -> HttpResponse:
    """GET: what stopping does, and Binance's choice: keep the bot's coins or sell them at
    market (a dialog in the confirmation slot for htmx, a page otherwise). POST: stop it so."""
    bot = own_bot(request, pk)
    if request.method == "GET":
        ctx = {"bot": bot, "stopping": pages.stop_summary(bot)}
        ctx["target"] = "card" if request.GET.get("on") == "card" else "status"
        if request.htmx:
            return render(request, "bots/_start_confirm.html", ctx)
        return render(request, "bots/bot_stop.html", ctx)
    sell = request.POST.get("sell") == "1"
    try:
        services.stop_bot(bot, reason="stopped by you", sell=sell)
    except BotError as e:
        messages.error(request, str(e))
    else:
        sold = f" Its {bot.base_asset} was sold at market." if sell else ""
        messages.success(request, f"{bot} stopped.{sold}")
    bot.refresh_from_db()
    return _after_start_stop(request, bot)


# --- delete / archive ----------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def bot_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    """GET: what deleting removes, with the CSV exports offered first (and, for a running bot,
    Stop's choice for its coins). POST: stop it if it runs, then delete it and its history."""
    bot = own_bot(request, pk)
    if request.method == "GET":
        ctx = {"bot": bot, "books": pages.books_count(bot)}
        if bot.is_running:
            ctx["stopping"] = pages.stop_summary(bot)
        return render(request, "bots/bot_delete.html", ctx)
    name = str(bot)
    try:
        services.delete_bot(bot, sell=request.POST.get("sell") == "1")
    except BotError as e:
        messages.error(request, str(e))
        return redirect("bots:detail", pk=pk)
    messages.success(request, f"{name} was deleted, with its history.")
    return redirect("bots:dashboard")


@login_required
@require_POST
def bot_archive(request: AuthedRequest, pk: int) -> HttpResponse:
    """Archive a stopped bot (``archived=1``) or take it back out (``archived=0``); back to
    the page the form was on (the dashboard or the bot's)."""
    bot = own_bot(request, pk)
    archived = request.POST.get("archived") != "0"
    try:
        services.archive_bot(bot, archived=archived)
    except BotError as e:
        messages.error(request, str(e))
    else:
        if archived:
            messages.success(request, f"{bot} archived: listed apart on the dashboard.")
        else:
            messages.success(request, f"{bot} is back among your bots.")
    back = reverse("bots:dashboard") if request.POST.get("back") == "dashboard" else None
    back = back or reverse("bots:detail", args=[pk])
    if request.htmx:  # a button in a pushed card: the page reloads where it is
        return HttpResponseClientRedirect(back)
    return redirect(back)


# --- the bot page --------------------------------------------------------------------------------


@login_required
@require_GET
def bot_detail(request: AuthedRequest, pk: int) -> HttpResponse:
    bot = own_bot(request, pk)
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
    bot = own_bot(request, pk)
    data = pages.chart_state(bot)
    data["candles"] = pages.recent_candles(bot.exchange, bot.symbol)
    data["symbol"] = bot.symbol
    return JsonResponse(data)


@login_required
@require_GET
def bot_export(request: AuthedRequest, pk: int, what: str) -> HttpResponse:
    """The bot's trades or round trips as a CSV download (``bots.exports``)."""
    bot = own_bot(request, pk)
    header, rows = exports.EXPORTS[what]
    response = HttpResponse(
        "".join(exports.csv_lines(header, rows(bot))), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{exports.filename(bot, what)}"'
    return response


# --- backtests -----------------------------------------------------------------------------------


@login_required
@require_GET
def backtest_list(request: AuthedRequest) -> HttpResponse:
    """The user's past backtests, newest first, with their return: one page of rows each."""
    runs = backtest_runs.history_page(request.user, request.GET.get("page", 1))
    return render(request, "bots/backtest_list.html", {"runs": runs})


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
