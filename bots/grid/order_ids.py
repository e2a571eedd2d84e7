"""Client order ids: every id aibo sends to an exchange is made here, and nowhere else.

An id is deterministic, so a resend after a crash or a lost answer finds the order it sent
before instead of placing a second one. Ids are at most 36 characters of ``[A-Za-z0-9_-]``
(Binance's ``newClientOrderId``) and start with the key of one run of one bot,
``<installation>a<bot>g<generation>``: the installation's own random part keeps apart the
orders of two databases on one account (a fresh install never takes an old install's
``a1g1-…`` orders for its own), and each start of a bot is a new generation, so ids never
repeat across restarts. Bots started before installations had a part keep ``a<bot>g<gen>``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from decimal import Decimal

MAX_LENGTH = 36
INSTALLATION_LENGTH = 4
_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_PREFIX_LENGTH = 18  # of the key, in a grid order's id (keys up to 10 characters: unchanged)
_KEY = re.compile(r"^(?P<installation>[a-z0-9]{4})?a(?P<bot>[0-9]+)g(?P<generation>[0-9]+)$")

# The labels of a bot's market orders (the stop sale of a paper bot is labelled with its
# reason, ``stop_loss`` or ``take_profit``, instead).
START = "start"
STOP = "stop"


def new_installation() -> str:
    """A random installation part: a letter, then letters and digits (lower case)."""
    alphabet = string.ascii_lowercase + string.digits
    return secrets.choice(string.ascii_lowercase) + "".join(
        secrets.choice(alphabet) for _ in range(INSTALLATION_LENGTH - 1)
    )


def bot_key(bot_id: int, generation: int, installation: str = "") -> str:
    """The prefix of one run of one bot: installation, bot and generation."""
    return f"{installation}a{bot_id}g{generation}"


def parse_key(bot_key: str) -> tuple[str, int, int] | None:
    """(installation, bot, generation) of a bot's key, or None when it is not one of ours."""
    match = _KEY.match(bot_key)
    if match is None:
        return None
    return match["installation"] or "", int(match["bot"]), int(match["generation"])


def key_of(client_id: str) -> tuple[str, int, int] | None:
    """(installation, bot, generation) of an id this module made, or None for anyone else's
    (the trader's own orders, another program's)."""
    head, dash, _rest = client_id.partition("-")
    return parse_key(head) if dash else None


_READABLE = re.compile(r"^(?P<slot>[0-9]+)[bs][0-9]+(p[0-9]+)?$")


def slot_of(client_id: str) -> int | None:
    """The grid slot of a grid order's id this module made (None: a market order's, anyone
    else's, or an id too long to carry its readable part)."""
    parts = client_id.split("-")
    match = _READABLE.match(parts[1]) if len(parts) == 3 else None
    return int(match["slot"]) if match else None


def _prefix(bot_key: str) -> str:
    return _ID_CHARS.sub("_", bot_key)[:_PREFIX_LENGTH]


def client_order_id(
    bot_key: str, slot: int, side: str, price: Decimal, seq: int, part: int = 0
) -> str:
    """A grid order's id: the same slot, side, price and fill count always give the same id.

    ``seq`` is the slot's fill count: the order resting on a slot keeps its id until it fills,
    so a resend after a crash finds the order instead of doubling it. ``part`` counts the
    remainders of a partly filled order that was cancelled: each is sent under a new id. The
    readable part is for people; the digest of all inputs keeps ids of different bots apart.
    """
    side = str(side)
    extra = f"|{part}" if part else ""
    digest = hashlib.sha256(f"{bot_key}|{slot}|{side}|{price}|{seq}{extra}".encode()).hexdigest()
    prefix = _prefix(bot_key)
    readable = f"{slot}{side[0]}{seq}" + (f"p{part}" if part else "")
    cid = f"{prefix}-{readable}-{digest[:8]}" if prefix else f"g-{readable}-{digest[:8]}"
    return cid if len(cid) <= MAX_LENGTH else f"g-{digest[:34]}"


def market_order_id(bot_key: str, label: str) -> str:
    """A bot's market order (the start buy, a stop sale): one per label and generation."""
    return f"{bot_key}-{label}"[:MAX_LENGTH]


def belongs_to(client_id: str, bot_key: str) -> bool:
    """Whether an order id on the exchange is one this run of the bot sent (grid or market)."""
    return client_id.startswith(f"{_prefix(bot_key)}-") or client_id.startswith(f"{bot_key}-")
