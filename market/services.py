"""Market data: market rules, candle imports, the latest price and the feed's state.

About 600 lines because the candle import keeps its two write paths (PostgreSQL COPY and
batched inserts) and its gap and idempotency rules together, and the latest price is read and
written in one place (cache and row) with the feed's state beside it; the feed and push live
apart.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from aibo import metrics
from market.exchange import ExchangeError
from market.models import Candle, LatestPrice, MarketRules

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
SNAPSHOT = DATA_DIR / "binance_exchangeInfo_spot_BTCUSDT_ETHUSDT.json"
# The bundled real Binance candles: (exchange, symbol, file).
SAMPLES = [
    ("binance", "BTC/USDT", DATA_DIR / "binance_spot_BTCUSDT_1m_2025-06-02_2025-06-15.csv.gz"),
    ("binance", "ETH/USDT", DATA_DIR / "binance_spot_ETHUSDT_1m_2025-06-02_2025-06-15.csv.gz"),
]
# The first days of each sample are history at install; the feed replays the rest.
SAMPLE_HISTORY_DAYS = 10
MINUTE_MS = 60_000


class MarketDataError(Exception):
    """Bad market input, in words (file, line, what is wrong); nothing was written."""


# --- market rules -------------------------------------------------------------------------------


def load_market_rules(
    exchange: str, symbol: str, *, client: Any = None, reload: bool = True
) -> MarketRules:
    """The market's tick, step, min notional and fee: from the exchange through ccxt when a
    client is given (and cached), else the cached row, else the bundled offline snapshot.
    ``reload=False`` reuses the markets the client has already loaded."""
    if client is not None:
        import ccxt

        try:
            markets = client.load_markets(reload=reload)
        except (ccxt.BaseError, ExchangeError) as e:  # ours: the request budget said wait
            raise MarketDataError(f"{exchange} did not answer: {type(e).__name__}: {e}") from None
        if symbol not in markets:
            raise MarketDataError(f"{exchange} has no market {symbol}")
        return _save_rules(exchange, markets[symbol], source=MarketRules.Source.EXCHANGE)
    cached = MarketRules.objects.filter(exchange=exchange, symbol=symbol).first()
    return cached or load_snapshot_rules(exchange, symbol)


def load_snapshot_rules(exchange: str, symbol: str) -> MarketRules:
    """Rules from the bundled exchangeInfo snapshot, parsed by ccxt's own market pipeline."""
    if exchange != "binance":
        raise MarketDataError(f"no offline snapshot for {exchange}; connect to the exchange")
    import ccxt

    info = json.loads(SNAPSHOT.read_text())
    ex = ccxt.binance()
    ex.options["crossMarginPairsData"] = []
    ex.options["isolatedMarginPairsData"] = []
    ex.set_markets([ex.parse_market(s) for s in info["symbols"]])
    if symbol not in ex.markets:
        raise MarketDataError(f"{symbol} is not in the bundled snapshot ({', '.join(ex.markets)})")
    return _save_rules(exchange, ex.markets[symbol], source=MarketRules.Source.SNAPSHOT)


def _num(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def _filters(market: dict[str, Any]) -> dict[str, Any]:
    """The exchange's own filters and status of a ccxt market (Binance's exchangeInfo)."""
    info = market.get("info") or {}
    by_type = {f.get("filterType"): f for f in info.get("filters") or [] if isinstance(f, dict)}
    side = by_type.get("PERCENT_PRICE_BY_SIDE", {})
    return {
        "max_amount": _num(by_type.get("LOT_SIZE", {}).get("maxQty")),
        "max_notional": _num(by_type.get("NOTIONAL", {}).get("maxNotional")),
        "bid_up": _num(side.get("bidMultiplierUp")),
        "bid_down": _num(side.get("bidMultiplierDown")),
        "ask_up": _num(side.get("askMultiplierUp")),
        "ask_down": _num(side.get("askMultiplierDown")),
        "max_orders": int(by_type.get("MAX_NUM_ORDERS", {}).get("maxNumOrders") or 0),
        "status": str(info.get("status") or ""),
    }


def _save_rules(exchange: str, market: dict[str, Any], *, source: str) -> MarketRules:
    rules, _ = MarketRules.objects.update_or_create(
        exchange=exchange,
        symbol=market["symbol"],
        defaults={
            "base": market["base"],
            "quote": market["quote"],
            "tick": _num(market["precision"]["price"]),
            "step": _num(market["precision"]["amount"]),
            "min_notional": _num((market["limits"].get("cost") or {}).get("min")),
            "min_amount": _num((market["limits"].get("amount") or {}).get("min")),
            "min_price": _num((market["limits"].get("price") or {}).get("min")),
            "max_price": _num((market["limits"].get("price") or {}).get("max")),
            "fee": _num(market.get("taker") or "0.001"),
            "source": source,
            **_filters(market),
        },
    )
    return rules


# --- candles ------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    read: int = 0
    inserted: int = 0
    gaps: list[tuple[datetime, datetime, int]] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return self.read - self.inserted


Row = tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]


def read_csv_rows(source: str | Path | IO[str]) -> Iterator[Row]:
    """Rows of `timestamp_ms,open,high,low,close,volume` (header optional; .gz read as gzip)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise MarketDataError(f"{path}: no such file")
        opener: Any = gzip.open if path.suffix == ".gz" else open
        handle: IO[str] = opener(path, "rt", newline="")  # noqa: SIM115  (closed below)
        name = str(path)
    else:
        handle, name = source, getattr(source, "name", "<input>")
    with handle:
        for line_no, record in enumerate(csv.reader(handle), start=1):
            if not record or (line_no == 1 and not record[0].strip().isdigit()):
                continue  # blank line, or the header
            try:
                ts, o, h, low, c, v = record[:6]
                row = (int(ts), Decimal(o), Decimal(h), Decimal(low), Decimal(c), Decimal(v))
            except (ValueError, InvalidOperation):
                raise MarketDataError(
                    f"{name}, line {line_no}: expected timestamp_ms,open,high,low,close,volume "
                    f"as numbers, got {','.join(record)[:80]!r}"
                ) from None
            if (
                row[0] % MINUTE_MS
                or not (0 < row[3] <= min(row[1], row[4]))
                or (row[2] < max(row[1], row[4]))
            ):
                raise MarketDataError(f"{name}, line {line_no}: not a valid 1-minute candle")
            yield row


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def find_gaps(
    times_ms: Iterable[int], step_ms: int = MINUTE_MS
) -> list[tuple[datetime, datetime, int]]:
    gaps = []
    previous = None
    for t in times_ms:
        if previous is not None and t - previous > step_ms:
            gaps.append(
                (_time(previous + step_ms), _time(t - step_ms), (t - previous) // step_ms - 1)
            )
        previous = t
    return gaps


def import_candle_rows(
    rows: Iterable[Row],
    *,
    exchange: str,
    symbol: str,
    timeframe: str = "1m",
    progress: Callable[[int], None] | None = None,
    batch: int = 20_000,
) -> ImportReport:
    """Store candles; ones already stored are skipped (idempotent). All or nothing."""
    step = timeframe_ms(timeframe)
    report = ImportReport()
    times: list[int] = []
    with transaction.atomic():
        chunk: list[Row] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= batch:
                report.inserted += _insert(chunk, exchange, symbol, timeframe, step)
                report.read += len(chunk)
                times.extend(r[0] for r in chunk)
                chunk = []
                if progress:
                    progress(report.read)
        if chunk:
            report.inserted += _insert(chunk, exchange, symbol, timeframe, step)
            report.read += len(chunk)
            times.extend(r[0] for r in chunk)
    report.gaps = find_gaps(sorted(times), step)
    return report


def timeframe_ms(timeframe: str) -> int:
    """'1m' → 60000, '1h' → 3600000 (ccxt's own parser)."""
    import ccxt

    if timeframe[-1:] in ("M", "y"):  # months and years are not a fixed number of seconds
        raise MarketDataError(f"{timeframe!r}: aibo stores fixed timeframes (1m, 5m, 1h, 1d, 1w)")
    try:
        return int(ccxt.Exchange.parse_timeframe(timeframe)) * 1000
    except Exception:
        raise MarketDataError(f"{timeframe!r} is not a timeframe (1m, 5m, 1h, 1d, ...)") from None


def _insert(rows: list[Row], exchange: str, symbol: str, timeframe: str, step: int) -> int:
    """Insert the rows not stored yet; returns how many were new."""
    times = {r[0] for r in rows}
    span = Candle.objects.for_series(exchange, symbol, timeframe).filter(
        open_time__range=(_time(min(times)), _time(max(times)))
    )
    stored = span.count()
    if stored >= len(times) and times <= {
        int(t.timestamp() * 1000) for t in span.values_list("open_time", flat=True)
    }:
        return 0  # every one of these candles is stored already: a re-import
    if connection.vendor == "postgresql":
        return _copy_insert(rows, exchange, symbol, timeframe, overlap=stored > 0)
    Candle.objects.bulk_create(
        [
            Candle(exchange=exchange, symbol=symbol, timeframe=timeframe, open_time=_time(ts),
                   open=o, high=h, low=low, close=c, volume=v)
            for ts, o, h, low, c, v in rows
        ],
        batch_size=2_000,
        ignore_conflicts=True,
    )  # fmt: skip
    return span.count() - stored


def _copy_insert(rows: list[Row], exchange: str, symbol: str, timeframe: str, *,
                 overlap: bool) -> int:  # fmt: skip
    """PostgreSQL COPY: straight into the table when none of these times is stored yet (the
    common case of a first import or a resume), else through a temporary table and
    INSERT .. ON CONFLICT DO NOTHING so stored candles are skipped."""
    import psycopg

    table = Candle._meta.db_table
    if not overlap:
        columns = (
            f"{table} (exchange, symbol, timeframe, open_time, open, high, low, close, volume)"
        )
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                _copy(cursor, columns, rows, prefix=f"{exchange}\t{symbol}\t{timeframe}\t")
            return len(rows)
        except (IntegrityError, psycopg.IntegrityError):  # the raw COPY raises psycopg's own
            pass  # a repeated row, or another import got there first: take the careful path
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS candle_import "
            "(open_time timestamptz, open numeric, high numeric, low numeric, close numeric, "
            "volume numeric) ON COMMIT DROP"
        )
        cursor.execute("TRUNCATE candle_import")
        _copy(cursor, "candle_import (open_time, open, high, low, close, volume)", rows)
        cursor.execute(
            f"INSERT INTO {table} (exchange, symbol, timeframe, open_time, open, high, low, "
            "close, volume) SELECT %s, %s, %s, open_time, open, high, low, close, volume "
            "FROM candle_import ON CONFLICT DO NOTHING",
            [exchange, symbol, timeframe],
        )
        return cursor.rowcount


def _copy(cursor: Any, target: str, rows: list[Row], *, prefix: str = "") -> None:
    buffer = io.StringIO()
    for ts, o, h, low, c, v in rows:
        buffer.write(f"{prefix}{_time(ts).isoformat()}\t{o}\t{h}\t{low}\t{c}\t{v}\n")
    with cursor.cursor.copy(f"COPY {target} FROM STDIN") as copy:
        copy.write(buffer.getvalue())


def import_candles_from_csv(
    source: str | Path | IO[str],
    *,
    exchange: str,
    symbol: str,
    timeframe: str = "1m",
    until_ms: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    rows = read_csv_rows(source)
    if until_ms is not None:
        rows = (r for r in rows if r[0] < until_ms)
    return import_candle_rows(
        list(rows), exchange=exchange, symbol=symbol, timeframe=timeframe, progress=progress
    )


def import_candles_from_exchange(
    client: Any,
    *,
    exchange: str,
    symbol: str,
    timeframe: str = "1m",
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    page_size: int = 1000,
) -> ImportReport:
    """Page through ccxt `fetch_ohlcv` from ``since`` (default: after the last stored candle)
    to ``until`` (default: now; the candle still open is left for next time). Each page is
    stored as it arrives, so an interrupted import resumes where it stopped."""
    import ccxt

    step = timeframe_ms(timeframe)
    series = Candle.objects.for_series(exchange, symbol, timeframe)
    if since is None:
        last = series.order_by("-open_time").values_list("open_time", flat=True).first()
        if last is None:
            raise MarketDataError(
                f"nothing stored for {symbol} yet: give a start date (--since YYYY-MM-DD)"
            )
        since = last + timedelta(milliseconds=step)
    cursor = int(since.timestamp() * 1000)
    now = timezone.now()
    # Only closed candles: one whose open time plus a step is still ahead is left for later.
    end = int(min(until or now, now).timestamp() * 1000)
    end = min(end, int(now.timestamp() * 1000) - step + 1)
    total = ImportReport()
    times: list[int] = []
    while cursor < end:
        try:
            page = client.fetch_ohlcv(symbol, timeframe, since=cursor, limit=page_size)
        except ccxt.BadSymbol:
            raise MarketDataError(f"{exchange} has no market {symbol}") from None
        except (ccxt.BaseError, ExchangeError) as e:
            raise MarketDataError(
                f"{exchange} did not answer ({type(e).__name__}: {e}); {total.inserted:,} "
                "candles were stored before that, run the import again to resume"
            ) from None
        rows = [
            (int(p[0]), *(Decimal(str(x)) for x in p[1:6])) for p in page if cursor <= p[0] < end
        ]
        if not rows:
            break
        report = import_candle_rows(rows, exchange=exchange, symbol=symbol, timeframe=timeframe)
        total.read += report.read
        total.inserted += report.inserted
        times += [r[0] for r in rows]
        cursor = rows[-1][0] + step
        if progress:
            progress(total.read)
    total.gaps = find_gaps(times, step)
    return total


def load_bundled_sample() -> list[str]:
    """The embedded default's real history: rules and the first days of each bundled file.

    Idempotent: a second run finds the candles there and adds nothing.
    """
    done = []
    for exchange, symbol, path in SAMPLES:
        load_market_rules(exchange, symbol)
        rows = list(read_csv_rows(path))
        until = rows[0][0] + SAMPLE_HISTORY_DAYS * 1440 * MINUTE_MS
        series = Candle.objects.for_series(exchange, symbol)
        if series.filter(open_time__lt=_time(until)).count() >= (until - rows[0][0]) // MINUTE_MS:
            done.append(f"{symbol}: already loaded")
            continue
        report = import_candle_rows(
            [r for r in rows if r[0] < until], exchange=exchange, symbol=symbol
        )
        done.append(f"{symbol}: {report.inserted} candles")
    return done


# --- the latest price and the feed's state ------------------------------------------------------
#
# The feed keeps each market's latest price in the cache for PRICE_CACHE_SECONDS (Redis when
# REDIS_URL is set, so every process reads the same; in memory in the embedded default's one
# process) and writes the LatestPrice row at most about once a second per market, so a cold
# cache still has a price. Pages and risk rules read ``price_now``; the feed's state (streaming,
# on its REST fallback, replaying) is ``feed_status``.


@dataclass(frozen=True)
class PriceNow:
    """A market's latest price, the market's time of it, and whether it is a replay's."""

    price: Decimal
    at: datetime
    replayed: bool = False

    def age(self) -> timedelta:
        return timezone.now() - self.at


def price_key(exchange: str, symbol: str) -> str:
    """Where the feed keeps a market's hot price (read with others: ``price_now``'s ``known``)."""
    return f"market:price:{exchange}:{symbol}"


def cache_price(
    exchange: str, symbol: str, price: Decimal, at: datetime, *, replayed: bool = False
) -> None:
    """The feed's hot price: in the cache for PRICE_CACHE_SECONDS (read by ``price_now``).
    A live price's age as it arrives is the pair's feed lag (``aibo.metrics``)."""
    if not replayed:
        metrics.FEED_LAG.labels(symbol).set(max(0.0, (timezone.now() - at).total_seconds()))
    cache.set(
        price_key(exchange, symbol),
        (str(price), int(at.timestamp() * 1000), replayed),
        timeout=max(1, settings.PRICE_CACHE_SECONDS),
    )


def record_price(
    exchange: str, symbol: str, price: Decimal, at: datetime, *, replayed: bool = False
) -> None:
    """Save a market's latest price (the LatestPrice row). A price older than the saved one of
    the same kind does not replace it (a closed candle's close arrives after the ticks of the
    next candle); a replayed price replaces a live one and the other way round."""
    saved = (
        LatestPrice.objects.filter(exchange=exchange, symbol=symbol)
        .exclude(replayed=replayed, at__gt=at)
        .update(price=price, at=at, replayed=replayed)
    )
    if not saved:
        LatestPrice.objects.get_or_create(
            exchange=exchange,
            symbol=symbol,
            defaults={"price": price, "at": at, "replayed": replayed},
        )


def price_now(
    exchange: str, symbol: str, *, known: dict[str, Any] | None = None
) -> PriceNow | None:
    """A market's latest price: the feed's hot price from the cache, else the saved row.
    ``known``: the cache's answer to a read of several keys, this one's among them."""
    key = price_key(exchange, symbol)
    cached = cache.get(key) if known is None else known.get(key)
    if cached is not None:
        price, at_ms, replayed = cached
        return PriceNow(Decimal(price), _time(at_ms), replayed)
    row = (
        LatestPrice.objects.filter(exchange=exchange, symbol=symbol)
        .only("price", "at", "replayed")
        .first()
    )
    return PriceNow(row.price, row.at, row.replayed) if row else None


def latest_price_row(exchange: str, symbol: str) -> LatestPrice | None:
    """The feed's last saved price of a market, with its time (``price_now`` is fresher)."""
    return LatestPrice.objects.filter(exchange=exchange, symbol=symbol).first()


def latest_price(exchange: str, symbol: str) -> Decimal | None:
    now = price_now(exchange, symbol)
    return now.price if now else None


FEED_STATUS_KEY = "market:feed:status"
# The running feed writes its state every few seconds; gone this long, the feed is not running.
FEED_STATUS_SECONDS = 30
# A live price older than this says the feed is not running (when no state is in the cache).
FEED_QUIET = timedelta(minutes=3)
_SAMPLE_MONTH = re.compile(r"_(\d{4})-(\d{2})-\d{2}_")


@dataclass(frozen=True)
class FeedStatus:
    """Where prices come from now, for the pages and the live-start check.

    ``mode``: ``stream`` (the exchange's websocket streams), ``rest`` (some pairs polled over
    REST because their stream is down, ``since`` when, ``reason`` why), ``replay`` (recorded
    candles), ``live`` (live prices, way unknown: seen from the database only) or ``off`` (no
    feed has run)."""

    mode: str
    exchange: str = ""
    since: datetime | None = None
    reason: str = ""
    symbols: tuple[str, ...] = ()  # rest: the pairs polled over REST
    poll_seconds: float = 10
    replay_of: str = ""  # replay: what is replayed, e.g. "June 2025"

    @property
    def replayed(self) -> bool:
        return self.mode == "replay"

    @property
    def live(self) -> bool:
        """Prices are the exchange's now (streamed or polled), not a replay."""
        return self.mode in ("stream", "rest", "live")

    def words(self) -> str:
        """The status in a short sentence, for every page."""
        name = self.exchange.capitalize() or "the exchange"
        if self.mode == "stream":
            return f"Live prices from {name} (websocket)"
        if self.mode == "rest":
            since = f" since {self.since:%H:%M} UTC" if self.since else ""
            pairs = f" for {', '.join(self.symbols)}" if self.symbols else ""
            return (
                f"Prices from {name}'s REST API every {self.poll_seconds:g} s{pairs}: "
                f"the websocket stream is down{since}"
            )
        if self.mode == "replay":
            of = f"recorded {self.replay_of} candles" if self.replay_of else "recorded candles"
            return f"Replay of {of}: not the live market"
        if self.mode == "live":
            return f"Live prices from {name}"
        return "No market feed is running: prices are not updated"


def record_feed_status(status: FeedStatus) -> None:
    """The running feed says where its prices come from (refreshed every few seconds)."""
    cache.set(FEED_STATUS_KEY, status, timeout=FEED_STATUS_SECONDS)


def replay_period() -> str:
    """What the bundled replay plays, in words ("June 2025"), from its files' names."""
    found = _SAMPLE_MONTH.search(SAMPLES[0][2].name) if SAMPLES else None
    if not found:
        return ""
    return datetime(int(found.group(1)), int(found.group(2)), 1).strftime("%B %Y")


def feed_status(*, look_in_db: bool = True) -> FeedStatus:
    """Where prices come from now: the running feed's own word (in the cache); without it the
    setting when it is explicit, else (``MARKET_FEED=auto``, one query unless ``look_in_db`` is
    off) what the saved prices say: a replay's, or live ones recent enough; else no feed runs."""
    status = cache.get(FEED_STATUS_KEY)
    if isinstance(status, FeedStatus):
        return status
    exchange = settings.MARKET_FEED_EXCHANGE
    if settings.MARKET_FEED == "replay":
        return FeedStatus("replay", exchange, replay_of=replay_period())
    if settings.MARKET_FEED == "live":
        return FeedStatus("live", exchange)
    if not look_in_db:
        return FeedStatus("off", exchange)
    try:
        rows = list(LatestPrice.objects.values_list("replayed", "at"))
    except DatabaseError:  # not migrated yet: a page still renders
        return FeedStatus("off", exchange)
    if any(not replayed and timezone.now() - at < FEED_QUIET for replayed, at in rows):
        return FeedStatus("live", exchange)
    if any(replayed for replayed, _ in rows):
        return FeedStatus("replay", exchange, replay_of=replay_period())
    return FeedStatus("off", exchange)


# --- the markets open pages show -----------------------------------------------------------------

WATCHED_KEY = "market:watched"
WATCH_SECONDS = 600


def watch_market(exchange: str, symbol: str) -> None:
    """A page shows this market: the feed streams it too (for WATCH_SECONDS after the last
    look; a stream once opened stays until the feed restarts)."""
    now = time.time()
    watched: dict[tuple[str, str], float] = cache.get(WATCHED_KEY) or {}
    if watched.get((exchange, symbol), 0) - now > WATCH_SECONDS / 2:
        return  # noted a moment ago: spare the write
    watched = {pair: until for pair, until in watched.items() if until > now}
    watched[(exchange, symbol)] = now + WATCH_SECONDS
    cache.set(WATCHED_KEY, watched, timeout=WATCH_SECONDS)


def watched_markets() -> list[tuple[str, str]]:
    """The markets pages have shown in the last WATCH_SECONDS."""
    now = time.time()
    watched: dict[tuple[str, str], float] = cache.get(WATCHED_KEY) or {}
    return sorted(pair for pair, until in watched.items() if until > now)


def last_candle(exchange: str, symbol: str) -> tuple[datetime, Decimal] | None:
    """(open time, close) of the market's newest stored 1-minute candle."""
    row = (
        Candle.objects.filter(exchange=exchange, symbol=symbol, timeframe="1m")
        .order_by("-open_time")
        .values_list("open_time", "close")
        .first()
    )
    return (row[0], row[1]) if row else None
