"""Live bots running across this upgrade: parts of resting orders that filled before it were
recorded (``Order.filled``, their exchange trades) but not booked into the grid, which books
every part as it comes since 0008. Book them once: the grid's quote, base and dust take what
those trades moved, and the slot knows how much of its order is done, so the rest completes
it exactly (issue 11, defect 5)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import migrations

ZERO = Decimal(0)


def book_earlier_parts(apps: Any, schema_editor: Any) -> None:
    bot_model = apps.get_model("bots", "Bot")
    order_model = apps.get_model("bots", "Order")
    record_model = apps.get_model("bots", "ExchangeFillRecord")
    live = bot_model.objects.filter(status="running", mode="live", engine_state__isnull=False)
    for bot in live:
        state = bot.engine_state
        base_asset = bot.symbol.split("/")[0]
        orders = order_model.objects.filter(
            bot=bot, kind="limit", status__in=["pending", "open"], filled__gt=0,
            slot__isnull=False,
        )  # fmt: skip
        if bot.started_at is not None:
            orders = orders.filter(created_at__gte=bot.started_at)
        changed = False
        for order in orders:
            slot = state["slots"][order.slot]
            if Decimal(slot.get("filled", "0")):
                continue  # booked by the new code already
            records = list(record_model.objects.filter(order=order))
            amount = sum((r.amount for r in records), ZERO)
            if not amount:
                continue
            cost = sum((r.price * r.amount for r in records), ZERO)
            fee = sum((r.fee_quote for r in records), ZERO)
            base_fee = sum((r.fee for r in records if r.fee_asset == base_asset), ZERO)
            quote, base = Decimal(state["quote"]), Decimal(state["base"])
            if order.side == "buy":
                quote, base = quote - cost - fee, base + amount
            else:
                quote, base = quote + cost - fee, base - amount
            dust = Decimal(state.get("dust", "0")) - base_fee
            state["quote"], state["base"] = str(quote), str(base)
            state["fees_paid"] = str(Decimal(state["fees_paid"]) + fee + base_fee * cost / amount)
            if dust:
                state["dust"] = str(dust)
            slot["filled"], slot["part"] = str(amount), int(slot.get("part", 0))
            changed = True
        if changed:
            bot_model.objects.filter(pk=bot.pk).update(engine_state=state)


class Migration(migrations.Migration):
    dependencies = [
        ("bots", "0008_order_key"),
    ]

    operations = [
        migrations.RunPython(book_earlier_parts, migrations.RunPython.noop),
    ]
