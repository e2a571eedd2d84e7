"""Bot and backtest forms: plain forms whose cleaning ends in the engine's own validation.

A config is kept as strings (``Bot.config``); ``clean`` builds the ``GridConfig`` through the
one config schema (``bots.config``, which knows the market's tick, step and minimum order) and
puts each ``ConfigError`` on the field it names, so errors show next to what to change.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import escape

from accounts.models import ExchangeCredential
from bots import config as schema
from bots import starting
from bots.errors import ConfigError
from bots.grid.params import GridConfig
from bots.models import Bot
from market import pairs
from market.models import HistoryImport, MarketRules
from market.precision import plain

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


class GridConfigForm(forms.Form):
    """The grid's inputs (GRID_SPEC.md); subclasses add the symbol and what else they need."""

    min_levels = 2
    max_levels = 500

    symbol = forms.CharField(label="Pair", max_length=30, initial=DEFAULT_PAIR)
    capital = forms.DecimalField(
        label="Capital", min_value=Decimal("0"), help_text="Quote currency the bot may use."
    )
    lower_bound = forms.DecimalField(label="Lower price", min_value=Decimal("0"))
    upper_bound = forms.DecimalField(label="Upper price", min_value=Decimal("0"))
    grid_levels = forms.IntegerField(label="Price lines")
    spacing = forms.ChoiceField(
        label="Spacing",
        choices=[
            ("arithmetic", "Arithmetic (equal price steps)"),
            ("geometric", "Geometric (equal percentage steps)"),
        ],
        initial="arithmetic",
    )
    stop_loss_pct = forms.DecimalField(
        label="Stop-loss (% below the lower price)",
        min_value=Decimal("0"),
        max_value=Decimal("10"),
        initial=Decimal("0"),
        help_text="0 turns it off. Below it the bot sells everything and stops.",
    )
    take_profit = forms.DecimalField(
        label="Take-profit price",
        required=False,
        min_value=Decimal("0"),
        help_text="Optional, above the upper price: there the bot sells everything and stops.",
    )

    def __init__(self, *args: Any, exchange: str = "binance", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exchange = exchange
        self.grid: GridConfig | None = None
        self.rules: MarketRules | None = None
        symbol = self.fields["symbol"]
        symbol.widget.attrs.update(pair_input_attrs())
        symbol.help_text = _pairs_note(exchange)
        levels = self.fields["grid_levels"]
        levels.min_value, levels.max_value = self.min_levels, self.max_levels
        levels.widget.attrs.update(min=self.min_levels, max=self.max_levels)
        levels.help_text = f"{self.min_levels} to {self.max_levels} lines."
        for name in ("capital", "lower_bound", "upper_bound", "stop_loss_pct", "take_profit"):
            if name in self.fields:
                self.fields[name].widget.attrs.update(inputmode="decimal", step="any")

    def clean_symbol(self) -> str:
        """The pair, as the exchange writes it; its rules fetched from the exchange when they
        are not stored yet."""
        try:
            self.rules = pairs.choose_pair(self.exchange, self.cleaned_data["symbol"])
        except pairs.PairError as e:
            raise forms.ValidationError(str(e)) from None
        return self.rules.symbol

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
            elif isinstance(value, Decimal):
                out[name] = plain(value)
            else:
                out[name] = str(value)
        return out

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        needed = [n for n in schema.KEYS if n in self.fields and n != "take_profit"]
        if self.errors or any(data.get(n) is None for n in needed):
            return data  # the fields' own errors first
        if self.rules is None:
            return data
        try:
            self.grid = schema.grid_config(self.config(), symbol=data["symbol"], filters=self.rules)
        except ConfigError as e:
            field = e.field if e.field in self.fields else None
            self.add_error(field, str(e) if field == "symbol" else e.sentence())
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
    max_daily_loss = forms.DecimalField(
        label="Daily loss limit",
        min_value=Decimal("0"),
        initial=Decimal("0"),
        help_text="Quote currency lost in one day (UTC) that stops the bot; 0 turns it off.",
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
    ]

    credential = forms.ModelChoiceField(
        label="Exchange keys",
        queryset=ExchangeCredential.objects.none(),
        required=False,
        empty_label="(none: paper)",
        help_text="The exchange account a live bot trades on.",
    )

    def __init__(self, *args: Any, owner: Any = None, **kwargs: Any) -> None:
        self.min_levels = settings.GRID_MIN_LEVELS
        self.max_levels = settings.GRID_MAX_LEVELS
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

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("mode") == Bot.Mode.LIVE and not data.get("credential"):
            self.add_error("credential", "Choose the exchange keys this live bot trades with.")
        return data

    @classmethod
    def initial_for(cls, bot: Bot) -> dict[str, Any]:
        return {"name": bot.name, "symbol": bot.symbol, "mode": bot.mode,
                "credential": bot.credential_id, **bot.config}  # fmt: skip


class BacktestForm(GridConfigForm):
    """A page backtest: a pair, a date range and a grid (2..500 lines, as GRID_SPEC allows)."""

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
    ]

    # Candles exist from the first exchanges on and up to today: outside that there is nothing
    # to walk (and 9999-12-31 has no day after it).
    FIRST_DAY = dt.date(2010, 1, 1)

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

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and end < start:
            self.add_error("end", "The end date must be on or after the start date.")
        return data

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
