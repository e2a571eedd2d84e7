"""Client order ids: every id aibo sends to an exchange is made here, and nowhere else.

An id is deterministic, so a resend after a crash or a lost answer finds the order it sent
before instead of placing a second one. Ids are at most 36 characters of ``[A-Za-z0-9_-]``
(Binance's ``newClientOrderId``) and start with the bot's key, ``a<bot>g<generation>``: each
start of a bot is a new generation, so ids never repeat across restarts.
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal

MAX_LENGTH = 36
_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")

# The labels of a bot's market orders (the stop sale of a paper bot is labelled with its
# reason, ``stop_loss`` or ``take_profit``, instead).
START = "start"
STOP = "stop"


def bot_key(bot_id: int, generation: int) -> str:
    """The prefix of one run of one bot: bot and generation."""
    return f"a{bot_id}g{generation}"


def client_order_id(bot_key: str, slot: int, side: str, price: Decimal, seq: int) -> str:
    """A grid order's id: the same slot, side, price and fill count always give the same id.

    ``seq`` is the slot's fill count: the order resting on a slot keeps its id until it fills,
    so a resend after a crash finds the order instead of doubling it. The readable part is
    for people; the digest of all inputs keeps ids of different bots apart.
    """
    side = str(side)
    digest = hashlib.sha256(f"{bot_key}|{slot}|{side}|{price}|{seq}".encode()).hexdigest()
    prefix = _ID_CHARS.sub("_", bot_key)[:10]
    readable = f"{slot}{side[0]}{seq}"
    cid = f"{prefix}-{readable}-{digest[:8]}" if prefix else f"g-{readable}-{digest[:8]}"
    return cid if len(cid) <= MAX_LENGTH else f"g-{digest[:34]}"


def market_order_id(bot_key: str, label: str) -> str:
    """A bot's market order (the start buy, a stop sale): one per label and generation."""
    return f"{bot_key}-{label}"[:MAX_LENGTH]


def belongs_to(client_id: str, bot_key: str) -> bool:
    """Whether an order id on the exchange is one this run of the bot sent (grid or market)."""
    prefix = _ID_CHARS.sub("_", bot_key)[:10]
    return client_id.startswith(f"{prefix}-") or client_id.startswith(f"{bot_key}-")
