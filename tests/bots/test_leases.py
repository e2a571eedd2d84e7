"""Issue 11, defect 2: a worker killed mid-cycle must not leave its bot locked for good, and the
heartbeat must mean that a cycle really ran."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone

from bots import locks, reads, services
from bots.errors import BotError
from bots.models import Bot, BotLease
from bots.tasks import bot_cycle_task, cycle_once, fill_cycle


def _killed_worker_holds(bot: Bot) -> str:
    """What a worker killed mid-cycle leaves behind: a lease nobody gives back."""
    token = locks.take(bot.pk)
    assert token is not None
    return token


def test_a_worker_killed_mid_cycle_frees_its_bot_when_the_lease_runs_out(worked_bot: Bot) -> None:
    services.start_bot(worked_bot)
    _killed_worker_holds(worked_bot)

    assert cycle_once(worked_bot.pk) is None  # held: no second cycle beside the first
    with pytest.raises(BotError, match="busy"), locks.bot_lock(worked_bot.pk, wait=0.2):
        pass

    BotLease.objects.update(until=timezone.now() - timedelta(seconds=1))  # the lease runs out

    assert cycle_once(worked_bot.pk) is not None  # the next worker cycles the bot
    with locks.bot_lock(worked_bot.pk, wait=0.2):  # and Stop / Emergency stop get in
        pass
    assert BotLease.objects.get(bot=worked_bot).token == ""  # given back after each


def test_the_heartbeat_means_a_cycle_ran_not_that_the_chain_did(worked_bot: Bot) -> None:
    services.start_bot(worked_bot)
    worked_bot.refresh_from_db()
    cache.delete(locks.heartbeat_key(worked_bot.pk))
    _killed_worker_holds(worked_bot)

    bot_cycle_task.call_local(worked_bot.pk, worked_bot.chain_token)

    assert cache.get(locks.heartbeat_key(worked_bot.pk)) is None  # so the watchdog steps in
    BotLease.objects.update(until=timezone.now() - timedelta(seconds=1))
    bot_cycle_task.call_local(worked_bot.pk, worked_bot.chain_token)
    assert cache.get(locks.heartbeat_key(worked_bot.pk)) is not None


def _reads_bot(bot_id: int, read: dict[str, Any]) -> Any:
    """``also`` for ``take``: the bot's status, counted each time it is asked."""

    def also() -> None:
        read["asked"] = read.get("asked", 0) + 1
        reads.column(Bot, "status", "id = %s", [bot_id], then=lambda found: read.update(st=found))

    return also


def test_a_lease_taken_with_the_cycles_first_reads_hands_them_over_only_when_taken(
    worked_bot: Bot,
) -> None:
    """A woken live cycle's lease and its first reads go out together (one round trip on
    PostgreSQL): the reads count when the lease was taken, and a bot's first lease, which
    has to be made, reads them again under it."""
    bot = worked_bot
    read: dict[str, Any] = {}
    assert not BotLease.objects.filter(bot=bot).exists()

    first = locks.take(bot.pk, also=_reads_bot(bot.pk, read))  # no lease row yet: made

    assert first is not None and BotLease.objects.get(bot=bot).token == first
    assert read["st"] == [bot.status] and read["asked"] >= 1
    locks.give_back(bot.pk, first)

    read.clear()
    again = locks.take(bot.pk, also=_reads_bot(bot.pk, read))  # free: taken in one go
    assert again is not None and BotLease.objects.get(bot=bot).token == again
    assert read == {"asked": 1, "st": [bot.status]}

    read.clear()
    assert locks.take(bot.pk, also=_reads_bot(bot.pk, read)) is None  # held: not taken
    assert BotLease.objects.get(bot=bot).token == again  # the holder keeps it
    locks.give_back(bot.pk, again)


def test_a_woken_cycle_of_a_bot_another_worker_holds_does_nothing(worked_bot: Bot) -> None:
    services.start_bot(worked_bot)
    token = _killed_worker_holds(worked_bot)

    assert fill_cycle(worked_bot.pk) is None  # busy: its waker tries again shortly

    assert BotLease.objects.get(bot=worked_bot).token == token


@pytest.mark.django_db(transaction=True)
def test_a_long_cycle_keeps_its_lease(worked_market: None, make_bot: Any, settings: Any) -> None:
    """The keeper renews the lease while its holder works, however long that takes."""
    from tests.bots.conftest import WORKED_CONFIG

    bot = make_bot(WORKED_CONFIG)
    settings.BOT_LEASE_SECONDS = 1
    taken_meanwhile = []

    def another_worker() -> None:
        time.sleep(1.5)  # past the lease's first end
        taken_meanwhile.append(locks.take(bot.pk))

    with locks.cycle_lock(bot.pk):
        other = threading.Thread(target=another_worker)
        other.start()
        other.join()

    assert taken_meanwhile == [None]
    assert locks.take(bot.pk) is not None  # given back at the end


def test_keys_unreadable_after_a_key_change_fail_readyz_and_show_on_the_dashboard(
    client: Any, user: Any, bot: Bot, settings: Any
) -> None:
    """Issue 11, defect 8: a changed CREDENTIALS_KEY must not leave grids unwatched in silence."""
    from cryptography.fernet import Fernet

    from accounts.models import ExchangeCredential

    settings.CREDENTIALS_KEY = Fernet.generate_key().decode()
    keys = ExchangeCredential(owner=user, label="main")
    keys.set_keys("k" * 64, "s" * 64)
    keys.save()
    Bot.objects.filter(pk=bot.pk).update(mode=Bot.Mode.LIVE, credential=keys,
                                         status=Bot.Status.RUNNING)  # fmt: skip
    assert client.get("/readyz").json()["checks"]["exchange_keys"] == "ok"

    settings.CREDENTIALS_KEY = Fernet.generate_key().decode()  # the operator changed it

    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert f"bots {bot.pk}" in ready.json()["checks"]["exchange_keys"]
    client.force_login(user)
    page = client.get("/").text
    assert "can no longer read the exchange keys" in page and f"/bots/{bot.pk}/" in page
