"""The trading desk's forms: a new bot and its edit with the live grid preview, the pair
picker with its history import, and the backtest form.

Every query is scoped to ``request.user``: another user's bot is a 404.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.http import AuthedRequest
from aibo.limits import per_client
from bots import backtest_runs, pages, services, tasks
from bots import config as schema
from bots.errors import BotError, Throttled
from bots.forms import DEFAULT_PAIR, BacktestForm, BotForm, GridConfigForm, stored_span
from bots.models import BacktestRun, Bot
from bots.views import own_bot
from market import history, pairs
from market import services as market_services
from market import tasks as market_tasks
from market.precision import plain

EXCHANGE = "binance"  # the exchange bots are made for (the forms' default)


# --- new / edit, and the grid preview ------------------------------------------------------------

# What a link may fill in on the new-bot form (the advisor's "Use in the form", a bookmark):
# the form's own field names as GET parameters, each at most PREFILL_CHARS long.
PREFILL_KEYS = ("name", "symbol", "mode", *schema.KEYS)
PREFILL_CHARS = 80


def _own_run(request: AuthedRequest, raw_id: str) -> BacktestRun:
    text = raw_id.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise Http404("No such backtest.")
    return get_object_or_404(BacktestRun, pk=int(text), owner=request.user)


def prefill(request: AuthedRequest) -> dict[str, Any]:
    """The new-bot form's first values: ``?clone=<bot>`` (the user's bot: pair, mode, keys,
    grid and risk, named "Copy of …"), ``?backtest=<run>`` (the user's run: pair and grid),
    then any plain field name (``?symbol=ETH/USDT&lower_bound=2400``). Another user's bot or
    run is a 404; nothing is created."""
    initial: dict[str, Any] = {}
    if raw := request.GET.get("clone"):
        bot = pages.own_bot(request.user, raw)
        initial |= BotForm.initial_for(bot) | {"name": f"Copy of {bot}"[:80]}
    if raw := request.GET.get("backtest"):
        run = _own_run(request, raw)
        initial |= {"symbol": run.symbol, **schema.normalise(run.config)}
    for key in PREFILL_KEYS:
        if key in request.GET:
            initial[key] = request.GET[key][:PREFILL_CHARS]
    return initial


@login_required
@require_http_methods(["GET", "POST"])
def bot_new(request: AuthedRequest) -> HttpResponse:
    initial = prefill(request) if request.method == "GET" else {}
    form = BotForm(request.POST or None, initial=initial, owner=request.user)
    refusal = ""
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
            refusal = _refused(form, e)
        else:
            market_tasks.start_history(bot.exchange, bot.symbol)  # a new pair's history
            messages.success(request, f"{bot} created. Start it when you are ready.")
            return redirect("bots:detail", pk=bot.pk)
    return render(request, "bots/bot_form.html", _form_context(form, None, refusal))


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
    refusal = ""
    if request.method == "POST" and form.is_valid():
        try:
            services.update_bot_config(bot, form.config())
        except BotError as e:
            refusal = _refused(form, e)
        else:
            if bot.name != form.cleaned_data["name"]:
                bot.name = form.cleaned_data["name"]
                bot.save(update_fields=["name", "updated_at"])
            messages.success(request, f"{bot} saved.")
            return redirect("bots:detail", pk=bot.pk)
    return render(request, "bots/bot_form.html", _form_context(form, bot, refusal))


def _refused(form: BotForm, e: BotError) -> str:
    """A service's refusal: on the field it names, or the form's words (returned) otherwise.
    The live preview never touches the latter: only a new submit does."""
    field = getattr(e, "field", None)
    if field in form.fields:
        form.add_error(field, e.sentence())
        return ""
    return e.sentence()


def _form_context(form: BotForm, bot: Bot | None, refusal: str = "") -> dict[str, Any]:
    job = history.import_for(bot.exchange, bot.symbol) if bot else None
    symbol = _symbol_of(form, bot)
    price = form.price
    if price is None and symbol:
        price = schema.reference_price(form.exchange, symbol)
    return {
        "form": form, "bot": bot, "preview": form.preview, "history": job, "refusal": refusal,
        "submitted": form.is_bound, "symbol": symbol, "price": price,
        "pair_options": () if bot else pairs.stored_pairs(form.exchange),
    }  # fmt: skip


def _symbol_of(form: GridConfigForm, bot: Bot | None = None) -> str:
    """The pair the form is about now (for the price and the chart before any preview)."""
    if bot is not None:
        return bot.symbol
    if form.rules is not None:
        return str(form.rules.symbol)
    raw = form.data.get("symbol") if form.is_bound else form.initial.get("symbol")
    symbol = pairs.normalise(str(raw or DEFAULT_PAIR))[:30]
    return symbol if pairs.well_formed(symbol) else DEFAULT_PAIR  # typed text is no pair yet


def _preview_errors(
    request: AuthedRequest, form: Any, names: Iterable[str]
) -> dict[str, list[str]]:
    """Each field's errors for a preview: before the first submit an empty field is not yet
    an error; after it (``submitted``), what the submit said, so no message is wiped."""
    submitted = bool(request.POST.get("submitted"))

    def touched(name: str) -> bool:
        # a trailing limit is asked for the moment its box is ticked (the floor is required)
        flag = name.removesuffix("_limit") if name.startswith("trailing_") else ""
        return bool(request.POST.get(name, "").strip() or (flag and request.POST.get(flag)))

    return {name: form.errors.get(name, []) if submitted or touched(name) else [] for name in names}


@login_required
@require_POST
@per_client("preview", limit_setting="PREVIEWS_PER_CLIENT_PER_MINUTE", window=60)
def bot_preview(request: AuthedRequest) -> HttpResponse:
    """The grid preview for the form as typed so far, with each shown field's errors out of
    band. Before the first submit an empty field is not yet an error; once the trader has
    submitted (``submitted`` in the form), the preview says what the submit said, so it never
    wipes a message the submit showed."""
    form = BotForm(request.POST, owner=request.user)
    form.is_valid()
    job = None
    if form.rules is not None:  # a pair the exchange lists: its history, imported if new
        job = market_tasks.start_history(form.exchange, form.rules.symbol)
        # and its live price, streamed by the feed while the trader looks at it
        market_services.watch_market(form.exchange, form.rules.symbol)
    submitted = bool(request.POST.get("submitted"))
    errors = _preview_errors(request, form, form.shown(editing=bool(request.POST.get("editing"))))
    price = form.price
    if price is None and form.rules is not None:
        price = schema.reference_price(form.exchange, form.rules.symbol)
    return render(
        request,
        "bots/bot_form.html#grid-preview",
        {"form": form, "preview": form.preview, "field_errors": errors, "oob_errors": True,
         "errors_shown": any(errors.values()),
         "history": job, "submitted": submitted, "price": price,
         # the chart follows only a pair the exchange lists, not each letter typed
         "symbol": form.rules.symbol if form.rules is not None else ""},
    )  # fmt: skip


@login_required
@require_POST
@per_client("preview", limit_setting="PREVIEWS_PER_CLIENT_PER_MINUTE", window=60)
def backtest_preview(request: AuthedRequest) -> HttpResponse:
    """The backtest form's grid preview, priced at the first stored candle of the days asked
    for, with its fields' errors out of band (the days checked against the stored candles)."""
    form = BacktestForm(request.POST)
    form.is_valid()
    submitted = bool(request.POST.get("submitted"))
    errors = _preview_errors(request, form, form.fields)
    return render(
        request,
        "bots/bot_form.html#grid-preview",
        {"form": form, "preview": form.preview, "field_errors": errors, "oob_errors": True,
         "errors_shown": any(errors.values()),
         "backtest": True, "price": form.price, "submitted": submitted,
         "symbol": form.rules.symbol if form.rules is not None else ""},
    )  # fmt: skip


@login_required
@require_GET
@per_client("candles", limit_setting="CANDLE_REQUESTS_PER_CLIENT_PER_MINUTE", window=60)
def pair_candles(request: AuthedRequest) -> JsonResponse:
    """A stored pair's recent one-minute candles and its price now, for the forms' chart
    (``[epoch seconds, open, high, low, close]``, oldest first; none for a pair not stored)."""
    symbol = pairs.normalise(request.GET.get("symbol", "")[:30])
    known = symbol in pairs.stored_pairs(EXCHANGE)
    price = schema.reference_price(EXCHANGE, symbol) if known else None
    return JsonResponse(
        {
            "symbol": symbol,
            "candles": pages.recent_candles(EXCHANGE, symbol) if known else [],
            "price": plain(price) if price is not None else None,
        }
    )


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
    job, problem, pair, stored = None, "", "", ""
    if request.method == "POST":
        try:
            rules = pairs.choose_pair(exchange, text)
        except pairs.PairError as e:
            problem = str(e)
        else:
            pair = rules.symbol
            job = market_tasks.start_history(exchange, pair)
            stored = _stored_words(exchange, pair)
    else:
        job = history.import_for(exchange, pairs.normalise(text))
        stored = _stored_words(exchange, job.symbol) if job else ""
    context = {"history": job, "pair_problem": problem, "pair": pair, "stored": stored}
    return render(request, "market/_pair_history.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def backtest_new(request: AuthedRequest) -> HttpResponse:
    """The backtest form: prefilled from ``?bot=<bot>``, ``?backtest=<run>`` (the same test
    again, to change) or plain field names; its days checked against the stored candles before
    anything runs (a new pair's import starts when it is chosen)."""
    initial: dict[str, Any] = backtest_runs.default_range()
    source = None
    if pk := request.GET.get("bot"):
        source = pages.own_bot(request.user, pk)
        initial |= {"symbol": source.symbol, **source.config}
    if raw := request.GET.get("backtest"):
        run = _own_run(request, raw)
        last_day = run.end - dt.timedelta(microseconds=1)
        initial |= {"symbol": run.symbol, **schema.normalise(run.config),
                    "start": run.start.date(), "end": last_day.date()}  # fmt: skip
    for key in (*PREFILL_KEYS, "start", "end"):
        if key in request.GET and key not in ("name", "mode"):
            initial[key] = request.GET[key][:PREFILL_CHARS]
    if request.method == "GET":
        initial = _within_stored(initial)
    form = BacktestForm(
        request.POST or None, initial=initial, start_import=market_tasks.start_history
    )
    retry_after = None
    if request.method == "POST" and form.is_valid():
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
    symbol = _symbol_of(form)
    job = form.history if form.is_bound else history.import_for(form.exchange, symbol)
    context = {
        "form": form, "source": source, "history": job, "symbol": symbol,
        "preview": form.preview, "backtest": True,
        "price": form.price or schema.reference_price(form.exchange, symbol),
        "pair_options": pairs.stored_pairs(form.exchange),
        "stored": form.available or _stored_words(form.exchange, symbol),
    }  # fmt: skip
    if retry_after is None:
        return render(request, "bots/backtest_form.html", context)
    response = render(request, "bots/backtest_form.html", context, status=429)
    response["Retry-After"] = str(retry_after)
    return response


def _within_stored(initial: dict[str, Any]) -> dict[str, Any]:
    """The first dates offered lie within the pair's stored days (a week by default, fewer
    when fewer are stored); dates typed into the link are the trader's own."""
    span = stored_span(EXCHANGE, pairs.normalise(str(initial.get("symbol") or DEFAULT_PAIR)))
    start, end = initial.get("start"), initial.get("end")
    if span is None or not isinstance(start, dt.date) or not isinstance(end, dt.date):
        return initial
    first, last = span[0].date(), span[1].date()
    end = min(max(end, first), last)
    start = min(max(start, first), end)
    return initial | {"start": start, "end": end}


def _stored_words(exchange: str, symbol: str) -> str:
    span = stored_span(exchange, symbol)
    return f"{span[0]:%Y-%m-%d} to {span[1]:%Y-%m-%d} (UTC)" if span else ""
