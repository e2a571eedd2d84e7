"""What the bot pages show: read models built with few queries, and the fragments they render.

Views render these, and so do the consumers when ``bots.push`` says a bot changed: the same
partials from the same context functions, so a pushed fragment is exactly what a reload would
show. Every renderer runs a bounded number of queries, however many bots, orders or trades
there are (tests/bots/test_queries.py holds them to it).

Over 400 lines because every page fragment's read model is here, each beside its renderer, so
the query budget of a page can be read in one file.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string

from bots import config as schema
from bots import starting
from bots.errors import BotError
from bots.grid.engine import GridEngine
from bots.grid.params import SlotState
from bots.grid.preview import GridPreview, grid_preview
from bots.models import Bot, BotEvent, EquitySnapshot, Order, PaperBalance
from bots.push import CHANGES
from market import services as market_services
from market.exchange import ban_notice
from market.precision import plain, round_price

SPARK_POINTS = 96
TRADES_PER_PAGE = 20
EVENTS_SHOWN = 30
CHART_FILLS = 300
ZERO = Decimal(0)


def live_bots_without_keys(owner_id: int | None = None) -> list[Bot]:
    """Live bots (running, or not) whose exchange keys this server can no longer decrypt: they
    cannot see or cancel their orders until the keys are entered again. All owners' for the
    readiness probe, one owner's for the dashboard."""
    bots = Bot.objects.filter(mode=Bot.Mode.LIVE, credential__isnull=False)
    if owner_id is not None:
        bots = bots.filter(owner_id=owner_id)
    return [b for b in bots.select_related("credential").only(
        "pk", "name", "symbol", "status", "owner_id", "credential",
    ) if not b.credential.readable()]  # fmt: skip


def exchange_pauses(owner_id: int) -> list[str]:
    """In words: the exchanges that have paused or banned this server's requests (HTTP 429 or
    418), for the owner's live bots on them; until then those bots send nothing."""
    used = Bot.objects.filter(owner_id=owner_id, mode=Bot.Mode.LIVE).values_list("exchange")
    return [n for n in (ban_notice(name) for name in sorted({e for (e,) in used})) if n]


def own_bot(user: Any, raw_id: Any) -> Bot:
    """The user's bot with the id as typed (a query string, a form, JSON); Http404 for anything
    that is not one of theirs, ``abc``, ``1.5`` and ``%00`` included."""
    text = str(raw_id).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise Http404("No such bot.")
    return get_object_or_404(Bot.objects.select_related("credential"), pk=int(text), owner=user)


# --- shared pieces -------------------------------------------------------------------------------


def prices_for(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Decimal | None]:
    """The latest price of each distinct (exchange, symbol): one look-up per pair, not per bot."""
    return {pair: market_services.latest_price(*pair) for pair in set(pairs)}


def sparkline(values: Sequence[Decimal | float], width: int = 120, height: int = 32) -> str:
    """SVG polyline points for ``values`` scaled into width x height (y grows downwards)."""
    if len(values) < 2:
        return ""
    floats = [float(v) for v in values]
    lo, hi = min(floats), max(floats)
    span = (hi - lo) or 1.0
    dx = width / (len(floats) - 1)
    pad = 2
    return " ".join(
        f"{i * dx:.1f},{pad + (height - 2 * pad) * (1 - (v - lo) / span):.1f}"
        for i, v in enumerate(floats)
    )


def replayed() -> bool:
    """The market feed replays recorded candles (the feed's own word, else the setting; no
    query: pages read ``feed_status`` through the context processor)."""
    return market_services.feed_status(look_in_db=False).replayed


def clock(replay: bool) -> str:
    """The one clock of the desk's times, in words: market time, which is the candles' time
    when prices are replayed (round trips, fills and starts happen at the candle's time)."""
    return "replay market time, UTC" if replay else "UTC"


# --- statistics ---------------------------------------------------------------------------------


# Below a day of running, an annual rate is a projection of noise (two hours at -0.04 % read as
# -324 % a year): the return itself is shown instead.
APR_FROM = timedelta(days=1)


@dataclass(frozen=True)
class Performance:
    """A bot's return on its capital over its run (market time), and the APR from a day on."""

    return_ratio: Decimal | None
    apr: Decimal | None
    running_for: timedelta | None

    @property
    def running_label(self) -> str:
        """How long the figures cover, in words: ``3 h 20 min``, ``2 d 4 h``."""
        if self.running_for is None:
            return ""
        minutes = int(self.running_for.total_seconds() // 60)
        days, rest = divmod(minutes, 24 * 60)
        hours, mins = divmod(rest, 60)
        if days:
            return f"{days} d {hours} h"
        if hours:
            return f"{hours} h {mins} min"
        return f"{mins} min"


def performance(bot: Bot, total_profit: Decimal | None) -> Performance:
    """The return on capital; the APR only once the bot ran (in market time) a day or more."""
    capital = bot.capital
    ratio = total_profit / capital if total_profit is not None and capital else None
    running_for = None
    if bot.market_started_at and bot.cursor and bot.cursor >= bot.market_started_at:
        running_for = bot.cursor - bot.market_started_at
    apr = None
    if ratio is not None and running_for is not None and running_for >= APR_FROM:
        apr = ratio * Decimal(365 * 86400) / Decimal(running_for.total_seconds())
    return Performance(ratio, apr, running_for)


NO_PERFORMANCE = Performance(None, None, None)


@dataclass(frozen=True)
class BotStatistics:
    price: Decimal | None
    equity: Decimal
    quote: Decimal
    base: Decimal
    total_trades: int
    win_rate: Decimal
    total_profit: Decimal
    grid_profit: Decimal
    unrealized_pnl: Decimal
    fees_paid: Decimal
    max_drawdown: Decimal
    apr: Decimal | None
    hodl_profit: Decimal | None
    profit_vs_hodl: Decimal | None
    # The bot's orders resting now (written or on the book): a stopped bot's are none.
    open_orders: int
    # Base coins held beyond (or short of) the slots' own: fees taken in the coin, and sells
    # cut to the market's step (live bots only).
    dust: Decimal = ZERO
    return_ratio: Decimal | None = None
    running_for: timedelta | None = None

    @property
    def performance(self) -> Performance:
        return Performance(self.return_ratio, self.apr, self.running_for)


def resting_orders(bot: Bot) -> int:
    """How many of the bot's orders rest now (one count query)."""
    return bot.orders.filter(status__in=Order.RESTING).count()


def bot_statistics(bot: Bot, *, open_orders: int | None = None) -> BotStatistics:
    """The numbers a user sees for a bot, from its saved state (and a count of its resting
    orders unless ``open_orders`` is given)."""
    capital = bot.capital
    if open_orders is None:
        open_orders = resting_orders(bot)
    if not bot.engine_state:
        return BotStatistics(
            None, capital, capital, ZERO, 0, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, None, None,
            None, open_orders,
        )  # fmt: skip
    engine = bot.engine()
    price = bot.last_price or engine.start_price
    mark = engine.stop_mark if engine.is_stopped else price
    equity = engine.equity(mark)
    cost_basis = sum((s.acquired * s.amount for s in engine.slots if s.acquired), ZERO)
    unrealized = engine.base * mark - cost_basis if engine.base else ZERO
    total_profit = bot.total_profit(equity)  # earlier runs' profit included
    perf = performance(bot, total_profit)
    hodl = capital / engine.start_price * price - capital if engine.start_price else None
    return BotStatistics(
        price=price,
        equity=equity,
        quote=engine.quote,
        base=engine.base,
        total_trades=engine.total_trades,
        win_rate=engine.win_rate,
        total_profit=total_profit,
        grid_profit=engine.grid_profit,
        unrealized_pnl=unrealized,
        fees_paid=engine.fees_paid,
        max_drawdown=bot.max_drawdown,
        apr=perf.apr,
        hodl_profit=hodl,
        # Holding is compared with this run (from its start price), not with earlier runs.
        profit_vs_hodl=(equity - capital - hodl) if hodl is not None else None,
        open_orders=open_orders,
        dust=engine.dust,
        return_ratio=perf.return_ratio,
        running_for=perf.running_for,
    )


@dataclass(frozen=True)
class RiskSettings:
    """The bot's protections as set: None where switched off."""

    stop_loss_pct: Decimal | None
    stop_loss_price: Decimal | None
    take_profit: Decimal | None
    max_daily_loss: Decimal | None


def risk_settings(bot: Bot) -> RiskSettings:
    config = bot.config

    def number(key: str) -> Decimal | None:
        try:
            d = Decimal(str(config.get(key) or "0"))
        except ArithmeticError:
            return None
        return d if d.is_finite() and d > 0 else None

    pct, lower = number("stop_loss_pct"), number("lower_bound")
    stop = lower * (1 - pct / 100) if pct is not None and lower is not None else None
    return RiskSettings(pct, stop, number("take_profit"), number("max_daily_loss"))


# --- dashboard cards -----------------------------------------------------------------------------


@dataclass
class Card:
    bot: Bot
    price: Decimal | None
    total_profit: Decimal | None
    grid_profit: Decimal
    round_trips: int
    open_orders: int
    spark: str
    spark_up: bool
    performance: Performance = dataclasses.field(
        default_factory=lambda: Performance(None, None, None)
    )

    @property
    def quote(self) -> str:
        return self.bot.quote_asset

    @property
    def lower(self) -> Any:
        return self.bot.config.get("lower_bound")

    @property
    def upper(self) -> Any:
        return self.bot.config.get("upper_bound")


def _card_bots(
    owner_id: int, bot_ids: Iterable[int] | None = None, *, archived_too: bool = False
) -> list[Bot]:
    """The owner's bots not archived (an archived bot has no card), with their open orders;
    ``archived_too``: the archived ones as well (for the dashboard's list of them)."""
    qs = Bot.objects.filter(owner_id=owner_id).annotate(
        open_orders=Count("orders", filter=Q(orders__status__in=Order.RESTING))
    )
    if not archived_too:
        qs = qs.active()
    if bot_ids is not None:
        qs = qs.filter(pk__in=list(bot_ids))
    return list(qs.order_by("-created_at"))


def _equity_series(bot_ids: list[int]) -> dict[int, list[Decimal]]:
    """The last SPARK_POINTS equity marks of each bot, oldest first: one query for all bots."""
    if not bot_ids:
        return {}
    rows = (
        EquitySnapshot.objects.filter(bot_id__in=bot_ids)
        .annotate(
            n=Window(RowNumber(), partition_by=[F("bot_id")], order_by=F("at").desc()),
        )
        .filter(n__lte=SPARK_POINTS)
        .order_by("bot_id", "at")
        .values_list("bot_id", "equity")
    )
    out: dict[int, list[Decimal]] = defaultdict(list)
    for bot_id, equity in rows:
        out[bot_id].append(equity)
    return out


def dashboard_cards(owner_id: int, bot_ids: Iterable[int] | None = None) -> list[Card]:
    """Cards for the owner's bots (or those of ``bot_ids`` among them), newest first.

    Read from the bot rows (the cycle keeps last price, equity and the engine's totals there),
    one annotated query for the open orders and one for all the sparklines: the dashboard with
    20 bots runs as many queries as with one.
    """
    return _cards(_card_bots(owner_id, bot_ids))


def desk(owner_id: int) -> tuple[list[Card], list[ArchivedRow]]:
    """The dashboard's cards and its list of archived bots, from one query of the bots."""
    bots = _card_bots(owner_id, archived_too=True)
    put_away = sorted(
        (b for b in bots if b.archived_at is not None),
        key=lambda b: (b.archived_at, b.pk),
        reverse=True,
    )
    return _cards([b for b in bots if b.archived_at is None]), [_archived(b) for b in put_away]


def _cards(bots: list[Bot]) -> list[Card]:
    series = _equity_series([b.pk for b in bots])
    prices = prices_for((b.exchange, b.symbol) for b in bots)
    cards = []
    for bot in bots:
        state = bot.engine_state or {}
        equity = series.get(bot.pk, [])
        price = prices.get((bot.exchange, bot.symbol)) or bot.last_price
        total = None
        if bot.last_equity is not None:
            total = bot.total_profit(bot.last_equity)
        cards.append(
            Card(
                bot=bot,
                price=price,
                total_profit=total,
                grid_profit=Decimal(state.get("grid_profit", "0")),
                round_trips=int(state.get("total_trades", 0)),
                open_orders=bot.open_orders,  # type: ignore[attr-defined]
                spark=sparkline(equity),
                spark_up=len(equity) < 2 or equity[-1] >= equity[0],
                performance=performance(bot, total),
            )
        )
    return cards


@dataclass(frozen=True)
class ArchivedRow:
    bot: Bot
    total_profit: Decimal | None
    round_trips: int


def _archived(bot: Bot) -> ArchivedRow:
    return ArchivedRow(
        bot=bot,
        total_profit=bot.total_profit(bot.last_equity) if bot.last_equity is not None else None,
        round_trips=int((bot.engine_state or {}).get("total_trades", 0)),
    )


@dataclass(frozen=True)
class Total:
    """The bots of one quote currency added up: their capital, profit and return."""

    quote: str
    bots: int
    capital: Decimal
    profit: Decimal

    @property
    def return_ratio(self) -> Decimal | None:
        return self.profit / self.capital if self.capital else None


def totals(cards: Iterable[Card]) -> list[Total]:
    """One total per quote currency (USDT and USDC are not added together)."""
    by_quote: dict[str, list[Card]] = defaultdict(list)
    for card in cards:
        by_quote[card.quote].append(card)
    return [
        Total(
            quote=quote,
            bots=len(group),
            capital=sum((c.bot.capital for c in group), ZERO),
            profit=sum((c.total_profit or ZERO for c in group), ZERO),
        )
        for quote, group in sorted(by_quote.items())
    ]


def paper_balances(owner_id: int) -> list[PaperBalance]:
    return list(PaperBalance.objects.filter(owner_id=owner_id))


@dataclass(frozen=True)
class WalletValue:
    """The paper wallet in one quote currency at the prices now: its free money, its coins
    at their price, and what its running bots hold (their capital's value now, not as
    started). ``unpriced``: coins with no price in that currency (not counted)."""

    quote: str
    free: Decimal
    coins: Decimal
    in_bots: Decimal
    unpriced: list[str]

    @property
    def total(self) -> Decimal:
        return self.free + self.coins + self.in_bots


WALLET_QUOTE = "USDT"


def wallet_value(
    owner_id: int,
    balances: list[PaperBalance],
    *,
    bots: list[Bot] | None = None,
    known: dict[tuple[str, str], Decimal | None] | None = None,
) -> WalletValue | None:
    """The paper wallet's value in USDT. ``bots`` (the owner's, when the caller has them) and
    ``known`` prices spare their look-ups: the dashboard reads neither twice."""
    if not balances:
        return None
    if bots is None:
        bots = list(
            Bot.objects.filter(owner_id=owner_id, mode=Bot.Mode.PAPER, status=Bot.Status.RUNNING)
            .exclude(engine_state__isnull=True)
            .only("pk", "exchange", "symbol", "engine_state", "last_price", "config", "mode")
        )
    running = [
        b for b in bots if b.mode == Bot.Mode.PAPER and b.is_running and b.engine_state
    ]  # fmt: skip
    exchange_of = {b.base_asset: b.exchange for b in running}
    coins = [b for b in balances if b.asset != WALLET_QUOTE and (b.free or b.locked)]
    pairs = [(exchange_of.get(b.asset, "binance"), f"{b.asset}/{WALLET_QUOTE}") for b in coins]
    pairs += [(b.exchange, b.symbol) for b in running]
    known = known or {}
    prices = {pair: known[pair] for pair in pairs if pair in known}
    prices |= prices_for(pair for pair in pairs if pair not in known)
    free = sum((b.free for b in balances if b.asset == WALLET_QUOTE), ZERO)
    coin_value, unpriced = ZERO, []
    for b in coins:
        p = prices.get((exchange_of.get(b.asset, "binance"), f"{b.asset}/{WALLET_QUOTE}"))
        if p is None:
            unpriced.append(b.asset)
        else:
            coin_value += (b.free + b.locked) * p
    in_bots = ZERO
    for bot in running:
        if bot.quote_asset != WALLET_QUOTE:
            unpriced.append(bot.symbol)
            continue
        state = bot.engine_state or {}
        p = prices.get((bot.exchange, bot.symbol)) or bot.last_price or ZERO
        base = Decimal(state.get("base", "0")) + Decimal(state.get("dust", "0"))
        in_bots += Decimal(state.get("quote", "0")) + base * p
    return WalletValue(WALLET_QUOTE, free, coin_value, in_bots, unpriced)


def render_cards(owner_id: int, bot_ids: Iterable[int] | None = None) -> str:
    """The dashboard cards as out-of-band fragments (each swaps its own ``bot-<pk>-card``)."""
    return "".join(
        render_to_string("bots/dashboard.html#bot-card", {"card": card})
        for card in dashboard_cards(owner_id, bot_ids)
    )


def render_totals(owner_id: int) -> str:
    """The all-bots totals as an out-of-band swap (a push of one card moves them too)."""
    ctx = {"totals": totals(dashboard_cards(owner_id)), "oob": True}
    return render_to_string("bots/dashboard.html#totals", ctx)


def paper_wallet(owner_id: int, cards: list[Card] | None = None) -> dict[str, Any]:
    """The paper wallet's balances and their value now (the dashboard's ``paper-balance``);
    ``cards``: all the owner's, when the caller has them (their bots and prices are used)."""
    balances = paper_balances(owner_id)
    extra: dict[str, Any] = {}
    if cards is not None:
        extra["bots"] = [c.bot for c in cards]
        extra["known"] = {(c.bot.exchange, c.bot.symbol): c.price for c in cards}
    return {"balances": balances, "wallet_value": wallet_value(owner_id, balances, **extra)}


def render_paper_balance(owner_id: int) -> str:
    """The paper wallet as an out-of-band swap: starts and stops move money in and out of it."""
    ctx = paper_wallet(owner_id) | {"oob": True}
    return render_to_string("bots/dashboard.html#paper-balance", ctx)


# --- the bot page --------------------------------------------------------------------------------


@dataclass
class LadderRow:
    """One grid (slot i, from line i to line i+1) and the order resting on it."""

    slot: int
    low: Decimal
    high: Decimal
    state: str  # "quote" (rests a buy at low), "base" (rests a sell at high), "" (not started)
    acquired: Decimal | None
    side: str
    order_price: Decimal | None
    amount: Decimal | None
    order: Order | None  # the order row resting on the book, when there is one
    price_inside: bool  # the market price is within this grid


def ladder(
    bot: Bot, engine: GridEngine | None, preview: GridPreview | None, price: Decimal | None
) -> list[LadderRow]:
    """The slots from the top of the range down, with their resting orders (one query)."""
    rows: list[LadderRow] = []
    if engine is not None:
        resting = {
            o.slot: o
            for o in bot.orders.filter(
                status__in=[Order.Status.OPEN, Order.Status.PENDING], slot__isnull=False
            )
        }
        lines = engine.lines
        # Rows by position (lines i..i+1), orders by the slot's id: they differ once the
        # grid has moved (trailing), when slots keep their ids and lines shift under them.
        for i, slot in enumerate(engine.slots):
            want = engine.resting_order(slot.id) if not engine.is_stopped else None
            rows.append(
                LadderRow(
                    slot=slot.id,
                    low=lines[i],
                    high=lines[i + 1],
                    state=slot.state.value,
                    acquired=slot.acquired,
                    side=want.side.value if want else "",
                    order_price=want.price if want else None,
                    amount=want.amount if want else None,
                    order=resting.get(slot.id),
                    price_inside=price is not None and lines[i] <= price <= lines[i + 1],
                )
            )
    elif preview is not None:
        lines = [line.price for line in preview.lines]
        states = preview.config.start_states(price) if price is not None else []
        for i in range(len(lines) - 1):
            state = states[i].value if states else ""
            side = ""
            if states:
                side = "buy" if states[i] == SlotState.QUOTE else "sell"
            rows.append(
                LadderRow(
                    slot=i,
                    low=lines[i],
                    high=lines[i + 1],
                    state=state,
                    acquired=None,
                    side=side,
                    order_price=(lines[i] if side == "buy" else lines[i + 1]) if side else None,
                    amount=preview.order_amount,
                    order=None,
                    price_inside=price is not None and lines[i] <= price <= lines[i + 1],
                )
            )
    rows.reverse()
    return rows


def _engine_and_preview(
    bot: Bot, price: Decimal | None
) -> tuple[GridEngine | None, GridPreview | None, str]:
    """The running grid (its slots and resting orders), or, for a bot not running, the grid a
    start would place at ``price``: a stopped bot's old slots rest nothing on the book."""
    if bot.engine_state and bot.is_running:
        return bot.engine(), None, ""
    try:
        grid = schema.grid_config_for(bot.config, exchange=bot.exchange, symbol=bot.symbol)
    except BotError as e:
        return None, None, str(e)
    return None, grid_preview(grid, price), ""


def trades_page(bot: Bot, number: Any = 1) -> Page:
    return Paginator(bot.trades.all(), TRADES_PER_PAGE).get_page(number)


# The engine's trigger and trailing events (``GridEvent.kind``, kept in ``BotEvent.data``
# as ``grid_event``), as the log names them.
GRID_EVENT_LABELS = {
    "triggered": "Triggered",
    "shift_up": "Grid moved up",
    "shift_down": "Grid moved down",
    "trailing_up_stopped": "Trailing up stopped",
    "trailing_down_stopped": "Trailing down stopped",
}
GRID_MOVES = ("triggered", "shift_up", "shift_down")
CHART_MOVES = 500


def events(bot: Bot) -> list[BotEvent]:
    """The newest events, each with ``label``: its kind in words (a trigger or trailing event
    by what the engine did, "Grid moved up", not only its row's kind)."""
    rows = list(bot.events.all()[:EVENTS_SHOWN])
    for e in rows:
        data = e.data if isinstance(e.data, dict) else {}
        grid_event = data.get("grid_event", "")
        grid_event = grid_event if grid_event in GRID_EVENT_LABELS else ""
        e.grid_event = grid_event  # type: ignore[attr-defined]
        e.label = GRID_EVENT_LABELS.get(grid_event) or e.get_kind_display()  # type: ignore[attr-defined]
    return rows


def grid_moves(bot: Bot) -> list[list[Any]]:
    """Where the grid was over time, from its trigger and shift events (oldest first):
    ``[time_ms, "triggered"|"up"|"down", lowest line, highest line]``, the lines after the
    move as strings, like a backtest's ``grid_moves``. One query."""
    rows = (
        bot.events.filter(data__grid_event__in=GRID_MOVES)
        .order_by("-id")
        .values_list("market_time", "at", "data")[:CHART_MOVES]
    )
    moves: list[list[Any]] = []
    for market_time, at, data in reversed(list(rows)):
        lines = data.get("lines") or []
        if len(lines) < 2:
            continue
        when = market_time or at
        kind = {"shift_up": "up", "shift_down": "down"}.get(data["grid_event"], "triggered")
        moves.append([int(when.timestamp() * 1000), kind, str(lines[0]), str(lines[-1])])
    return moves


def bot_context(bot: Bot, *, trades: Any = 1, parts: Iterable[str] = CHANGES) -> dict[str, Any]:
    """What the bot page's partials need; ``parts`` limits the work to what will be shown."""
    parts = set(parts)
    price = market_services.latest_price(bot.exchange, bot.symbol) or bot.last_price
    replay = replayed()
    ctx: dict[str, Any] = {"bot": bot, "price": price, "replayed": replay, "clock": clock(replay)}
    if parts & {"status", "stats"}:
        ctx["stats"] = bot_statistics(bot)
    if "status" in parts:
        ctx["risk"] = risk_settings(bot)
    if "status" in parts and bot.mode == Bot.Mode.LIVE and not bot.is_running:
        ctx["going_live"] = starting.going_live_problem(bot)  # paper first, verified keys
    if "orders" in parts:
        engine, preview, problem = _engine_and_preview(bot, price)
        ctx.update(
            engine=engine,
            preview=preview,
            grid_problem=problem,
            ladder=ladder(bot, engine, preview, price),
        )
    if "trades" in parts:
        ctx["trades"] = trades_page(bot, trades)
    if "events" in parts:
        ctx["events"] = events(bot)
    return ctx


@dataclass(frozen=True)
class Books:
    """How much history a bot has (what deleting it removes)."""

    round_trips: int
    trades: int
    events: int


def books_count(bot: Bot) -> Books:
    """Three counts (not one query joining all three: that would multiply the rows)."""
    return Books(
        round_trips=bot.trades.count(),
        trades=bot.orders.filter(Q(status=Order.Status.FILLED) | Q(filled__gt=0)).count(),
        events=bot.events.count(),
    )


@dataclass(frozen=True)
class StopSummary:
    """What a stop does, for the confirmation that offers to keep the coins or sell them."""

    open_orders: int
    base: Decimal  # the bot's coins (dust included)
    price: Decimal | None
    live: bool

    @property
    def value(self) -> Decimal | None:
        """The coins at the price now (a market sale gets about this, less its fee)."""
        return self.base * self.price if self.price is not None else None


def stop_summary(bot: Bot) -> StopSummary:
    price = market_services.latest_price(bot.exchange, bot.symbol) or bot.last_price
    base = ZERO
    if bot.engine_state:
        engine = bot.engine()
        base = engine.base + engine.dust
    return StopSummary(resting_orders(bot), base, price, bot.mode == Bot.Mode.LIVE)


_PARTIALS = {
    "status": "status-card",
    "stats": "stats",
    "orders": "ladder",
    "trades": "trades",
    "events": "events",
}


def render_bot(bot_id: int, changes: Iterable[str] = CHANGES) -> str:
    """The bot page's fragments for ``changes``, as out-of-band swaps by id."""
    changes = set(changes) & set(_PARTIALS)
    bot = Bot.objects.get(pk=bot_id)
    if "status" in changes:
        changes.add("stats")  # a start or a stop moves the numbers too
    ctx = bot_context(bot, parts=changes)
    ctx["pushed"] = True
    return "".join(
        render_to_string(f"bots/bot_detail.html#{_PARTIALS[name]}", ctx)
        for name in CHANGES
        if name in changes
    )


def render_price(bot_ids: Iterable[int], price: str) -> str:
    """The price on each of these bots' cards or page: tiny fragments, no queries."""
    return "".join(
        render_to_string("bots/_price.html", {"bot_id": pk, "price": price}) for pk in bot_ids
    )


# --- the chart -----------------------------------------------------------------------------------

CHART_CANDLES = 720  # twelve hours of one-minute candles


def recent_candles(exchange: str, symbol: str, limit: int = CHART_CANDLES) -> list[list[Any]]:
    """The pair's last ``limit`` one-minute candles, oldest first, as chart rows:
    ``[epoch seconds, open, high, low, close]`` (prices as floats: the chart draws floats)."""
    from market.models import Candle

    rows = list(
        Candle.objects.for_series(exchange, symbol)
        .order_by("-open_time")
        .values_list("open_time", "open", "high", "low", "close")[:limit]
    )
    rows.reverse()
    return [
        [int(t.timestamp()), float(o), float(h), float(lo), float(c)] for t, o, h, lo, c in rows
    ]


def chart_state(bot: Bot) -> dict[str, Any]:
    """Grid lines, resting orders and recent fills: what the chart draws over the candles."""
    lines: list[str] = []
    ends: list[str] = []  # the lowest and highest line as configured, before any move
    if bot.engine_state:
        lines = list(bot.engine_state.get("lines", []))
        ends = _configured_ends(bot.engine_state.get("config") or {})
    else:
        try:
            grid = schema.grid_config_for(bot.config, exchange=bot.exchange, symbol=bot.symbol)
            lines = [str(p) for p in grid.lines]
            ends = [lines[0], lines[-1]]
        except BotError:
            lines = []
    trailing = "true" in (bot.config.get("trailing_up"), bot.config.get("trailing_down"))
    orders = [
        {"slot": slot, "side": side, "price": plain(price), "amount": plain(amount)}
        for slot, side, price, amount in bot.orders.filter(status=Order.Status.OPEN)
        .order_by("price")
        .values_list("slot", "side", "price", "amount")
    ]
    fills = [
        {"time_ms": int(at.timestamp() * 1000), "side": side, "price": plain(price)}
        for at, side, price in bot.orders.filter(
            status=Order.Status.FILLED, slot__isnull=False, filled_at__isnull=False
        )
        .order_by("-filled_at", "-id")
        .values_list("filled_at", "side", "price")[:CHART_FILLS]
    ]
    fills.reverse()
    return {
        "type": "grid",
        "bot_id": bot.pk,
        "status": bot.status,
        "lines": lines,
        "orders": orders,
        "fills": fills,
        # the grid moving: its range before the first move, and each move since
        "start_lines": ends,
        "moves": grid_moves(bot) if trailing else [],  # no query for a grid that cannot move
    }


def _configured_ends(config: dict[str, Any]) -> list[str]:
    """A saved engine's configured range on its tick (its first and last line: GRID_SPEC's
    lines round the bounds themselves), without a query for the market's rules."""
    try:
        tick = Decimal(config["tick"])
        return [plain(round_price(Decimal(config[k]), tick)) for k in ("lower", "upper")]
    except (KeyError, TypeError, ArithmeticError):
        return []
