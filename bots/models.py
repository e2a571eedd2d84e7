from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import ExchangeCredential
from bots.grid import order_ids
from bots.grid.engine import GridEngine
from market.fields import MoneyField
from market.precision import canonical

MONEY = {"max_digits": 30, "decimal_places": 12}
# Bot.save checks the credential's owner when it writes one of these (update_fields names).
OWNER_AND_CREDENTIAL = frozenset({"owner", "owner_id", "credential", "credential_id"})


class BotQuerySet(models.QuerySet["Bot"]):
    def running(self) -> BotQuerySet:
        return self.filter(status=Bot.Status.RUNNING)

    def owned_by(self, user: Any) -> BotQuerySet:
        return self.filter(owner=user)

    def active(self) -> BotQuerySet:
        """Bots not archived: the dashboard's main list."""
        return self.filter(archived_at__isnull=True)

    def archived(self) -> BotQuerySet:
        """Bots put away by their owner (stopped; kept with their history)."""
        return self.filter(archived_at__isnull=False)

    def crossed_by(self, symbol: str, low: Decimal, high: Decimal) -> BotQuerySet:
        """Running bots on `symbol` whose next resting order a move between low and high crosses."""
        return (
            self.running()
            .filter(symbol=symbol)
            .filter(Q(next_buy_price__gte=low) | Q(next_sell_price__lte=high))
        )


class Bot(models.Model):
    class Strategy(models.TextChoices):
        GRID = "grid", "Grid"

    class Mode(models.TextChoices):
        PAPER = "paper", "Paper"
        LIVE = "live", "Live"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"
        ERROR = "error", "Error"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bots"
    )
    name = models.CharField(max_length=80, blank=True)
    strategy = models.CharField(max_length=10, choices=Strategy.choices, default=Strategy.GRID)
    exchange = models.CharField(max_length=30, default="binance")
    symbol = models.CharField(max_length=30)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.PAPER)
    # The exchange account a live bot trades on (its owner's); paper bots have none.
    credential = models.ForeignKey(
        "accounts.ExchangeCredential", on_delete=models.PROTECT, null=True, blank=True,
        related_name="bots",
    )  # fmt: skip
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.STOPPED)
    status_reason = models.CharField(max_length=300, blank=True)
    # A stop written down before it acts (live bots): until the exchange shows none of the
    # bot's orders (and the stop sale, if any, is done), every cycle finishes it, nothing else.
    stopping_reason = models.CharField(max_length=300, blank=True)
    stopping_sells = models.BooleanField(default=False)
    # The validated config (bots.forms / services.validate_config): capital, lower_bound,
    # upper_bound, grid_levels, spacing, stop_loss_pct, max_daily_loss, take_profit; as strings.
    config = models.JSONField(default=dict)

    # The running grid: the engine's state (GridEngine.to_dict), rebuilt every cycle.
    engine_state = models.JSONField(null=True, blank=True)
    # Each start is a new generation: client order ids never repeat across restarts.
    generation = models.PositiveIntegerField(default=0)
    # The prefix of this run's client order ids, fixed at start (``order_ids.bot_key``, with
    # the installation's part); empty for runs started before it was stored.
    order_key = models.CharField(max_length=30, blank=True)
    start_price = MoneyField(**MONEY, null=True, blank=True)
    # The price path is consumed up to here (the open time of the last candle walked).
    cursor = models.DateTimeField(null=True, blank=True)
    # Where a fall / a rise makes something happen (a resting order, a stop, a trailing shift,
    # the trigger): the feed wakes the bot when a price crosses them (``keep_engine``).
    next_buy_price = MoneyField(**MONEY, null=True, blank=True)
    next_sell_price = MoneyField(**MONEY, null=True, blank=True)
    # Running statistics the candle walk keeps (drawdown needs every mark, not just the last).
    peak_equity = MoneyField(**MONEY, null=True, blank=True)
    # A ratio at full Decimal precision (28 significant digits), so it survives the round trip.
    max_drawdown = MoneyField(max_digits=32, decimal_places=30, default=Decimal("0"))
    last_equity = MoneyField(**MONEY, null=True, blank=True)
    last_price = MoneyField(**MONEY, null=True, blank=True)
    # The day (UTC, market time) daily-loss accounting refers to, and the equity it opened with.
    day = models.DateField(null=True, blank=True)
    day_open_equity = MoneyField(**MONEY, null=True, blank=True)
    # Live bots: exchange fills at or after this time (ms) are fetched again each cycle.
    fill_cursor_ms = models.BigIntegerField(null=True, blank=True)
    # Live bots: once a trade was seen, the next trade id to fetch (Binance ``fromId``): each
    # trade is fetched once, in one request however long the grid has been quiet.
    fill_cursor_trade = models.BigIntegerField(null=True, blank=True)
    # Live bots: when the last full REST reconciliation (fills and the open book) began. While
    # the account's user data stream has been up since before then, cycles take fills from the
    # stream and ask the exchange nothing. ``rest_due_at``: when the stream told of something
    # only REST sorts out (an order of ours cancelled or expired on the exchange's side); a
    # reconciliation that began after it answers it.
    rest_synced_at = models.DateTimeField(null=True, blank=True)
    rest_due_at = models.DateTimeField(null=True, blank=True)
    # The Huey chain that owns this bot's cycles; a stale chain sees another token and ends.
    chain_token = models.CharField(max_length=32, blank=True)

    started_at = models.DateTimeField(null=True, blank=True)
    # Market time of the first start: statistics such as APR run on market time, so a replayed
    # or backtested year counts as a year whatever the wall clock says; a restart keeps it.
    market_started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    # What the bot's earlier runs made or lost (each run's equity at its stop less its
    # capital, summed): its statistics go on across a stop and a start.
    profit_before = MoneyField(**MONEY, default=Decimal("0"))
    # Put away by its owner (only a stopped bot): listed apart, and not started until taken
    # back out (``services.archive_bot``).
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BotQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "symbol"]),
            models.Index(fields=["owner", "status"]),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(strategy__in=["grid"]), name="bot_strategy_valid"),
            models.CheckConstraint(condition=Q(mode__in=["paper", "live"]), name="bot_mode_valid"),
            models.CheckConstraint(
                condition=Q(mode="paper") | Q(credential__isnull=False),
                name="live_bot_has_credential",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["running", "stopped", "error"]), name="bot_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.symbol} grid #{self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Every writer (services, admin, shell) passes here; the database's trigger
        # (migration 0004) refuses the rest, such as QuerySet.update().
        fields = kwargs.get("update_fields")
        touched = fields is None or bool(set(fields) & OWNER_AND_CREDENTIAL)
        if touched and (error := self.credential_error()):
            raise ValidationError(error, code="credential_owner")
        super().save(*args, **kwargs)

    def clean(self) -> None:
        # Not keyed on the field: forms (the admin's) show the credential read-only.
        if error := self.credential_error():
            raise ValidationError(error, code="credential_owner")

    def credential_error(self) -> str | None:
        """Why this bot cannot have its credential, or None: a bot's exchange keys are always
        its owner's (a bot moved to another owner must not trade on the first owner's keys)."""
        if self.credential_id is None:
            return None
        if Bot.credential.is_cached(self):  # type: ignore[attr-defined]
            owner_id = self.credential.owner_id  # type: ignore[union-attr]
        else:
            owner_id = (
                ExchangeCredential.objects.filter(pk=self.credential_id)
                .values_list("owner_id", flat=True)
                .first()
            )
        if owner_id != self.owner_id:
            return "A bot trades only with its owner's exchange keys."
        return None

    @property
    def base_asset(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote_asset(self) -> str:
        return self.symbol.split("/")[1]

    @property
    def is_running(self) -> bool:
        return self.status == self.Status.RUNNING

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    def total_profit(self, equity: Decimal) -> Decimal:
        """The bot's profit over all its runs with this run's equity at ``equity``."""
        return equity - self.capital + self.profit_before

    @property
    def key(self) -> str:
        """The prefix of this run's client order ids (``bots.grid.order_ids``)."""
        return self.order_key or order_ids.bot_key(self.pk, self.generation)

    def engine(self) -> GridEngine:
        if self.engine_state is None:
            raise ValueError(f"{self} has no running grid")
        return GridEngine.from_dict(self.engine_state)

    def keep_engine(self, engine: GridEngine) -> None:
        """Take the engine's state (not saved): its JSON, and the prices the feed wakes on:
        where a fall or a rise makes anything happen (an order, a stop, a trailing shift or
        the trigger), not only the resting orders."""
        self.engine_state = engine.to_dict()
        self.next_buy_price = engine.wake_low
        self.next_sell_price = engine.wake_high

    @property
    def capital(self) -> Decimal:
        return Decimal(self.config.get("capital", "0"))

    @property
    def max_daily_loss(self) -> Decimal:
        return Decimal(self.config.get("max_daily_loss") or "0")


class OrderQuerySet(models.QuerySet["Order"]):
    def open(self) -> OrderQuerySet:
        return self.filter(status=Order.Status.OPEN)

    def resting(self) -> OrderQuerySet:
        """Written or sent, not yet done: what a stop cancels."""
        return self.filter(status__in=Order.RESTING)


class Order(models.Model):
    class Side(models.TextChoices):
        BUY = "buy", "Buy"
        SELL = "sell", "Sell"

    class Kind(models.TextChoices):
        LIMIT = "limit", "Limit"
        MARKET = "market", "Market"

    class Status(models.TextChoices):
        # Written before the order is sent, so a crash between send and save is found again.
        PENDING = "pending", "Pending"
        OPEN = "open", "Open"
        FILLED = "filled", "Filled"
        CANCELLED = "cancelled", "Cancelled"
        REJECTED = "rejected", "Rejected"

    # Written (pending) or on the book (open): at most one per slot, and what a stop cancels.
    RESTING = (Status.PENDING, Status.OPEN)

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="orders")
    # The grid slot; empty for the start buy and stop-loss / take-profit sales.
    slot = models.PositiveIntegerField(null=True, blank=True)
    side = models.CharField(max_length=4, choices=Side.choices)
    kind = models.CharField(max_length=6, choices=Kind.choices, default=Kind.LIMIT)
    price = MoneyField(**MONEY)
    amount = MoneyField(**MONEY)
    filled = MoneyField(**MONEY, default=Decimal("0"))
    fee = MoneyField(**MONEY, default=Decimal("0"))
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=300, blank=True)
    client_order_id = models.CharField(max_length=36, unique=True)
    # Live: how many times in a row the exchange refused to place it (it is sent again).
    refusals = models.PositiveSmallIntegerField(default=0)
    exchange_order_id = models.CharField(max_length=64, blank=True)
    # Market time (the candle) for paper fills; exchange time for live ones.
    filled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrderQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["bot", "status"]),
            # A trade names its order by the exchange's id: whose it is, asked of our books.
            models.Index(fields=["exchange_order_id"], name="order_exchange_id"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(side__in=["buy", "sell"]), name="order_side_valid"),
            models.CheckConstraint(
                condition=Q(kind__in=["limit", "market"]), name="order_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "open", "filled", "cancelled", "rejected"]),
                name="order_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(price__gt=0) & Q(amount__gt=0), name="order_price_amount_positive"
            ),
            # One resting order per slot: the grid's core invariant, enforced by the database.
            models.UniqueConstraint(
                fields=["bot", "slot"],
                condition=Q(status__in=["pending", "open"]) & Q(slot__isnull=False),
                name="one_open_order_per_bot_slot",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.side} {canonical(self.amount)} @ {canonical(self.price)} ({self.status})"


class ExchangeFillRecord(models.Model):
    """One exchange trade against a live bot's order, stored once (by its trade id): a fill
    fetched again after a crash is recognised and never applied twice."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="exchange_fills")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="exchange_fills")
    trade_id = models.CharField(max_length=64)
    price = MoneyField(**MONEY)
    amount = MoneyField(**MONEY)
    fee = MoneyField(**MONEY, default=Decimal("0"))  # as the exchange charged it
    fee_asset = models.CharField(max_length=16, blank=True)
    # The part of the fee paid in the quote asset (what the grid's quote balance lost to it).
    fee_quote = MoneyField(**MONEY)
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["bot", "trade_id"], name="one_record_per_exchange_fill")
        ]

    def __str__(self) -> str:
        return f"{self.trade_id}: {canonical(self.amount)} @ {canonical(self.price)}"


class StreamedFill(models.Model):
    """A fill the account's user data stream told of, waiting for its bot's next cycle (which
    books it like a fetched one, deduplicated by trade id, and deletes it in the same
    transaction). Written by the stream, so a fill heard of is kept if the cycle dies."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="streamed_fills")
    trade_id = models.CharField(max_length=64)
    client_order_id = models.CharField(max_length=64)
    exchange_order_id = models.CharField(max_length=64, blank=True)
    side = models.CharField(max_length=4)
    price = MoneyField(**MONEY)
    amount = MoneyField(**MONEY)
    fee = MoneyField(**MONEY, default=Decimal("0"))
    fee_asset = models.CharField(max_length=16, blank=True)
    at_ms = models.BigIntegerField()
    # When the stream heard of it (local clock): how long a fill waits for its counter-order.
    heard_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at_ms", "id"]
        constraints = [
            models.UniqueConstraint(fields=["bot", "trade_id"], name="one_streamed_fill_per_trade")
        ]

    def __str__(self) -> str:
        return f"{self.trade_id}: {canonical(self.amount)} @ {canonical(self.price)}"


class Trade(models.Model):
    """A round trip: a grid buy and the sell one line above it."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="trades")
    slot = models.PositiveIntegerField()
    buy_order = models.ForeignKey(
        Order, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    sell_order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="+")
    amount = MoneyField(**MONEY)
    buy_price = MoneyField(**MONEY)
    sell_price = MoneyField(**MONEY)
    profit = MoneyField(**MONEY)
    fees = MoneyField(**MONEY)
    closed_at = models.DateTimeField()

    class Meta:
        ordering = ["-closed_at", "-id"]
        indexes = [models.Index(fields=["bot", "-closed_at"])]

    def __str__(self) -> str:
        return (
            f"{canonical(self.amount)} {canonical(self.buy_price)}→{canonical(self.sell_price)}: "
            f"{canonical(self.profit)}"
        )


class EquitySnapshot(models.Model):
    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="equity_snapshots")
    at = models.DateTimeField()
    price = MoneyField(**MONEY)
    quote = MoneyField(**MONEY)
    base = MoneyField(**MONEY)
    equity = MoneyField(**MONEY)

    class Meta:
        ordering = ["at"]
        constraints = [models.UniqueConstraint(fields=["bot", "at"], name="one_snapshot_per_time")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.equity}"


class BotEvent(models.Model):
    """Every decision a bot makes, in words: so "why did it do that?" always has an answer."""

    class Kind(models.TextChoices):
        STARTED = "started", "Started"
        PLACED = "placed", "Placed"
        FILLED = "filled", "Filled"
        ROUND_TRIP = "round_trip", "Round trip"
        CANCELLED = "cancelled", "Cancelled"
        SKIPPED = "skipped", "Skipped"
        STOPPED = "stopped", "Stopped"
        ERROR = "error", "Error"
        REGRID = "regrid", "New grid"
        TRIGGERED = "triggered", "Triggered"
        SHIFT = "shift", "Grid moved"
        TRAILING = "trailing", "Trailing"

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    market_time = models.DateTimeField(null=True, blank=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    message = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["bot", "-id"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.message}"


class PaperBalance(models.Model):
    """A user's paper-trading wallet, one row per asset; bots draw their capital from it."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="paper_balances"
    )
    asset = models.CharField(max_length=20)
    free = MoneyField(**MONEY, default=Decimal("0"))
    # Committed to running bots.
    locked = MoneyField(**MONEY, default=Decimal("0"))

    class Meta:
        ordering = ["asset"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "asset"], name="one_paper_balance_per_asset"),
            models.CheckConstraint(
                condition=Q(free__gte=0) & Q(locked__gte=0), name="paper_balance_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.free} {self.asset}"


class BacktestRun(models.Model):
    """A backtest a user asked for from the page: run as a Huey task, progress and result kept."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="backtests"
    )
    bot = models.ForeignKey(Bot, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    exchange = models.CharField(max_length=30, default="binance")
    symbol = models.CharField(max_length=30)
    start = models.DateTimeField()
    end = models.DateTimeField()
    # The grid config, as in Bot.config (strings).
    config = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)  # percent
    result = models.JSONField(null=True, blank=True)  # BacktestResult.to_json_dict()
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "failed"]),
                name="backtest_status_valid",
            ),
            models.CheckConstraint(condition=Q(start__lt=models.F("end")), name="backtest_range"),
        ]

    def __str__(self) -> str:
        return f"backtest {self.symbol} {self.start:%Y-%m-%d}..{self.end:%Y-%m-%d}"


class BotLease(models.Model):
    """Who may work on a bot right now (``bots.locks``): a token and the time it runs out.

    A lease, not a flag: a worker killed mid-cycle holds it only until ``until``, then any
    worker may take it. Its own table, so no save of the bot row can overwrite it."""

    bot = models.OneToOneField(Bot, on_delete=models.CASCADE, primary_key=True, related_name="+")
    token = models.CharField(max_length=32, blank=True)
    until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"lease of bot {self.bot_id} until {self.until or '-'}"


class SendAttempt(models.Model):
    """When an order (a grid order, a start buy, a stop sale) was first sent under this
    client id, written before it is sent. The exchange may not show an accepted order for a
    while, so "not found" proves nothing until long enough after this (``bots.gateways``):
    until then the order is not sent again."""

    client_order_id = models.CharField(max_length=36, primary_key=True)
    first_sent_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.client_order_id} first sent {self.first_sent_at:%Y-%m-%d %H:%M:%S}"


class Installation(models.Model):
    """This database's own part of every client order id (``order_ids``), made once: two
    installations trading on one exchange account never take each other's orders for their
    own."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    order_prefix = models.CharField(max_length=order_ids.INSTALLATION_LENGTH, unique=True)

    def __str__(self) -> str:
        return f"installation {self.order_prefix}"


class LiveGateWaiver(models.Model):
    """An operator lifted the paper-first gate for one user (``starting.live_gate``): who did,
    when and why. Made in the admin; deleting it closes the gate again."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="live_gate_waiver"
    )
    reason = models.CharField(max_length=300, help_text="Why this trader may skip paper first.")
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )  # fmt: skip
    granted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-granted_at"]

    def __str__(self) -> str:
        return f"paper-first gate lifted for {self.user} by {self.granted_by or '?'}"
