"""The JSON API's bots: ``/api/bots`` and everything under one bot.

Every query goes through ``_own_bot`` / ``Bot.objects.owned_by``: another user's bot is a 404,
never a 403 that would say it exists. The verbs are the services the pages use (create, update,
start, stop, delete), so a refusal reads the same here and there; configs go through the one
schema (``bots.config``), whose errors name the config key. Amounts are the quote currency's
unless a field says otherwise.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import Field

from accounts.models import ExchangeCredential
from aibo.api_common import errors
from bots import config as schema
from bots import pages, regrid, services
from bots.config import KEYS
from bots.errors import ConfigError
from bots.grid.preview import grid_preview
from bots.models import Bot, Order, Trade
from market import pairs

EXCHANGE = "binance"
router = Router(tags=["bots"])


# --- schemas ---------------------------------------------------------------------------------


class ConfigIn(Schema):
    """A grid's settings. Numbers may be JSON numbers or strings (both read exactly); the
    bounds are the bot form's, checked by the same schema (``GRID_MIN_LEVELS``..
    ``GRID_MAX_LEVELS`` lines, the market's tick, step and minimum order)."""

    capital: Decimal = Field(description="in the quote currency: 0 < capital ≤ 1,000,000")
    lower_bound: Decimal = Field(description="the lowest grid line, > 0")
    upper_bound: Decimal = Field(description="the highest grid line, above lower_bound")
    grid_levels: int = Field(description="how many price lines (10..50 by default)")
    stop_loss_pct: Decimal = Field(
        default=Decimal(0), description="percent below lower_bound to stop at, 0..10 (0: off)"
    )
    max_daily_loss: Decimal = Field(
        default=Decimal(0), description="stop after losing this much in a UTC day (0: off)"
    )
    spacing: Literal["arithmetic", "geometric"] = "arithmetic"
    take_profit: Decimal | None = Field(
        default=None, description="a price: sell everything and stop when reached"
    )
    trigger_price: Decimal | None = Field(
        default=None,
        description="a price: the started bot waits, placing nothing, until the price reaches "
        "it, then starts its grid there (null: start at once)",
    )
    trailing_up: bool = Field(
        default=False,
        description="when the price rises past the top line, move the grid up one line at a "
        "time: the lowest buy is cancelled and a buy rests at the old top (no trade)",
    )
    trailing_up_limit: Decimal | None = Field(
        default=None,
        description="with trailing_up: no shift puts a line above this price (null: no limit; "
        "a take_profit must be above it)",
    )
    trailing_down: bool = Field(
        default=False,
        description="when the price falls past the bottom line and every grid holds coins, move "
        "the grid down one line at a time: the top grid's coins rest a sell at the old bottom "
        "(no trade, no new money); needs trailing_down_limit",
    )
    trailing_down_limit: Decimal | None = Field(
        default=None,
        description="the floor for trailing_down, required with it: no line goes below this "
        "price (above the stop-loss price when both are set)",
    )

    def stored(self) -> dict[str, Any]:
        """The config as the one schema reads it (flags as its "true"/"false")."""
        out = {}
        for key in KEYS:
            value = getattr(self, key)
            out[key] = ("true" if value else "false") if isinstance(value, bool) else value
        return out


LOSS_CONSENT = Field(
    default=False,
    description="a grid whose narrowest round trip loses money after fees is refused (422 on "
    "accept_loss) unless this is true, as the bot form asks for its box to be ticked",
)


class BotIn(Schema):
    strategy: Literal["grid"] = "grid"
    pair: str = Field(max_length=30, examples=["BTC/USDT"])
    config: ConfigIn
    accept_loss: bool = LOSS_CONSENT
    name: str = Field(default="", max_length=80)
    mode: Literal["paper", "live"] = "paper"
    credential_id: int | None = Field(
        default=None, description="your exchange keys, for a live bot"
    )


CONFIG_OUT = Field(
    description="the stored config: every key of ConfigIn as a string (numbers exact, flags "
    '"true"/"false", an unset price "")'
)


class BotOut(Schema):
    id: int
    strategy: str
    pair: str
    status: str
    config: dict[str, str] = CONFIG_OUT


class BotListed(BotOut):
    created_at: datetime


class BotDetail(BotListed):
    updated_at: datetime


class ConfigUpdate(Schema):
    config: ConfigIn
    accept_loss: bool = LOSS_CONSENT


class Updated(Schema):
    id: int
    updated_config: dict[str, str] = CONFIG_OUT


class StartIn(Schema):
    confirm: str = Field(
        default="",
        max_length=30,
        description="a live bot starts only with its pair typed here, e.g. BTC/USDT",
    )


class StopIn(Schema):
    sell: bool = Field(default=False, description="sell the bot's coins at market (else keep)")


class StatusOut(Schema):
    status: str


class OrderOut(Schema):
    id: int
    side: str
    price: Decimal
    amount: Decimal
    status: str
    created_at: datetime


class OrderFilter(Schema):
    status: Literal["pending", "open", "filled", "cancelled", "rejected"] | None = None


class TradeOut(Schema):
    id: int
    buy_price: Decimal
    sell_price: Decimal
    profit: Decimal = Field(description="after both orders' fees")
    created_at: datetime = Field(description="when the round trip closed")


class Page(Schema):
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=10_000_000)


class BalanceOut(Schema):
    free: Decimal = Field(description="quote not committed to resting orders")
    locked: Decimal = Field(description="in resting orders: buys' quote, sells' coins at price")
    total: Decimal = Field(description="the bot's equity at the last price")


class StatsOut(Schema):
    total_trades: int
    win_rate: Decimal = Field(description="a fraction, 0..1")
    total_profit: Decimal
    max_drawdown: Decimal = Field(description="a fraction of the peak equity, 0..1")


# --- helpers ---------------------------------------------------------------------------------


def _own_bot(request: HttpRequest, bot_id: int) -> Bot:
    return get_object_or_404(
        Bot.objects.select_related("credential"), pk=bot_id, owner=request.auth
    )


# What the stored config leaves out when an extension is off (``schema.normalise``).
OFF = {"trailing_up": "false", "trailing_down": "false"}


def config_out(config: dict[str, str]) -> dict[str, str]:
    """A stored config with every key of the schema, the extensions that are off said so:
    one shape for every bot, whatever it was created with."""
    return {key: config.get(key, OFF.get(key, "")) for key in KEYS} | config


def _out(bot: Bot) -> dict[str, Any]:
    return {
        "id": bot.pk, "strategy": bot.strategy, "pair": bot.symbol, "status": bot.status,
        "config": config_out(bot.config), "created_at": bot.created_at,
        "updated_at": bot.updated_at,
    }  # fmt: skip


def _consent_to_loss(symbol: str, config: dict[str, Any], accepted: bool) -> None:
    """A grid that loses money after fees on a round trip needs ``accept_loss`` (the form's
    box); the config's own errors are the services' to say."""
    if accepted:
        return
    try:
        grid = schema.grid_config_for(config, exchange=EXCHANGE, symbol=symbol)
    except ConfigError:
        return
    preview = grid_preview(grid, schema.reference_price(EXCHANGE, symbol))
    if preview.unprofitable:
        raise HttpError(
            422,
            f"accept_loss: {preview.losing_grids} of this grid's {preview.grids} grids lose "
            "money on every round trip after fees; use fewer price lines or a wider range, or "
            "send accept_loss: true to create it anyway.",
        )


# --- the bots --------------------------------------------------------------------------------


@router.get("", response={200: list[BotListed], **errors()}, summary="Your bots")
def list_bots(request: HttpRequest) -> list[dict[str, Any]]:
    return [_out(b) for b in Bot.objects.owned_by(request.auth).order_by("pk")]


@router.post("", response={201: BotOut, **errors(400, 422)}, summary="Create a bot (stopped)")
def create_bot(request: HttpRequest, payload: BotIn) -> Status[dict[str, Any]]:
    try:
        rules = pairs.choose_pair(EXCHANGE, payload.pair)
    except pairs.PairError as e:
        raise HttpError(422, f"pair: {e}") from None
    credential = None
    if payload.mode == Bot.Mode.LIVE:
        credential = ExchangeCredential.objects.filter(
            pk=payload.credential_id or 0, owner=request.auth
        ).first()
        if credential is None:
            raise HttpError(422, "credential_id: a live bot needs the id of your exchange keys.")
    _consent_to_loss(rules.symbol, payload.config.stored(), payload.accept_loss)
    bot = services.create_bot(
        request.auth,
        symbol=rules.symbol,
        config=payload.config.stored(),
        name=payload.name.strip(),
        mode=payload.mode,
        exchange=EXCHANGE,
        credential=credential,
    )
    return Status(201, _out(bot))


@router.get("/{bot_id}", response={200: BotDetail, **errors(404, 422)}, summary="One bot")
def get_bot(request: HttpRequest, bot_id: int) -> dict[str, Any]:
    return _out(_own_bot(request, bot_id))


@router.put(
    "/{bot_id}",
    response={200: Updated, **errors(400, 404, 409, 422)},
    summary="Change a stopped bot's grid",
)
def update_bot(request: HttpRequest, bot_id: int, payload: ConfigUpdate) -> Updated:
    bot = _own_bot(request, bot_id)
    if bot.is_running:
        raise HttpError(
            409,
            f"{bot} is running: stop it before changing its grid, or change the running grid "
            f"with POST /api/bots/{bot.pk}/grid/preview, then /api/bots/{bot.pk}/grid.",
        )
    _consent_to_loss(bot.symbol, payload.config.stored(), payload.accept_loss)
    services.update_bot_config(bot, payload.config.stored())
    return Updated(id=bot.pk, updated_config=config_out(bot.config))


@router.post(
    "/{bot_id}/start",
    response={200: StatusOut, **errors(400, 404, 409, 422)},
    summary="Start a bot",
)
def start_bot(request: HttpRequest, bot_id: int, payload: StartIn | None = None) -> StatusOut:
    bot = _own_bot(request, bot_id)
    if bot.is_running:
        raise HttpError(409, f"{bot} is running already.")
    services.start_asked(bot, typed_pair=(payload.confirm if payload else "") or None)
    return StatusOut(status="started")


@router.post(
    "/{bot_id}/stop",
    response={200: StatusOut, **errors(400, 404, 409, 422)},
    summary="Stop a bot, cancelling its orders",
)
def stop_bot(request: HttpRequest, bot_id: int, payload: StopIn | None = None) -> StatusOut:
    bot = _own_bot(request, bot_id)
    if not bot.is_running:
        raise HttpError(409, f"{bot} is not running.")
    services.stop_bot(bot, sell=bool(payload and payload.sell))
    return StatusOut(status="stopped")


@router.delete(
    "/{bot_id}",
    response={200: StatusOut, **errors(404, 409, 422)},
    summary="Delete a bot and its history",
)
def delete_bot(request: HttpRequest, bot_id: int) -> StatusOut:
    """A running bot is stopped first (a live one's orders cancelled on the exchange); then the
    bot, its orders, round trips and events are removed. Export them first if you need them."""
    services.delete_bot(_own_bot(request, bot_id))
    return StatusOut(status="deleted")


# --- what a bot holds and did ----------------------------------------------------------------


@router.get(
    "/{bot_id}/orders",
    response={200: list[OrderOut], **errors(404, 422)},
    summary="A bot's orders, newest first",
)
def orders(request: HttpRequest, bot_id: int, query: Query[OrderFilter]) -> Any:
    bot = _own_bot(request, bot_id)
    rows = Order.objects.filter(bot=bot).order_by("-created_at", "-pk")
    if query.status:
        rows = rows.filter(status=query.status)
    return rows[:1000]


@router.get(
    "/{bot_id}/trades",
    response={200: list[TradeOut], **errors(404, 422)},
    summary="A bot's round trips",
)
def trades(request: HttpRequest, bot_id: int, page: Query[Page]) -> list[dict[str, Any]]:
    bot = _own_bot(request, bot_id)
    rows = Trade.objects.filter(bot=bot).order_by("-closed_at", "-pk")
    return [
        {"id": t.pk, "buy_price": t.buy_price, "sell_price": t.sell_price, "profit": t.profit,
         "created_at": t.closed_at}
        for t in rows[page.offset : page.offset + page.limit]
    ]  # fmt: skip


@router.get(
    "/{bot_id}/balance",
    response={200: BalanceOut, **errors(404, 422)},
    summary="What the bot holds",
)
def balance(request: HttpRequest, bot_id: int) -> BalanceOut:
    bot = _own_bot(request, bot_id)
    stats = pages.bot_statistics(bot)
    locked = Decimal(0)
    if bot.is_running and bot.engine_state:
        mark = stats.price or Decimal(0)
        for order in bot.engine().desired_orders():
            locked += order.price * order.amount if order.side == "BUY" else order.amount * mark
    return BalanceOut(free=stats.equity - locked, locked=locked, total=stats.equity)


@router.get(
    "/{bot_id}/stats", response={200: StatsOut, **errors(404, 422)}, summary="A bot's statistics"
)
def stats(request: HttpRequest, bot_id: int) -> StatsOut:
    s = pages.bot_statistics(_own_bot(request, bot_id))
    return StatsOut(
        total_trades=s.total_trades,
        win_rate=s.win_rate,
        total_profit=s.total_profit,
        max_drawdown=s.max_drawdown,
    )


# --- a running bot's grid changed in place (issue 17) ----------------------------------------


class GridChangeIn(ConfigUpdate):
    """The running bot's new config, whole, as ``PUT /api/bots/{id}`` takes a stopped one's."""


class GridApplyIn(GridChangeIn):
    plan: str = Field(
        max_length=40, description="the plan you were shown: its id from POST …/grid/preview"
    )
    price: Decimal = Field(gt=0, description="the price that plan was made at (its price)")
    confirm: str = Field(
        default="",
        max_length=30,
        description="a live bot's change is made only with its pair typed here, e.g. BTC/USDT",
    )


class PlanOrderOut(Schema):
    slot: int | None
    side: str
    price: Decimal
    amount: Decimal = Field(description="in the base asset")


class MarketTradeOut(Schema):
    side: str
    price: Decimal = Field(description="the price now (applied: the average it filled at)")
    amount: Decimal = Field(description="in the base asset")
    fee: Decimal


class GridPlanOut(Schema):
    plan: str = Field(description="the plan's id: send it back with price to apply it")
    price: Decimal = Field(description="the price the plan is made at")
    changed: bool = Field(description="false: the config is the running one, nothing to do")
    cancels: list[PlanOrderOut] = Field(description="the old grid's orders cancelled")
    places: list[PlanOrderOut] = Field(description="the new grid's orders placed")
    market: MarketTradeOut | None = Field(
        description="bought or sold at market for the difference (null: nothing)"
    )
    fee: Decimal = Field(description="the change's cost in fees (the market order's)")
    transfer: Decimal = Field(
        description="added to the bot from the paper wallet (a live bot's: the account) to fund "
        "the new capital; negative: moved back there"
    )
    notes: list[str] = Field(description="every setting kept or changed and the money, in words")
    config: dict[str, str] = CONFIG_OUT


def _plan_out(plan: Any) -> GridPlanOut:
    def line(o: Any) -> PlanOrderOut:
        return PlanOrderOut(slot=o.slot, side=o.side, price=o.price, amount=o.amount)

    market = plan.market
    return GridPlanOut(
        plan=plan.digest, price=plan.price, changed=plan.changed,
        cancels=[line(o) for o in plan.cancels], places=[line(o) for o in plan.places],
        market=MarketTradeOut(side=market.side, price=market.price, amount=market.amount,
                              fee=market.fee) if market else None,
        fee=plan.fee, transfer=plan.transfer, notes=plan.notes, config=config_out(plan.config),
    )  # fmt: skip


def _running(request: HttpRequest, bot_id: int, payload: GridChangeIn) -> Bot:
    bot = _own_bot(request, bot_id)
    if not bot.is_running:
        raise HttpError(409, f"{bot} is not running: change its grid with PUT /api/bots/{bot.pk}.")
    _consent_to_loss(bot.symbol, payload.config.stored(), payload.accept_loss)
    return bot


@router.post(
    "/{bot_id}/grid/preview",
    response={200: GridPlanOut, **errors(400, 404, 409, 422)},
    summary="What changing a running bot's grid would do (nothing is changed)",
)
def preview_grid_change(request: HttpRequest, bot_id: int, payload: GridChangeIn) -> GridPlanOut:
    """The change as orders: the old grid's cancelled, the new grid's placed, what is bought or
    sold at market for the difference and its fee, the wallet's part, in numbers and words. A
    live bot's is made at the market feed's fresh price."""
    bot = _running(request, bot_id, payload)
    return _plan_out(services.plan_grid_edit(bot, payload.config.stored()))


@router.post(
    "/{bot_id}/grid",
    response={200: GridPlanOut, **errors(400, 404, 409, 422)},
    summary="Change a running bot's grid as previewed",
)
def apply_grid_change(request: HttpRequest, bot_id: int, payload: GridApplyIn) -> GridPlanOut:
    """Lays the plan you were shown (``plan`` and ``price`` from the preview) on the running
    bot, keeping its history, statistics and coins: done whole, or not at all (409 says why;
    a plan overtaken by a fill or a price move more than 1 % away is refused: preview again).
    A live bot's needs ``confirm`` (its pair), as a live start does."""
    bot = _running(request, bot_id, payload)
    shown = regrid.Shown(payload.plan, payload.price)
    done = services.apply_grid_edit(
        bot, payload.config.stored(), shown=shown, typed_pair=payload.confirm or None
    )
    return _plan_out(done)
