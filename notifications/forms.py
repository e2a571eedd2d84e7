"""The notification settings' forms: a channel of each type, a channel's kinds, the per-bot
table. Secrets come out stripped; the view encrypts them."""

from __future__ import annotations

import re
import secrets
from typing import Any

from django import forms

from notifications.channels import webhook_url_problem
from notifications.models import BOT_KINDS, Channel, Kind

TELEGRAM_TOKEN = re.compile(r"^\d{3,15}:[A-Za-z0-9_-]{30,60}$")
TELEGRAM_CHAT = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$")
KIND_CHOICES = Kind.choices


def new_webhook_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def _secret_field(label: str, help_text: str, *, required: bool = True) -> forms.CharField:
    # A password input that never re-renders: a failed submit must not echo the secret back.
    widget = forms.PasswordInput(
        render_value=False, attrs={"autocomplete": "off", "spellcheck": "false"}
    )
    return forms.CharField(
        label=label, help_text=help_text, widget=widget, strip=True, required=required,
        max_length=200,
    )  # fmt: skip


class ChannelForm(forms.Form):
    """What every new channel has: a label and the kinds it receives."""

    type: str = ""
    label = forms.CharField(max_length=60)
    kinds = forms.MultipleChoiceField(
        choices=KIND_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Tell me about",
    )

    def __init__(self, *args: Any, owner: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", self.type)
        super().__init__(*args, **kwargs)
        self.owner = owner
        self.fields["kinds"].initial = [k for k in Kind.values if k != Kind.FILL]
        self.order_fields([*(f for f in self.fields if f != "kinds"), "kinds"])  # kinds last

    def clean_label(self) -> str:
        label: str = self.cleaned_data["label"].strip()
        if Channel.objects.owned_by(self.owner).filter(label__iexact=label).exists():
            raise forms.ValidationError(
                f"You already have a channel labelled “{label}”. Choose another label."
            )
        return label

    def channel(self) -> Channel:
        """The new channel (not saved)."""
        data = self.cleaned_data
        return Channel(owner=self.owner, type=self.type, label=data["label"], kinds=data["kinds"])


class EmailChannelForm(ChannelForm):
    type = Channel.Type.EMAIL

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["label"].initial = "Email"


class WebhookChannelForm(ChannelForm):
    type = Channel.Type.WEBHOOK
    url = forms.URLField(
        label="URL", max_length=500, assume_scheme="https",
        help_text="aibo POSTs JSON here, signed with the secret below.",
    )  # fmt: skip
    secret = _secret_field(
        "Signing secret",
        "Leave empty and aibo makes one, shown once. It signs every request "
        "(X-Aibo-Signature, HMAC-SHA256).",
        required=False,
    )

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        if problem := webhook_url_problem(url):
            raise forms.ValidationError(f"aibo will not send to this URL: {problem}.")
        return url

    def clean_secret(self) -> str:
        secret: str = self.cleaned_data.get("secret") or ""
        if secret and len(secret) < 16:
            raise forms.ValidationError("A signing secret has at least 16 characters.")
        return secret

    def channel(self) -> Channel:
        channel = super().channel()
        channel.url = self.cleaned_data["url"]
        return channel


class TelegramChannelForm(ChannelForm):
    type = Channel.Type.TELEGRAM
    token = _secret_field(
        "Bot token",
        "From @BotFather (“123456:ABC…”). Stored encrypted; only its last four characters "
        "are ever shown.",
    )
    chat_id = forms.CharField(
        label="Chat id", max_length=64,
        help_text="Your chat with the bot (a number; start the chat first), or @channelname.",
    )  # fmt: skip

    def clean_token(self) -> str:
        token: str = self.cleaned_data["token"]
        if not TELEGRAM_TOKEN.match(token):
            raise forms.ValidationError(
                "This does not look like a bot token: @BotFather gives one like "
                "“123456789:AAE…” (digits, a colon, then about 35 letters)."
            )
        return token

    def clean_chat_id(self) -> str:
        chat_id: str = self.cleaned_data["chat_id"].strip()
        if not TELEGRAM_CHAT.match(chat_id):
            raise forms.ValidationError("A chat id is a number (e.g. 123456789) or @channelname.")
        return chat_id


ADD_FORMS: dict[str, type[ChannelForm]] = {
    Channel.Type.EMAIL: EmailChannelForm,
    Channel.Type.WEBHOOK: WebhookChannelForm,
    Channel.Type.TELEGRAM: TelegramChannelForm,
}


class ChannelKindsForm(forms.Form):
    """A channel's switch and kinds, changed from its row."""

    enabled = forms.BooleanField(required=False, label="On")
    kinds = forms.MultipleChoiceField(
        choices=KIND_CHOICES, widget=forms.CheckboxSelectMultiple, required=False
    )


class BotMutesForm(forms.Form):
    """The per-bot table: one checkbox per bot and kind, ticked = told. Field names are
    ``b<bot id>-<kind>``; only the owner's bots are fields, so no other bot can be named."""

    def __init__(self, *args: Any, bots: list[Any], muted: set[tuple[int, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.bots = bots
        for bot in bots:
            for kind in BOT_KINDS:
                self.fields[f"b{bot.pk}-{kind.value}"] = forms.BooleanField(
                    required=False, initial=(bot.pk, kind.value) not in muted,
                    label=f"{Kind(kind).label} from {bot}",
                )  # fmt: skip

    def rows(self) -> list[tuple[Any, list[forms.BoundField]]]:
        return [(bot, [self[f"b{bot.pk}-{kind.value}"] for kind in BOT_KINDS]) for bot in self.bots]

    def muted(self) -> set[tuple[int, str]]:
        return {
            (bot.pk, kind.value)
            for bot in self.bots
            for kind in BOT_KINDS
            if not self.cleaned_data.get(f"b{bot.pk}-{kind.value}")
        }
