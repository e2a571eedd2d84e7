"""Bots: the verbs. Create, reconfigure, start, stop and emergency-stop bots.

The grid engine decides; ``bots.config`` says what a valid config is; ``ledger`` writes the
rows; ``live_trading`` talks to the exchange; ``cycle`` runs a bot once started. Every verb
either does all of its work or raises ``BotError`` (in words for the owner) having changed
nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from bots import config as schema
from bots import ledger, live_trading, regrid, starting
from bots.errors import BotError, LiveError
from bots.locks import bot_lock
from bots.models import Bot
from market.exchange import ExchangeError

logger = logging.getLogger(__name__)


def create_bot(
    owner: Any,
    *,
    symbol: str,
    config: dict[str, Any],
    name: str = "",
    mode: str = Bot.Mode.PAPER,
    exchange: str = "binance",
    credential: Any = None,
) -> Bot:
    check_credential(owner, mode, exchange, credential)
    config = schema.normalise(config)
    schema.validate(config, exchange=exchange, symbol=symbol)
    return Bot.objects.create(
        owner=owner, name=name, symbol=symbol, exchange=exchange, mode=mode, config=config,
        credential=credential if mode == Bot.Mode.LIVE else None,
    )  # fmt: skip


def check_credential(owner: Any, mode: str, exchange: str, credential: Any) -> None:
    """A live bot needs its owner's keys for its exchange; a paper bot needs none."""
    if mode != Bot.Mode.LIVE:
        return
    if credential is None:
        raise BotError("A live bot trades with your exchange keys: add them under Exchange keys.")
    if credential.owner_id != owner.pk:
        raise BotError("Those exchange keys are not yours.")
    if credential.exchange != exchange:
        raise BotError(f"Those keys are for {credential.exchange}, not {exchange}.")


def update_bot_config(bot: Bot, config: dict[str, Any]) -> None:
    if bot.is_running:
        raise BotError("Stop the bot before changing its grid.")
    config = schema.normalise(config)
    schema.validate(config, exchange=bot.exchange, symbol=bot.symbol)
    bot.config = config
    bot.save(update_fields=["config", "updated_at"])


def start_bot(bot: Bot) -> None:
    """Validate against the market and the paper balance, buy the start, rest the grid
    (``bots.starting``); the bot's chain of cycles begins once the start is committed. A live
    start checks paper first, the keys and the account's funds (not the typed pair: a person's
    start goes through ``start_asked``)."""
    token = starting.start(bot)
    transaction.on_commit(lambda: _after_start(bot.pk, token))


def start_asked(bot: Bot, *, typed_pair: str | None) -> None:
    """Start the bot as a person asks (the page, the dashboard, the command): a live bot only
    past paper first with verified keys, and with its pair typed: else ``ConfirmationNeeded``
    with what the start would do (``typed_pair`` None: nothing typed yet). Paper bots start
    at once."""
    if bot.mode == Bot.Mode.LIVE:
        starting.check_going_live(bot)
        starting.check_confirmation(bot, typed_pair)
    start_bot(bot)


def _after_start(bot_id: int, token: str) -> None:
    from bots.tasks import begin_chain  # the tasks call back into the cycle, not here

    begin_chain(bot_id, token)


def stop_bot(
    bot: Bot,
    *,
    reason: str = "stopped by you",
    status: str = Bot.Status.STOPPED,
    sell: bool = False,
) -> None:
    """Cancel every resting order; then, Binance's choice: keep the coins (a paper bot's go
    back to the paper wallet, a live bot's stay in the exchange account) or, with ``sell``,
    sell them at market (paper: at the last price with the taker fee; live: a market sale
    written down before it is sent, sent once under a fixed id, as a stop-loss sells). Either
    way the sale is booked as a market order and an event, and in the bot's statistics; coins
    worth less than the market's minimum order are kept, and the log says so."""
    if bot.mode == Bot.Mode.LIVE:
        # Written down first: whatever happens next, every later cycle finishes this stop.
        if bot.is_running:
            ledger.note_stopping(bot, reason=reason, sells=sell)
        try:
            with bot_lock(bot.pk):
                bot = Bot.objects.select_related("credential").get(pk=bot.pk)
                if not bot.is_running:
                    return
                live_trading.halt(
                    bot, live_trading.gateway(bot), reason=reason, status=status, sell=sell
                )
        except (LiveError, ExchangeError) as e:
            if sell:
                raise BotError(
                    f"{bot} is stopping: its orders could not be cancelled and its coins sold "
                    f"on {bot.exchange} yet ({e}). Every cycle tries again until it is done, "
                    "and never sells twice."
                ) from None
            raise BotError(
                f"{bot} is stopping: its orders could not be cancelled on {bot.exchange} yet "
                f"({e}). Every cycle tries again until none is left; you can also cancel "
                "them on the exchange."
            ) from None
        except BotError:  # busy with its exchange: the cycle that holds it finishes the stop
            raise BotError(
                f"{bot} is stopping: it is busy with {bot.exchange} right now, and its next "
                "cycle finishes the stop."
            ) from None
        return
    ledger.halt(bot, reason=reason, status=status, sell=sell)


def regrid_bot(bot: Bot, config: dict[str, Any]) -> list[str]:
    """Lay a new grid on a running paper bot without stopping it (``bots.regrid``): the old
    grid's orders are cancelled, its history and statistics kept, the coins it holds carried
    over (only the difference bought or sold at market, with fees, booked), and the new grid
    placed, all in one transaction (a failure leaves the old grid running). Keys ``config``
    does not set (absent, None or '') keep the old config's values. Returns what was kept or
    changed, in words (also written as events). A live bot is refused: its change needs its
    owner's confirmation (``apply_grid_edit``)."""
    return regrid.regrid(bot, config).notes


def plan_grid_edit(bot: Bot, config: dict[str, Any]) -> regrid.Plan:
    """What changing the running ``bot``'s grid to ``config`` would do now (``regrid.plan``),
    for its owner to look at: nothing is changed. A live bot's is made at the feed's fresh
    price (``BotError`` without one)."""
    price = None
    if bot.mode == Bot.Mode.LIVE:
        price = regrid.live_price(bot)
    return regrid.plan(bot, config, price=price)


def apply_grid_edit(
    bot: Bot, config: dict[str, Any], *, shown: regrid.Shown, typed_pair: str | None = None
) -> regrid.Plan:
    """Change the running ``bot``'s grid to ``config`` as its owner saw it (``shown``): a
    paper bot's in one transaction; a live bot's with its pair typed (else
    ``regrid.ConfirmationNeeded``), through the exchange (``regrid.regrid_live``). Either it
    is done or the old grid goes on (``BotError`` says what happened; ``regrid.PlanChanged``
    carries the plan to show instead). Returns the plan done."""
    if bot.mode == Bot.Mode.LIVE:
        return regrid.regrid_live(bot, config, shown=shown, typed_pair=typed_pair)
    return regrid.regrid(bot, config, shown=shown)


def delete_bot(bot: Bot, *, sell: bool = False) -> None:
    """Delete a bot of its owner's (fetched for them) with all its history: its orders,
    round trips, events and equity marks are removed, not kept (the page offers its CSV export
    first). A running bot is stopped first (``stop_bot``, keeping or with ``sell`` selling its
    coins): a paper bot's holdings go back to the paper wallet, a live bot's orders are
    cancelled on the exchange. A live bot whose stop is not finished (the exchange did not
    answer, a stop sale under way) is not deleted: ``BotError`` says why, and the stop goes
    on."""
    bot = Bot.objects.select_related("credential").get(pk=bot.pk)  # as it is now
    if bot.is_running or bot.stopping_reason:
        try:
            stop_bot(bot, reason="deleted by you", sell=sell)
        except BotError as e:
            raise BotError(f"{bot} was not deleted: {e}") from None
    with transaction.atomic():
        bot = Bot.objects.select_for_update().get(pk=bot.pk)
        if bot.is_running or bot.stopping_reason or bot.orders.resting().exists():
            raise BotError(
                f"{bot} was not deleted: it is still stopping, and is deleted once its orders "
                f"are cancelled on {bot.exchange}. Try again in a minute."
            )
        bot.delete()


def archive_bot(bot: Bot, archived: bool = True) -> None:
    """Put a stopped bot of its owner's away (listed apart, kept with its history, not started
    until it is taken back out), or with ``archived=False`` take it back out."""
    with transaction.atomic():
        row = Bot.objects.select_for_update().get(pk=bot.pk)
        if archived and (row.is_running or row.stopping_reason):
            raise BotError(f"Stop {row} before archiving it.")
        if archived and row.mode == Bot.Mode.LIVE and starting.start_pending(row):
            raise BotError(f"{row} is starting on {row.exchange}: stop it before archiving it.")
        if archived != row.is_archived:
            row.archived_at = timezone.now() if archived else None
            row.save(update_fields=["archived_at", "updated_at"])
    bot.archived_at = row.archived_at


def emergency_stop(user: Any, *, reason: str = "emergency stop") -> int:
    """Stop all of a user's bots and cancel all their orders. Returns how many stopped; a live
    bot whose exchange cannot be reached is reported after all the others are stopped."""
    stopped, failed = 0, []
    # One bot at a time, by id: a row that cannot be read must not keep the others running.
    for bot_id in Bot.objects.owned_by(user).running().values_list("pk", flat=True):
        try:
            stop_bot(Bot.objects.select_related("credential").get(pk=bot_id), reason=reason)
            stopped += 1
        except BotError as e:
            failed.append(str(e))
        except Exception:  # one bot's surprise must not keep the others running
            logger.exception("emergency stop: bot %s", bot_id)
            if ledger.force_halt(bot_id, reason=reason):
                failed.append(
                    f"Bot {bot_id} was halted, but its stored state could not be read: check "
                    "its balances (an unexpected error, logged)."
                )
    if failed:
        raise BotError(f"Stopped {stopped}; not stopped: " + " ".join(failed))
    return stopped


def running_bot_ids(symbol: str | None = None) -> Iterable[int]:
    qs = Bot.objects.running()
    if symbol:
        qs = qs.filter(symbol=symbol)
    return qs.values_list("pk", flat=True)
