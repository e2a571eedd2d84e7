"""The pairs a bot can trade: the exchange's own list of spot pairs, and a chosen pair's rules.

The list comes from ccxt ``load_markets`` (spot markets whose status is TRADING), kept in the
cache for ``PAIRS_REFRESH_SECONDS``: loading it spends request weight. When the exchange does
not answer (no network, as in the tests and CI, or a 418 ban) the list is the pairs whose rules
are stored or bundled, and it says so; that answer is kept a few minutes, so a page does not
wait on a dead network each time it is drawn.

Choosing a pair whose rules are not stored fetches them from the exchange
(``services.load_market_rules``); its history is imported in the background (``history``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from market import exchange as exchange_api
from market import services
from market.models import MarketRules

# Tried again this soon after the exchange did not answer.
UNREACHABLE_SECONDS = 300
SEARCH_LIMIT = 20
_PAIR = re.compile(r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$")
_SEPARATORS = re.compile(r"[\s_-]+")


class PairError(Exception):
    """This pair cannot be chosen now, in words (on the form's pair field)."""


@dataclass(frozen=True)
class Pairs:
    """An exchange's pairs: its own list (``listed``), or the stored ones and why."""

    exchange: str
    symbols: tuple[str, ...]
    listed: bool
    reason: str = ""

    def __contains__(self, symbol: object) -> bool:
        return symbol in self.symbols

    def describe(self) -> str:
        name = self.exchange.capitalize()
        if self.listed:
            return f"{len(self.symbols):,} spot pairs trading on {name}."
        return (
            f"{name} did not answer, so only the pairs stored here can be chosen now "
            f"({', '.join(self.symbols) or 'none'})."
        )


def _key(exchange: str) -> str:
    return f"pairs:{exchange}"


def stored_pairs(exchange: str) -> tuple[str, ...]:
    """The pairs whose rules are stored, and the bundled ones (their rules ship with aibo)."""
    stored = set(MarketRules.objects.filter(exchange=exchange).values_list("symbol", flat=True))
    stored |= {symbol for ex, symbol, _ in services.SAMPLES if ex == exchange}
    return tuple(sorted(stored))


def exchange_pairs(exchange: str) -> Pairs:
    """The exchange's spot pairs trading now (cached), else the stored ones."""
    cached = cache.get(_key(exchange))
    if cached is not None:
        return cached
    try:
        client = exchange_api.public_client(exchange)
        with exchange_api.translated("loading the markets", exchange_id=exchange):
            markets = client.load_markets()
    except exchange_api.ExchangeError as e:
        pairs = Pairs(exchange, stored_pairs(exchange), listed=False, reason=str(e))
        cache.set(_key(exchange), pairs, timeout=UNREACHABLE_SECONDS)
        return pairs
    symbols = sorted(
        m["symbol"] for m in markets.values() if m.get("spot") and m.get("active") is not False
    )
    pairs = Pairs(exchange, tuple(symbols), listed=True)
    cache.set(_key(exchange), pairs, timeout=settings.PAIRS_REFRESH_SECONDS)
    return pairs


def forget_pairs(exchange: str) -> None:
    """Ask the exchange again next time."""
    cache.delete(_key(exchange))


def _compact(symbol: str) -> str:
    return symbol.replace("/", "")


def normalise(text: str, pairs: Pairs | None = None) -> str:
    """``" sol-usdt "`` → ``SOL/USDT``; ``SOLUSDT`` → ``SOL/USDT`` when ``pairs`` has it."""
    symbol = _SEPARATORS.sub("/", text.strip().upper())
    if "/" not in symbol and pairs is not None:
        symbol = next((s for s in pairs.symbols if _compact(s) == symbol), symbol)
    return symbol


def listed(exchange: str, text: str) -> str | None:
    """The pair ``text`` names (``BTCUSDT``, ``BTC-USDT``, ``btc/usdt``) as the exchange writes
    it, when the exchange lists it (or it is stored here); else None."""
    known = exchange_pairs(exchange)
    symbol = normalise(text[:30], known)
    return symbol if symbol in known else None


def well_formed(symbol: str) -> bool:
    """Written as BASE/QUOTE (letters and digits): safe to look up, not yet known to exist."""
    return bool(_PAIR.match(symbol))


def search(exchange: str, query: str, *, limit: int = SEARCH_LIMIT) -> list[str]:
    """Pairs matching ``query`` (``sol``, ``SOL/US``, ``solusdt``): those starting with it
    first, then those containing it."""
    pairs = exchange_pairs(exchange)
    wanted = _compact(_SEPARATORS.sub("/", query.strip().upper()))
    if not wanted:
        return list(pairs.symbols[:limit])
    starts = [s for s in pairs.symbols if _compact(s).startswith(wanted)]
    if len(starts) < limit:
        starts += [s for s in pairs.symbols if wanted in _compact(s) and s not in starts]
    return starts[:limit]


def choose_pair(exchange: str, text: str) -> MarketRules:
    """The rules of the pair ``text`` names: stored (or bundled) ones, else the exchange's,
    fetched now. ``PairError`` in words when the exchange has no such pair or did not answer;
    then nothing is stored."""
    name = exchange.capitalize()
    pairs = None
    symbol = normalise(text)
    if "/" not in symbol and symbol:  # SOLUSDT: the exchange's list says where the slash goes
        pairs = exchange_pairs(exchange)
        symbol = normalise(text, pairs)
    if not well_formed(symbol):
        raise PairError("Write the pair as BASE/QUOTE, e.g. BTC/USDT.")
    rules = MarketRules.objects.filter(exchange=exchange, symbol=symbol).first()
    if rules is not None:
        return rules
    pairs = pairs or exchange_pairs(exchange)
    if not pairs.listed:
        if symbol in pairs:  # stored or bundled
            try:
                return services.load_market_rules(exchange, symbol)
            except services.MarketDataError as e:
                raise PairError(str(e)) from None
        raise PairError(f"{pairs.describe()} Try {symbol} again in a few minutes.")
    if symbol not in pairs:
        raise PairError(
            f"{name} lists no spot pair {symbol} trading now; choose one of its "
            f"{len(pairs.symbols):,} pairs from the list."
        )
    try:
        return services.load_market_rules(
            exchange, symbol, client=exchange_api.public_client(exchange)
        )
    except (services.MarketDataError, exchange_api.ExchangeError) as e:
        raise PairError(f"The rules of {symbol} could not be fetched: {e}. Try again.") from None
