"""Bot and backtest forms: plain forms whose cleaning ends in the engine's own validation.

A config is kept as strings (``Bot.config``); ``clean`` builds the ``GridConfig`` through the
one config schema (``bots.config``, which knows the market's tick, step and minimum order) and
puts each ``ConfigError`` on the field it names, so errors show next to what to change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms
from django.db.models import Max, Min
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import escape

from accounts.models import ExchangeCredential
from bots import config as schema
from bots import starting
from bots.errors import ConfigError
from bots.grid.params import GridConfig
from bots.grid.preview import GridPreview, grid_preview, trailing_preview
from bots.models import Bot
from market import history, pairs
from market.models import Candle, HistoryImport, MarketRules
from market.precision import canonical, plain

LIVE_DISABLED_REASON = "add your exchange keys first"


DEFAULT_PAIR = "BTC/USDT"


def pair_input_attrs() -> dict[str, str]:
    """The pair's text input searches the exchange's pairs as it is typed (``bots:pairs``
    fills the ``pair-options`` datalist)."""
    return {
        "list": "pair-options",
        "autocomplete": "off",
        "spellcheck": "false",
        "autocapitalize": "characters",
        "hx-get": reverse("bots:pairs"),
        "hx-trigger": "focus once, input changed delay:250ms",
        "hx-target": "#pair-options",
        "hx-swap": "outerHTML",
        "hx-sync": "this:replace",
    }


def _pairs_note(exchange: str) -> str:
    """The pair's help text (``_field.html`` shows help text as HTML: escaped here)."""
    listed = pairs.exchange_pairs(exchange)
    if listed.listed:
        return f"Type to search {exchange.capitalize()}'s {len(listed.symbols):,} spot pairs."
    return escape(listed.describe())


class ModeSelect(forms.Select):
    """A select whose live option is disabled, with the reason in its label, until the user
    has exchange keys."""

    live_enabled = False

    def create_option(self, name: str, value: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(name, value, *args, **kwargs)
        if value == Bot.Mode.LIVE and not self.live_enabled:
            option["attrs"]["disabled"] = True
        return option


NUMBER = "Enter a number, such as 1000 or 62500.5 (digits and a point, no commas)."


def number_field(label: str, required: str | None = None, **kwargs: Any) -> forms.DecimalField:
    """A decimal typed as text: what is typed reaches the server as typed, so "abc" or "1,000"
    get a message instead of the empty value a number input would send."""
    return forms.DecimalField(
        label=label,
        required=required is not None,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        error_messages={"required": required or "", "invalid": NUMBER},
        **kwargs,
    )


def ticked(value: Any) -> bool:
    """A stored flag ("true"/"false"), a typed one (``?trailing_up=on``) or a bool: ticked?"""
    return str(value).strip().lower() in ("true", "on", "1", "yes")


def flag_field(label: str, help_text: str) -> forms.BooleanField:
    """A tick box whose value is stored as "true"/"false" (a stored "false" shows unticked)."""
    return forms.BooleanField(
        label=label,
        required=False,
        help_text=help_text,
        widget=forms.CheckboxInput(check_test=ticked),
    )


# The optional extensions (GRID_SPEC.md, Extensions): one "Advanced" block on both forms.
ADVANCED = (
    "trigger_price",
    "trailing_up",
    "trailing_up_limit",
    "trailing_down",
    "trailing_down_limit",
)
# Config keys a grid may leave empty (the rest must be typed before the grid is checked).
OPTIONAL = ("take_profit", "trigger_price", "trailing_up_limit", "trailing_down_limit")


class GridConfigForm(forms.Form):
    """The grid's inputs (GRID_SPEC.md); subclasses add the symbol and what else they need.

    Each field is checked on its own by the config schema's own rules (``bots.config``), then
    the whole grid, then the capital against the exchange's minimum order at the price the
    grid starts from (``start_price``). ``grid``, ``price`` and ``preview`` are what the page
    shows beside the form."""

    symbol = forms.CharField(
        label="Pair",
        max_length=30,
        initial=DEFAULT_PAIR,
        error_messages={"required": "Enter a pair, such as BTC/USDT."},
    )
    capital = number_field(
        "Capital", "Enter the capital, such as 1000.", help_text="Quote currency the bot may use."
    )
    lower_bound = number_field("Lower price", "Enter the lower price of the range.")
    upper_bound = number_field("Upper price", "Enter the upper price of the range.")
    grid_levels = forms.IntegerField(
        label="Price lines",
        error_messages={
            "required": "Enter how many price lines the grid has.",
            "invalid": "Enter a whole number of price lines, such as 20.",
        },
    )
    spacing = forms.ChoiceField(
        label="Spacing",
        choices=[
            ("arithmetic", "Arithmetic (equal price steps)"),
            ("geometric", "Geometric (equal percentage steps)"),
        ],
        initial="arithmetic",
    )
    stop_loss_pct = number_field(
        "Stop-loss (% below the lower price)",
        "Enter the stop-loss in % (0 turns it off).",
        initial=Decimal("0"),
        help_text="0 turns it off. Below it the bot sells everything and stops.",
    )
    take_profit = number_field(
        "Take-profit price",
        help_text="Optional, above the upper price: there the bot sells everything and stops.",
    )
    trigger_price = number_field(
        "Trigger price",
        help_text="Optional: the bot waits, placing nothing, until the price reaches this; "
        "then it starts its grid there.",
    )
    trailing_up = flag_field(
        "Trailing up",
        "When the price rises past the top line, the grid follows it up one line at a time: "
        "the lowest buy moves to the top. No trade, no new money.",
    )
    trailing_up_limit = number_field(
        "Trailing up limit",
        help_text="Optional: no line is placed above this price. Empty: no limit.",
    )
    trailing_down = flag_field(
        "Trailing down",
        "When the price falls past the bottom line and every grid holds coins, the grid follows "
        "it down: the top grid's coins move to a new bottom line. No new money.",
    )
    trailing_down_limit = number_field(
        "Trailing down floor",
        help_text="Needed with trailing down: no line is placed below this price (keep it "
        "above the stop-loss).",
    )

    def __init__(self, *args: Any, exchange: str = "binance", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exchange = exchange
        self.grid: GridConfig | None = None
        self.rules: MarketRules | None = None
        self.price: Decimal | None = None
        self.preview: GridPreview | None = None
        self.min_levels, self.max_levels = schema.level_limits()
        symbol = self.fields["symbol"]
        symbol.widget.attrs.update(pair_input_attrs())
        symbol.help_text = _pairs_note(exchange)
        levels = self.fields["grid_levels"]
        levels.widget.attrs.update(min=self.min_levels, max=self.max_levels)
        levels.help_text = (
            f"{self.min_levels} to {self.max_levels} lines. More lines trade more often, each "
            "earning less."
        )

    @property
    def quote(self) -> str:
        """The pair's quote currency, for messages (empty when the pair is not known)."""
        if self.rules is not None:
            return str(self.rules.quote)
        symbol = str(self.data.get(self.add_prefix("symbol"), "") if self.is_bound else "")
        return symbol.split("/")[1].strip().upper()[:10] if symbol.count("/") == 1 else ""

    def clean_symbol(self) -> str:
        """The pair, as the exchange writes it; its rules fetched from the exchange when they
        are not stored yet."""
        try:
            self.rules = pairs.choose_pair(self.exchange, self.cleaned_data["symbol"])
        except pairs.PairError as e:
            raise forms.ValidationError(str(e)) from None
        return self.rules.symbol

    def _checked(self, key: str, check: Any) -> Decimal | None:
        """A typed number through the schema's own checks, its words on this field."""
        value = self.cleaned_data.get(key)
        if value is None:
            return None
        try:
            return check(schema.number(value, key))  # type: ignore[no-any-return]
        except ConfigError as e:
            raise forms.ValidationError(e.sentence()) from None

    def _price(self, key: str) -> Decimal | None:
        def check(value: Decimal) -> Decimal:
            if self.rules is None and value <= 0:
                raise ConfigError(f"the {schema.PRICE_WORDS.get(key, 'price')} must be more than 0")
            return schema.check_price(value, key, self.rules) if self.rules else value

        return self._checked(key, check)

    def clean_capital(self) -> Decimal | None:
        return self._checked("capital", lambda value: schema.check_capital(value, self.quote))

    def clean_lower_bound(self) -> Decimal | None:
        return self._price("lower_bound")

    def clean_upper_bound(self) -> Decimal | None:
        return self._price("upper_bound")

    def clean_take_profit(self) -> Decimal | None:
        return self._price("take_profit")

    def clean_trigger_price(self) -> Decimal | None:
        return self._price("trigger_price")

    def clean_trailing_up_limit(self) -> Decimal | None:
        return self._price("trailing_up_limit")

    def clean_trailing_down_limit(self) -> Decimal | None:
        return self._price("trailing_down_limit")

    def clean_stop_loss_pct(self) -> Decimal | None:
        def check(value: Decimal) -> Decimal:
            if not 0 <= value <= 10:
                raise ConfigError("the stop-loss must be from 0 to 10 % (0 turns it off)")
            return value

        return self._checked("stop_loss_pct", check)

    def clean_grid_levels(self) -> int:
        levels = self.cleaned_data["grid_levels"]
        if not self.min_levels <= levels <= self.max_levels:
            raise forms.ValidationError(
                f"Use between {self.min_levels} and {self.max_levels} price lines."
            )
        return levels

    def config(self) -> dict[str, str]:
        """The cleaned config as ``Bot.config`` keeps it: strings."""
        data = self.cleaned_data
        out: dict[str, str] = {}
        for name in schema.KEYS:
            if name not in self.fields:
                continue
            value = data.get(name)
            if value is None:
                out[name] = ""
            elif isinstance(value, bool):
                out[name] = "true" if value else "false"
            elif isinstance(value, Decimal):
                out[name] = plain(value)
            else:
                out[name] = str(value)
        # An extension left off is no key at all, as the schema stores it (``normalise``).
        for name in ADVANCED:
            if out.get(name) in ("", "false"):
                del out[name]
        return out

    @property
    def advanced_open(self) -> bool:
        """The "Advanced" block starts open when any of its fields holds a value or an error,
        so nothing set there is hidden from the trader."""
        for name in ADVANCED:
            if name not in self.fields:
                continue
            if self.is_bound and self.errors.get(name):
                return True
            value = self[name].value()
            if name in ("trailing_up", "trailing_down"):
                if ticked(value):
                    return True
            elif value not in (None, ""):
                return True
        return False

    def start_price(self) -> Decimal | None:
        """The price the grid would start at: the market's now (a backtest: its first day's)."""
        return schema.reference_price(self.exchange, self.rules.symbol) if self.rules else None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        grid_keys = [n for n in schema.KEYS if n in self.fields]
        needed = [n for n in grid_keys if n not in OPTIONAL]
        if self.rules is None or any(n in self.errors for n in grid_keys):
            return data  # the fields' own errors first
        if any(data.get(n) is None for n in needed):
            return data
        try:
            self.grid = schema.grid_config(self.config(), symbol=data["symbol"], filters=self.rules)
        except ConfigError as e:
            field = e.field if e.field in self.fields else None
            self.add_error(field, str(e) if field == "symbol" else e.sentence())
            return data
        self.price = self.start_price()
        trigger = self.grid.trigger_price
        if trigger is None:
            self.preview = grid_preview(self.grid, self.price)
        else:
            # A triggered grid starts at its trigger (GRID_SPEC.md, Extensions): its sides and
            # order amount are the trigger's; where the trigger lies is judged from the price now.
            self.preview = grid_preview(self.grid, trigger)
            self.preview.trailing = trailing_preview(self.grid, self.price)
        if self.price is not None:
            try:
                schema.check_funding(self.grid, self.price)
            except ConfigError as e:
                self.add_error(e.field if e.field in self.fields else None, e.sentence())
        return data


class BotForm(GridConfigForm):
    """Create or edit a bot. Nothing is saved here: the view hands ``config()`` to a service."""

    name = forms.CharField(
        label="Name", max_length=80, required=False, help_text="Optional: for your own list."
    )
    mode = forms.ChoiceField(
        label="Mode",
        choices=[
            (Bot.Mode.PAPER, "Paper (simulated money, real prices)"),
            (Bot.Mode.LIVE, f"Live ({LIVE_DISABLED_REASON})"),
        ],
        initial=Bot.Mode.PAPER,
        widget=ModeSelect,
        help_text=f"Live is off until you {LIVE_DISABLED_REASON} (Exchange keys).",
    )
    max_daily_loss = number_field(
        "Daily loss limit",
        "Enter the daily loss limit (0 turns it off).",
        initial=Decimal("0"),
        help_text="Quote currency lost in one day (UTC) that stops the bot; 0 turns it off.",
    )
    # Shown only when some grid loses money after fees: such a grid is refused unless ticked.
    # hx-preserve: a preview answering after the trader ticked it keeps their tick.
    accept_loss = forms.BooleanField(
        label="I understand each grid loses money after fees",
        required=False,
        widget=forms.CheckboxInput(attrs={"hx-preserve": "true"}),
    )

    field_order = [
        "name",
        "symbol",
        "mode",
        "credential",
        "capital",
        "lower_bound",
        "upper_bound",
        "grid_levels",
        "spacing",
        "stop_loss_pct",
        "take_profit",
        "max_daily_loss",
        *ADVANCED,
        "accept_loss",
    ]

    credential = forms.ModelChoiceField(
        label="Exchange keys",
        queryset=ExchangeCredential.objects.none(),
        required=False,
        empty_label="(none: paper)",
        help_text="The exchange account a live bot trades on.",
    )

    def __init__(self, *args: Any, owner: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        keys = ExchangeCredential.objects.none()
        if owner is not None:
            keys = ExchangeCredential.objects.owned_by(owner)
        self.fields["credential"].queryset = keys
        self.owner = owner
        self.has_keys = owner is not None and keys.exists()
        self.fields["mode"].widget.live_enabled = self.has_keys
        if self.has_keys:
            paper, _ = self.fields["mode"].choices
            self.fields["mode"].choices = [
                paper, (Bot.Mode.LIVE, "Live (real orders with your exchange keys)")
            ]  # fmt: skip
            self.fields["mode"].help_text = "Live bots place real orders on your account."

    @cached_property
    def live_gate(self) -> starting.LiveGate | None:
        """The owner's paper-first gate, for the form to say what is missing (read only when
        shown: the preview builds this form on every keystroke)."""
        return starting.live_gate(self.owner.pk) if self.has_keys else None

    def clean_mode(self) -> str:
        mode = self.cleaned_data["mode"]
        if mode == Bot.Mode.LIVE and not self.fields["mode"].widget.live_enabled:
            raise forms.ValidationError(f"Not yet: {LIVE_DISABLED_REASON}.")
        return mode

    def clean_max_daily_loss(self) -> Decimal | None:
        def check(value: Decimal) -> Decimal:
            if value < 0:
                raise ConfigError("the daily loss limit cannot be negative (0 turns it off)")
            return value

        return self._checked("max_daily_loss", check)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("mode") == Bot.Mode.LIVE and not data.get("credential"):
            self.add_error("credential", "Choose the exchange keys this live bot trades with.")
        if self.loses and not data.get("accept_loss"):
            self.add_error(
                "accept_loss",
                "Tick this box to create a grid that loses money on every round trip, or use "
                "fewer price lines or a wider range.",
            )
        return data

    @property
    def loses(self) -> bool:
        """Some grid of the config loses money after fees: it needs the trader's consent."""
        return self.preview is not None and self.preview.unprofitable

    def shown(self, *, editing: bool) -> list[str]:
        """The fields the page shows (each with its errors' box): an edit keeps the pair, mode
        and keys; the keys only with keys to choose; the loss consent only when it applies."""
        hidden = {"accept_loss"}
        if editing:
            hidden |= {"symbol", "mode", "credential"}
        elif not self.has_keys:
            hidden.add("credential")
        return [name for name in self.fields if name not in hidden]

    @classmethod
    def initial_for(cls, bot: Bot) -> dict[str, Any]:
        return {"name": bot.name, "symbol": bot.symbol, "mode": bot.mode,
                "credential": bot.credential_id, **bot.config}  # fmt: skip


def stored_span(exchange: str, symbol: str) -> tuple[dt.datetime, dt.datetime] | None:
    """Open times of a pair's first and last stored 1-minute candles (None: none stored)."""
    span = Candle.objects.for_series(exchange, symbol).aggregate(
        first=Min("open_time"), last=Max("open_time")
    )
    return (span["first"], span["last"]) if span["first"] is not None else None


class BacktestForm(GridConfigForm):
    """A page backtest: a pair, whole UTC days of its stored candles and a grid (the same
    limits as a bot's: a backtest tries what a bot could run).

    ``start_import(exchange, symbol)`` (``market.tasks.start_history``) runs once the pair is
    known: a new pair's history import starts, a stale one is brought up to date; the dates
    are then checked against the candles stored and the import under way."""

    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"}))

    field_order = [
        "symbol",
        "start",
        "end",
        "capital",
        "lower_bound",
        "upper_bound",
        "grid_levels",
        "spacing",
        "stop_loss_pct",
        "take_profit",
        *ADVANCED,
    ]

    # Candles exist from the first exchanges on and up to today: outside that there is nothing
    # to walk (and 9999-12-31 has no day after it).
    FIRST_DAY = dt.date(2010, 1, 1)

    def __init__(
        self,
        *args: Any,
        start_import: Callable[[str, str], HistoryImport | None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.start_import = start_import
        self.history: HistoryImport | None = None
        self.span: tuple[dt.datetime, dt.datetime] | None = None

    def clean_symbol(self) -> str:
        symbol = super().clean_symbol()
        if self.start_import is not None:
            self.history = self.start_import(self.exchange, symbol)
        else:
            self.history = history.import_for(self.exchange, symbol)
        self.span = stored_span(self.exchange, symbol)
        return symbol

    def _day(self, name: str) -> dt.date:
        day = self.cleaned_data[name]
        today = dt.datetime.now(dt.UTC).date()
        if not self.FIRST_DAY <= day <= today:
            raise forms.ValidationError(f"Choose a day from {self.FIRST_DAY} to today ({today}).")
        return day

    def clean_start(self) -> dt.date:
        return self._day("start")

    def clean_end(self) -> dt.date:
        return self._day("end")

    def start_price(self) -> Decimal | None:
        """The close of the range's first stored candle: where the backtest's grid starts."""
        if self.rules is None or "start" not in self.cleaned_data:
            return None
        start, end = self.time_range()
        close = (
            Candle.objects.for_series(self.exchange, self.rules.symbol)
            .between(start, end)
            .order_by("open_time")
            .values_list("close", flat=True)
            .first()
        )
        return canonical(close) if close is not None else None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and end < start:
            self.add_error("end", "The end date must be on or after the start date.")
        elif start and end and self.rules is not None:
            self._check_stored()
        return data

    @property
    def available(self) -> str:
        """The stored days in words: ``2025-05-01 to 2025-06-10 (UTC)``."""
        if self.span is None:
            return ""
        first, last = self.span
        return f"{first:%Y-%m-%d} to {last:%Y-%m-%d} (UTC)"

    def _check_stored(self) -> None:
        """The days asked for are stored (or say which are, and what the import is doing)."""
        if not self.imported(self.history):
            return  # said on the dates: the import is still bringing them
        symbol = self.rules.symbol if self.rules else ""
        start, end = self.cleaned_data["start"], self.cleaned_data["end"]
        if self.span is None:
            self.add_error(
                "start",
                f"No {symbol} candles are stored yet, so there is nothing to backtest on."
                + self._import_words(),
            )
            return
        first, last = self.span
        if start < first.date() or end > last.date():
            self.add_error(
                "start",
                f"{symbol} candles are stored for {self.available}: choose days in that range."
                + self._import_words(),
            )

    def _import_words(self) -> str:
        job = self.history
        if job is not None and job.status == HistoryImport.Status.FAILED:
            return f" Its history import failed ({job.error.rstrip('.')}): import it again."
        return ""

    def imported(self, job: HistoryImport | None) -> bool:
        """Whether the days asked for are not waiting on the pair's history import; if they
        are, the form says so on the dates, naming how far the import got."""
        if job is None or job.status == HistoryImport.Status.DONE:
            return True
        start, end = self.time_range()
        if end <= job.cursor or start >= job.until:
            return True  # imported already, or days the import is not about
        upto = f"stored up to {job.cursor:%Y-%m-%d %H:%M} UTC"
        if job.status == HistoryImport.Status.FAILED:
            words = (
                f"The {job.symbol} history import failed ({job.error.rstrip('.')}); candles are "
                f"{upto}. Choose earlier days, or try again in a minute: the import then goes "
                "on where it stopped."
            )
        else:
            words = (
                f"{job.symbol} history is still being imported: {job.progress()}, {upto}. "
                "Choose earlier days, or wait until it is done."
            )
        self.add_error("end", words)
        return False

    def time_range(self) -> tuple[dt.datetime, dt.datetime]:
        """[start 00:00, the day after end 00:00) in UTC."""
        tz = dt.UTC
        start = dt.datetime.combine(self.cleaned_data["start"], dt.time(), tzinfo=tz)
        end = dt.datetime.combine(self.cleaned_data["end"], dt.time(), tzinfo=tz)
        return start, end + dt.timedelta(days=1)
