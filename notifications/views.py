"""The notification settings page: channels (add, switch, choose kinds, send a test, delete,
new secret), the per-bot table, and the recent deliveries with their errors and next retry.

Every query is the signed-in user's: another user's channel or delivery is a 404, and the
per-bot table has fields only for the user's own bots. Secrets are shown once, when aibo
makes them (a webhook's signing secret); afterwards only their last four characters.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.http import AuthedRequest
from bots.models import Bot
from notifications import services
from notifications.forms import (
    ADD_FORMS,
    BotMutesForm,
    ChannelForm,
    ChannelKindsForm,
    WebhookChannelForm,
    new_webhook_secret,
)
from notifications.models import BOT_KINDS, BotMute, Channel, Delivery, Kind

RECENT = 25  # deliveries on the page
TESTS_PER_MINUTE = 5  # "send test" clicks per user


def _bots(request: AuthedRequest) -> list[Bot]:
    return list(Bot.objects.owned_by(request.user).active().order_by("name", "pk"))


def _muted(bots: list[Bot]) -> set[tuple[int, str]]:
    return set(BotMute.objects.filter(bot__in=bots).values_list("bot_id", "kind"))


def _deliveries(request: AuthedRequest) -> dict[str, Any]:
    """The recent deliveries, and whether the page should look again in a moment (one is
    being sent, or due within the minute)."""
    deliveries = list(
        Delivery.objects.owned_by(request.user).select_related("channel", "bot")[:RECENT]
    )
    soon = timezone.now() + timedelta(minutes=1)
    poll = any(
        d.status == Delivery.Status.SENDING
        or (d.status == Delivery.Status.PENDING and d.next_attempt_at and d.next_attempt_at <= soon)
        for d in deliveries
    )
    return {"deliveries": deliveries, "poll": poll}


def _page(
    request: AuthedRequest,
    *,
    add_forms: dict[str, ChannelForm] | None = None,
    mutes_form: BotMutesForm | None = None,
    new_secret: tuple[Channel, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    forms = {t: cls(owner=request.user) for t, cls in ADD_FORMS.items()}
    forms.update(add_forms or {})
    bots = _bots(request)
    channels = list(Channel.objects.owned_by(request.user).select_related("owner"))
    context: dict[str, Any] = {
        "channels": [(c, ChannelKindsForm(initial={"enabled": c.enabled, "kinds": c.kinds},
                                          auto_id=f"channel-{c.pk}-%s")) for c in channels],
        "email_form": forms[Channel.Type.EMAIL],
        "webhook_form": forms[Channel.Type.WEBHOOK],
        "telegram_form": forms[Channel.Type.TELEGRAM],
        "mutes_form": mutes_form or BotMutesForm(bots=bots, muted=_muted(bots)),
        "bot_kinds": [Kind(k) for k in BOT_KINDS],
        **_deliveries(request),
        "new_secret": new_secret,
        "email": request.user.email,
    }  # fmt: skip
    return render(request, "notifications/settings.html", context, status=status)


@login_required
@sensitive_post_parameters("webhook-secret", "telegram-token")
def notification_settings(request: AuthedRequest) -> HttpResponse:
    """The page; a POST adds a channel of the type its ``type`` field names."""
    if request.method != "POST":
        return _page(request)
    form_class = ADD_FORMS.get(request.POST.get("type", ""))
    if form_class is None:
        return _page(request, status=400)
    form = form_class(request.POST, owner=request.user)
    if not form.is_valid():
        return _page(request, add_forms={form.type: form}, status=422)
    return _add_channel(request, form)


@sensitive_variables()
def _add_channel(request: AuthedRequest, form: ChannelForm) -> HttpResponse:
    channel = form.channel()
    shown: str | None = None
    if isinstance(form, WebhookChannelForm):
        secret = form.cleaned_data["secret"]
        if not secret:
            secret = shown = new_webhook_secret()
        channel.set_secret(secret)
    elif channel.type == Channel.Type.TELEGRAM:
        channel.chat_id = form.cleaned_data["chat_id"]
        channel.set_secret(form.cleaned_data["token"])
    try:
        with transaction.atomic():
            channel.save()
    except IntegrityError:  # the same label, added at the same moment in another tab
        form.add_error("label", "You already have a channel with this label.")
        return _page(request, add_forms={form.type: form}, status=422)
    messages.success(request, f"Channel “{channel.label}” added. Send a test to check it.")
    if shown:
        # Shown in this answer only (never in a message, a log or the session).
        return _page(request, new_secret=(channel, shown))
    return redirect("notifications:settings")


def _owned_channel(request: AuthedRequest, pk: int) -> Channel:
    return get_object_or_404(Channel.objects.owned_by(request.user), pk=pk)


@login_required
@require_POST
def channel_update(request: AuthedRequest, pk: int) -> HttpResponse:
    channel = _owned_channel(request, pk)
    form = ChannelKindsForm(request.POST)
    if form.is_valid():
        channel.enabled = form.cleaned_data["enabled"]
        channel.kinds = form.cleaned_data["kinds"]
        channel.save(update_fields=["enabled", "kinds"])
        state = "on" if channel.enabled else "off"
        messages.success(request, f"Channel “{channel.label}” saved ({state}).")
    else:
        messages.error(request, "Those settings could not be saved.")
    return redirect("notifications:settings")


@login_required
@require_POST
def channel_test(request: AuthedRequest, pk: int) -> HttpResponse:
    channel = _owned_channel(request, pk)
    if not channel.enabled:
        messages.error(request, f"Turn “{channel.label}” on before sending a test.")
        return redirect("notifications:settings")
    # A test is a request to any URL the user typed: a few a minute, not a flood.
    key = f"notifications:tests:{request.user.pk}"
    cache.add(key, 0, timeout=60)
    if cache.incr(key) > TESTS_PER_MINUTE:
        messages.error(request, "That is enough tests for a minute: try again shortly.")
        return redirect(f"{_settings_url()}#deliveries")
    delivery = services.send_test(channel)
    _send_soon(delivery.pk)
    messages.success(request, f"Test message to “{channel.label}” sent: its result is below.")
    return redirect(f"{_settings_url()}#deliveries")


@login_required
@require_POST
def channel_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    channel = _owned_channel(request, pk)
    label = channel.label
    channel.delete()
    messages.success(request, f"Channel “{label}” deleted.")
    if request.htmx:  # asked with a confirmation (hx-confirm): the whole page again
        return HttpResponseClientRedirect(_settings_url())
    return redirect("notifications:settings")


@login_required
@require_POST
@sensitive_variables()
def channel_new_secret(request: AuthedRequest, pk: int) -> HttpResponse:
    """A new signing secret for a webhook, shown once; the old one stops working at once."""
    channel = _owned_channel(request, pk)
    if channel.type != Channel.Type.WEBHOOK:
        messages.error(request, "Only a webhook has a signing secret.")
        return redirect("notifications:settings")
    secret = new_webhook_secret()
    channel.set_secret(secret)
    channel.save(update_fields=["secret_encrypted", "secret_hint"])
    messages.success(request, f"“{channel.label}” has a new signing secret.")
    return _page(request, new_secret=(channel, secret))


@login_required
@require_POST
def bot_mutes(request: AuthedRequest) -> HttpResponse:
    bots = _bots(request)
    form = BotMutesForm(request.POST, bots=bots, muted=_muted(bots))
    if not form.is_valid():  # booleans: only a tampered form gets here
        return _page(request, mutes_form=form, status=422)
    wanted = form.muted()
    with transaction.atomic():
        BotMute.objects.filter(bot__in=bots).delete()
        BotMute.objects.bulk_create([BotMute(bot_id=b, kind=k) for b, k in sorted(wanted)])
    messages.success(request, "Per-bot notifications saved.")
    return redirect(f"{_settings_url()}#bot-mutes")


@login_required
@require_POST
def delivery_retry(request: AuthedRequest, pk: int) -> HttpResponse:
    delivery = get_object_or_404(Delivery.objects.owned_by(request.user), pk=pk)
    if services.retry_now(delivery):
        _send_soon(delivery.pk)
        messages.success(request, "Sending it again now.")
    else:
        messages.info(request, "That message is already sent or being sent.")
    return redirect(f"{_settings_url()}#deliveries")


@login_required
@require_GET
def delivery_list(request: AuthedRequest) -> HttpResponse:
    """The recent deliveries alone: the page polls it while one is on its way."""
    return render(request, "notifications/settings.html#deliveries", _deliveries(request))


def _send_soon(delivery_id: int) -> None:
    from notifications.tasks import deliver_task

    transaction.on_commit(lambda: deliver_task(delivery_id))


def _settings_url() -> str:
    return reverse("notifications:settings")
