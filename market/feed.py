"""The market feed: closed candles from a live exchange, or a replay of real recorded ones.

A feed yields closed 1-minute candles. The run_market_feed command stores each one, records
the latest price, publishes it on the channel layer and wakes the bots whose next resting order
the candle crossed. Three feeds:

- ``StreamFeed`` (``market/streams.py``): the exchange's websocket streams through ccxt.pro,
  with the price between candles, REST filling gaps and standing in while a stream is down;
- ``LiveFeed``: REST polling only (an exchange ccxt.pro has no websocket client for);
- ``ReplayFeed``: continues a symbol's stored history with the bundled real candles that follow
  it, then, when the file runs out, plays it again from the start — shifted in time and scaled
  so the price path stays continuous — so the embedded default trades forever offline.

``MARKET_FEED=auto`` (the default) streams when the exchange answers at start and replays when
it does not (no network); the choice holds for the process's run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.utils import timezone

from market.candles import MINUTE_MS, ClosedCandle, candle_ms, fetch_candles
from market.precision import round_price

if TYPE_CHECKING:
    from market.services import FeedStatus

logger = logging.getLogger(__name__)


class Feed(Protocol):
    replayed: bool
    # The feed records the price between candles itself (its ticks are newer than a closed
    # candle's close): the recorder stores its candles without taking their price.
    ticks: bool

    def describe(self) -> str: ...

    def next_batch(self, timeout: float) -> list[ClosedCandle]: ...

    def status(self) -> FeedStatus: ...

    def close(self) -> None: ...


@dataclass
class ReplayTrack:
    """Where one symbol's replay stands: the source row to play next, and how to shift it."""

    exchange: str
    symbol: str
    rows: Sequence[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]
    tick: Decimal
    position: int = 0
    shift_ms: int = 0
    scale: Decimal = Decimal(1)

    @classmethod
    def after(
        cls,
        exchange: str,
        symbol: str,
        rows: Sequence,
        tick: Decimal,
        last_time_ms: int | None,
        last_close: Decimal | None,
    ) -> ReplayTrack:
        """The track that continues a stored history ending at last_time_ms with last_close."""
        track = cls(exchange, symbol, rows, tick)
        if last_time_ms is None:
            return track
        for i, row in enumerate(rows):
            if row[0] > last_time_ms:
                track.position = i
                return track
        # The stored history runs past the file: play it again, continuing time and price.
        track.position = 0
        track.shift_ms = last_time_ms + MINUTE_MS - rows[0][0]
        track.scale = (last_close / rows[0][1]) if last_close else Decimal(1)
        return track

    def next_candle(self) -> ClosedCandle:
        if self.position >= len(self.rows):
            last_ts, *_, last_close, _ = self._shifted(len(self.rows) - 1)
            self.shift_ms = last_ts + MINUTE_MS - self.rows[0][0]
            self.scale = last_close / self.rows[0][1]
            self.position = 0
        ts, o, h, low, c, v = self._shifted(self.position)
        self.position += 1
        return ClosedCandle(
            self.exchange, self.symbol, datetime.fromtimestamp(ts / 1000, UTC), o, h, low, c, v
        )

    def _shifted(self, i: int) -> tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]:
        ts, o, h, low, c, v = self.rows[i]
        if self.scale == 1:
            return ts + self.shift_ms, o, h, low, c, v
        s, t = self.scale, self.tick
        return (
            ts + self.shift_ms,
            round_price(o * s, t),
            round_price(h * s, t),
            round_price(low * s, t),
            round_price(c * s, t),
            v,
        )


class ReplayFeed:
    """Plays recorded candles at `candles_per_second`, one candle per symbol per step."""

    replayed = True
    ticks = False

    def __init__(
        self,
        tracks: list[ReplayTrack],
        candles_per_second: Decimal,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.tracks = tracks
        self.interval = float(1 / candles_per_second) if candles_per_second > 0 else 0.0
        self.sleep = sleep
        self._next_at = time.monotonic()

    def describe(self) -> str:
        names = ", ".join(t.symbol for t in self.tracks) or "nothing"
        speed = f"{1 / self.interval:g} candles/s" if self.interval else "full speed"
        return f"replaying recorded candles of {names} at {speed}"

    def next_batch(self, timeout: float) -> list[ClosedCandle]:
        wait = self._next_at - time.monotonic()
        if wait > 0:
            self.sleep(min(wait, timeout))
            if time.monotonic() < self._next_at:
                return []
        self._next_at = max(self._next_at + self.interval, time.monotonic() - self.interval)
        return [track.next_candle() for track in self.tracks]

    def status(self) -> FeedStatus:
        from market.services import FeedStatus

        exchange = self.tracks[0].exchange if self.tracks else settings.MARKET_FEED_EXCHANGE
        first = self.tracks[0].rows[0][0] if self.tracks and self.tracks[0].rows else None
        period = datetime.fromtimestamp(first / 1000, UTC).strftime("%B %Y") if first else ""
        return FeedStatus("replay", exchange, replay_of=period)

    def close(self) -> None:
        pass


def replay_tracks(symbols: Iterable[tuple[str, str]]) -> list[ReplayTrack]:
    """A track per market with a bundled file, continuing its stored history."""
    from market.models import Candle
    from market.services import SAMPLES, load_market_rules, read_csv_rows

    files = {(exchange, symbol): path for exchange, symbol, path in SAMPLES}
    tracks = []
    for exchange, symbol in symbols:
        path = files.get((exchange, symbol))
        if path is None:
            logger.warning("replay: no recorded candles for %s %s; not replayed", exchange, symbol)
            continue
        last = (
            Candle.objects.for_series(exchange, symbol)
            .order_by("-open_time")
            .values_list("open_time", "close")
            .first()
        )
        last_ms = int(last[0].timestamp() * 1000) if last else None
        tick = load_market_rules(exchange, symbol).tick
        rows = list(read_csv_rows(path))
        tracks.append(
            ReplayTrack.after(exchange, symbol, rows, tick, last_ms, last[1] if last else None)
        )
    return tracks


# Other apps say which markets they need prices for (bots: the pairs of running bots), so the
# feed serves them without importing those apps.
symbol_providers: list[Callable[[], Iterable[tuple[str, str]]]] = []


# Other apps' stream workers that run beside the feed in its process (bots: the user data
# streams of live accounts). Each is called in its own thread with the feed's stop event and
# returns when it is set.
companions: list[Callable[[threading.Event], None]] = []


def wanted_symbols() -> list[tuple[str, str]]:
    """The markets someone needs prices for: the providers' (running bots) and the pages'."""
    from market.services import watched_markets

    wanted = {pair for provider in symbol_providers for pair in provider()}
    return sorted(wanted | set(watched_markets()))


def feed_from_settings(extra_symbols: Iterable[str] = ()) -> Feed:
    """The feed the settings ask for: ``auto`` streams the exchange when it answers now and
    replays the recorded candles when it does not; ``live`` always streams; ``replay`` replays."""
    from market.services import SAMPLES

    exchange = settings.MARKET_FEED_EXCHANGE
    symbols = [(exchange, s) for s in extra_symbols]
    symbols += [pair for pair in wanted_symbols() if pair not in symbols]
    symbols += [(e, s) for e, s, _ in SAMPLES if (e, s) not in symbols]
    mode = settings.MARKET_FEED
    if mode == "auto":
        problem = unreachable(exchange)
        if problem:
            logger.warning("market feed: %s does not answer (%s): replaying", exchange, problem)
        mode = "replay" if problem else "live"
    if mode == "live":
        return live_feed(exchange, [s for e, s in symbols if e == exchange])
    return ReplayFeed(replay_tracks(symbols), settings.REPLAY_CANDLES_PER_SECOND)


def unreachable(exchange: str, *, timeout_ms: int = 5000) -> str:
    """Why the exchange's public API does not answer now, in words; '' when it does (its
    clock is asked: one request of the lightest weight)."""
    from market import exchange as api

    try:
        client = api.public_client(exchange)
        client.timeout = timeout_ms
        with api.translated("the exchange's time", exchange_id=exchange):
            client.fetch_time()
    except Exception as e:  # noqa: BLE001 - whatever the reason, the replay it is
        return str(e) or type(e).__name__
    return ""


def live_feed(exchange: str, symbols: list[str]) -> Feed:
    """The exchange's websocket streams (ccxt.pro), or REST polling where it has none."""
    import ccxt.pro

    if exchange in ccxt.pro.exchanges:
        from market.streams import StreamFeed

        return StreamFeed(exchange, symbols, wanted=wanted_symbols)
    return LiveFeed(exchange, symbols, poll_seconds=settings.MARKET_FEED_POLL_SECONDS)


class LiveFeed:
    """Closed candles from the exchange over REST: ``fetch_ohlcv`` once per ``poll_seconds``.
    For an exchange ccxt.pro has no websocket client for (``StreamFeed`` streams the others)."""

    replayed = False
    ticks = False

    def __init__(
        self, exchange: str, symbols: list[str], *, client: Any = None, poll_seconds: float = 10
    ) -> None:
        from market.exchange import public_client

        self.exchange = exchange
        self.symbols = symbols
        self.client = client or public_client(exchange)
        self.poll_seconds = poll_seconds
        self._last: dict[str, int] = {}
        self._next_at = 0.0
        self._started = timezone.now()

    def describe(self) -> str:
        return f"polling {self.exchange} over REST ({', '.join(self.symbols)})"

    def next_batch(self, timeout: float) -> list[ClosedCandle]:
        wait = self._next_at - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout))
            return []
        self._next_at = time.monotonic() + self.poll_seconds
        out: list[ClosedCandle] = []
        for symbol in self.symbols:
            last = self._last.get(symbol)
            since = last + MINUTE_MS if last is not None else None
            closed, _ = fetch_candles(self.client, self.exchange, symbol, since, limit=500)
            if last is None:
                closed = closed[-5:]  # a start: the last few minutes
            if closed:
                out += closed
                self._last[symbol] = candle_ms(closed[-1])
        return out

    def status(self) -> FeedStatus:
        from market.services import FeedStatus

        return FeedStatus(
            "rest", self.exchange, since=self._started, symbols=tuple(self.symbols),
            reason=f"ccxt.pro has no websocket client for {self.exchange}",
            poll_seconds=self.poll_seconds,
        )  # fmt: skip

    def close(self) -> None:
        pass


# --- recording -----------------------------------------------------------------------------------


def record_candles(
    candles: list[ClosedCandle], *, replayed: bool = False, prices: bool = True
) -> None:
    """Store closed candles, record each symbol's latest price and publish it (unless
    ``prices`` is off: a feed with ticks between candles records newer ones itself), and wake
    the bots whose next order the candles crossed."""
    from market import push
    from market.models import Candle
    from market.services import record_price
    from market.signals import candles_closed

    Candle.objects.bulk_create(
        [
            Candle(exchange=c.exchange, symbol=c.symbol, timeframe="1m", open_time=c.open_time,
                   open=c.open, high=c.high, low=c.low, close=c.close, volume=c.volume)
            for c in candles
        ],
        ignore_conflicts=True,
    )  # fmt: skip
    by_symbol: dict[tuple[str, str], list[ClosedCandle]] = {}
    for c in candles:
        by_symbol.setdefault((c.exchange, c.symbol), []).append(c)
    for (exchange, symbol), group in by_symbol.items():
        last = group[-1]
        if prices:
            record_price(exchange, symbol, last.close, last.open_time, replayed=replayed)
            push.publish_price(exchange, symbol, last.close, last.open_time, candle=_as_dict(last))
        candles_closed.send(
            sender=ClosedCandle,
            exchange=exchange,
            symbol=symbol,
            low=min(c.low for c in group),
            high=max(c.high for c in group),
            at=last.open_time,
        )


def _as_dict(c: ClosedCandle) -> dict[str, object]:
    return {
        "time_ms": int(c.open_time.timestamp() * 1000),
        "open": str(c.open), "high": str(c.high), "low": str(c.low), "close": str(c.close),
    }  # fmt: skip
