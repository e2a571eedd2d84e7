"""Backtests: the grid engine walked over historical candles, fast.

The engine itself does all the matching (no second, vectorised copy of the grid rules that
could drift from GRID_SPEC.md). What makes a year of one-minute candles take a fraction of a
second is skipping: a candle whose low stays above the highest resting buy and whose high
stays below the lowest resting sell fills nothing, so numpy finds the next candle that
crosses a resting order (or a stop), and only that one is walked, in ``Decimal``.

Equity is marked at every close; between walked candles the balances are constant, so the
curve is a cheap float vector. Statistics stay exact: the float curve only *locates* the
drawdown's trough and peak, whose values are then recomputed in ``Decimal``.
``run_backtest(..., fast=False)`` walks every candle naively; the tests hold both equal.

Over 400 lines because the candles, the skipping walk, the result and its statistics are one
pipeline whose exactness argument (above) spans all of them.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from os import PathLike
from typing import IO, Any

import numpy as np

from bots.grid.engine import SHIFT_DOWN, SHIFT_UP, Fill, GridEngine, RoundTrip, Side
from bots.grid.params import GridConfig, StopReason
from market.precision import plain

_MAX_DECIMALS = 8
# Float drawdowns and equities are within ~1e-15 of the exact ones; anything this close to the
# float maximum is a candidate and gets recomputed exactly.
_REL_TOL = 1e-12


# --- candles -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Candles:
    """Parallel arrays of candles; prices are int64 counts of ``unit``.

    ``unit`` is the tick whenever every price is a multiple of it (Binance data always is);
    otherwise a finer power of ten, so the integers are exact either way. Decimals are made
    only for the candles the engine walks (``ohlc``, ``price``).
    """

    time_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    decimals: int  # unit = 10**-decimals

    def __len__(self) -> int:
        return len(self.time_ms)

    @property
    def unit(self) -> Decimal:
        return Decimal(1).scaleb(-self.decimals)

    def price(self, units: int | np.integer) -> Decimal:
        return Decimal(int(units)).scaleb(-self.decimals)

    def ohlc(self, i: int) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        d = -self.decimals
        return (
            Decimal(int(self.open[i])).scaleb(d),
            Decimal(int(self.high[i])).scaleb(d),
            Decimal(int(self.low[i])).scaleb(d),
            Decimal(int(self.close[i])).scaleb(d),
        )

    def floor_units(self, price: Decimal) -> int:
        """The largest integer n with n * unit <= price."""
        return int(price.scaleb(self.decimals).to_integral_value(rounding=ROUND_FLOOR))

    def ceil_units(self, price: Decimal) -> int:
        """The smallest integer n with n * unit >= price."""
        return int(price.scaleb(self.decimals).to_integral_value(rounding=ROUND_CEILING))

    def slice(self, start: int, stop: int) -> Candles:
        return Candles(
            self.time_ms[start:stop],
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            self.decimals,
        )

    @classmethod
    def from_floats(cls, table: np.ndarray, tick: Decimal) -> Candles:
        """From an (n, 5) float array of time, open, high, low, close (as parsed from text).

        Picks the fewest decimals (at least the tick's) that represent every price exactly:
        ``N / 10**d`` is correctly rounded, so it reproduces the parsed float exactly when
        the text had at most d decimals (and fewer than ~15 significant digits).
        """
        table = np.asarray(table, dtype=np.float64).reshape(-1, 5)
        prices = table[:, 1:5]
        if len(prices) and not (np.isfinite(prices).all() and (prices > 0).all()):
            raise ValueError("candle prices must be finite and above 0")
        d = max(0, -tick.normalize().as_tuple().exponent)  # type: ignore[operator]
        while True:
            scale = 10.0**d
            units = np.rint(prices * scale)
            if np.array_equal(units / scale, prices) and (units < 2**53).all():
                break
            d += 1
            if d > _MAX_DECIMALS:
                raise ValueError(f"prices with more than {_MAX_DECIMALS} decimals")
        units = units.astype(np.int64)
        candles = cls(
            table[:, 0].astype(np.int64),
            np.ascontiguousarray(units[:, 0]),
            np.ascontiguousarray(units[:, 1]),
            np.ascontiguousarray(units[:, 2]),
            np.ascontiguousarray(units[:, 3]),
            d,
        )
        candles.check()
        return candles

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[Any]], tick: Decimal) -> Candles:
        """From ``(timestamp_ms, open, high, low, close[, volume])`` rows (str, int, Decimal)."""
        parsed = [[float(Decimal(str(x))) for x in row[:5]] for row in rows]
        return cls.from_floats(np.array(parsed, dtype=np.float64), tick)

    def check(self) -> None:
        if not (
            (self.low <= np.minimum(self.open, self.close)).all()
            and (self.high >= np.maximum(self.open, self.close)).all()
        ):
            bad = np.flatnonzero(
                (self.low > np.minimum(self.open, self.close))
                | (self.high < np.maximum(self.open, self.close))
            )[0]
            raise ValueError(f"candle {bad} (time {self.time_ms[bad]}) has low/high outside o/c")


def load_csv(source: str | PathLike[str] | IO[Any], tick: Decimal) -> Candles:
    """Read ``timestamp_ms,open,high,low,close[,volume]`` CSV or CSV.gz; header optional."""
    if isinstance(source, str | PathLike):
        with open(source, "rb") as f:
            raw: bytes | str = f.read()
    else:
        raw = source.read()
    if isinstance(raw, bytes):
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        raw = raw.decode()
    first = raw.lstrip()[:1]
    skip = 0 if first and (first.isdigit() or first == "-") else 1
    if not raw.strip() or (skip and "\n" not in raw.strip()):
        raise ValueError("the CSV holds no candles")
    table = np.loadtxt(
        io.StringIO(raw), delimiter=",", skiprows=skip, usecols=(0, 1, 2, 3, 4), ndmin=2
    )
    return Candles.from_floats(table, tick)


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FillPoint:
    """A grid fill for plotting: when, which way, at what price."""

    time_ms: int
    side: Side
    price: Decimal


@dataclass(frozen=True)
class GridMove:
    """A trailing shift, for the chart: when, which way, and the grid's outer lines after it."""

    time_ms: int
    direction: str  # "up" or "down"
    lowest: Decimal
    highest: Decimal


@dataclass
class BacktestResult:
    levels: list[Decimal]
    order_amount: Decimal
    start_price: Decimal
    start_buy_amount: Decimal
    fills: int
    total_trades: int
    win_rate: Decimal
    grid_profit: Decimal
    total_profit: Decimal
    final_equity: Decimal
    peak_equity: Decimal
    max_drawdown: Decimal
    stopped: StopReason | None
    stop_time_ms: int | None
    final_base: Decimal
    final_quote: Decimal
    fees_paid: Decimal
    start_time_ms: int
    end_time_ms: int
    candles: int
    walked_candles: int
    time_in_range: Decimal  # share of closes within the grid's range (as trailing moved it)
    round_trips: list[RoundTrip] = field(repr=False)
    fill_points: list[FillPoint] = field(repr=False)
    equity_curve: np.ndarray | None = field(default=None, repr=False)  # float, per close
    # GRID_SPEC.md, Extensions: trailing shifts, and the open time of the candle that reached
    # the trigger price (None without a trigger, or when the price never reached it).
    shifts_up: int = 0
    shifts_down: int = 0
    triggered_at: int | None = None
    start_levels: list[Decimal] = field(default_factory=list)  # before any shift
    grid_moves: list[GridMove] = field(default_factory=list, repr=False)

    STATS = (
        "order_amount",
        "start_price",
        "start_buy_amount",
        "fills",
        "total_trades",
        "win_rate",
        "grid_profit",
        "total_profit",
        "final_equity",
        "peak_equity",
        "max_drawdown",
        "stopped",
        "stop_time_ms",
        "final_base",
        "final_quote",
        "fees_paid",
        "start_time_ms",
        "end_time_ms",
        "candles",
        "time_in_range",
        "shifts_up",
        "shifts_down",
        "triggered_at",
    )

    def stats(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.STATS}

    def to_json_dict(self, *, curve_points: int = 500) -> dict[str, Any]:
        """JSON-safe (Decimals as plain strings); the equity curve downsampled for charts."""
        out: dict[str, Any] = {
            k: (plain(v) if isinstance(v, Decimal) else v) for k, v in self.stats().items()
        }
        out["walked_candles"] = self.walked_candles
        out["levels"] = [plain(p) for p in self.levels]
        out["round_trips"] = [
            {
                "slot": t.slot,
                "buy_price": plain(t.buy_price),
                "sell_price": plain(t.sell_price),
                "amount": plain(t.amount),
                "profit": plain(t.profit),
                "fees": plain(t.fees),
            }
            for t in self.round_trips
        ]
        out["fill_points"] = [[p.time_ms, p.side.value, plain(p.price)] for p in self.fill_points]
        if self.start_levels != self.levels:
            out["start_levels"] = [plain(p) for p in self.start_levels]
        out["grid_moves"] = [
            [m.time_ms, m.direction, plain(m.lowest), plain(m.highest)] for m in self.grid_moves
        ]
        if self.equity_curve is not None and len(self.equity_curve):
            idx = np.unique(np.linspace(0, len(self.equity_curve) - 1, curve_points).astype(int))
            out["equity_curve"] = [float(self.equity_curve[i]) for i in idx]
            out["equity_curve_index"] = idx.tolist()
        return out


# --- the run -----------------------------------------------------------------------------------


def run_backtest(
    config: GridConfig,
    candles: Candles,
    *,
    record_equity: bool = True,
    fast: bool = True,
) -> BacktestResult:
    """Start the grid at the first open and walk the candles (GRID_SPEC.md).

    ``fast=False`` walks and marks every candle in Decimal: slow, obviously right, and the
    reference the fast path is tested against. With a trigger price the grid waits (equity
    the capital) until the candle whose path reaches it.
    """
    n = len(candles)
    if n == 0:
        raise ValueError("no candles to backtest")
    engine = GridEngine.start(config, candles.price(candles.open[0]))
    start_levels = list(engine.lines)
    start_quote, start_base = engine.quote, engine.base
    if fast:
        points, walked, changes = _walk_fast(engine, candles)
        drawdown, peak, curve = _drawdown_from_changes(
            engine.config.capital, candles, start_quote, start_base, changes
        )
    else:
        points, walked, drawdown, peak, curve = _walk_naive(engine, candles)
    in_range = _closes_in_range(candles, config, points.moves)
    final_equity = engine.quote  # after a stop, base is 0
    if not engine.is_stopped:
        final_equity = engine.equity(candles.price(candles.close[-1]))
    triggered_at = points.triggered_at
    if config.trigger_price is not None and not engine.waiting and triggered_at is None:
        triggered_at = int(candles.time_ms[0])  # the first open was the trigger price
    return BacktestResult(
        levels=list(engine.lines),
        order_amount=engine.q,
        start_price=engine.start_price,
        start_buy_amount=engine.start_buy.amount if engine.start_buy else Decimal(0),
        fills=engine.fills,
        total_trades=engine.total_trades,
        win_rate=engine.win_rate,
        grid_profit=engine.grid_profit,
        total_profit=final_equity - config.capital,
        final_equity=final_equity,
        peak_equity=peak,
        max_drawdown=drawdown,
        stopped=engine.stopped,
        stop_time_ms=points.stop_time,
        final_base=engine.base,
        final_quote=engine.quote,
        fees_paid=engine.fees_paid,
        start_time_ms=int(candles.time_ms[0]),
        end_time_ms=int(candles.time_ms[-1]),
        candles=n,
        walked_candles=walked,
        time_in_range=Decimal(in_range) / Decimal(n),
        round_trips=engine.round_trips,
        fill_points=points.points,
        equity_curve=curve if record_equity else None,
        shifts_up=engine.shifts_up,
        shifts_down=engine.shifts_down,
        triggered_at=triggered_at,
        start_levels=start_levels,
        grid_moves=points.moves,
    )


def _closes_in_range(candles: Candles, config: GridConfig, moves: list[GridMove]) -> int:
    """How many closes lie within the grid's range: [lower, upper] until the first trailing
    shift, then the outer lines after each shift, from the close of the candle that made it."""
    close = candles.close
    lo = np.full(len(candles), candles.ceil_units(config.lower), dtype=np.int64)
    hi = np.full(len(candles), candles.floor_units(config.upper), dtype=np.int64)
    for m in moves:  # in time order: each from its candle on
        j = int(np.searchsorted(candles.time_ms, m.time_ms))
        lo[j:], hi[j:] = candles.ceil_units(m.lowest), candles.floor_units(m.highest)
    return int(np.count_nonzero((close >= lo) & (close <= hi)))


class _Points:
    """What a walk notes beside the engine: fills, shifts, the trigger and the stop, timed."""

    __slots__ = ("points", "stop_time", "triggered_at", "moves")

    def __init__(self) -> None:
        self.points: list[FillPoint] = []
        self.stop_time: int | None = None
        self.triggered_at: int | None = None
        self.moves: list[GridMove] = []

    def note(self, engine: GridEngine, t: int, fills: list[Fill], was_waiting: bool) -> None:
        """After walking the candle that opened at ``t``."""
        if fills:
            self.points.extend(FillPoint(t, f.side, f.price) for f in fills)
        if was_waiting and not engine.waiting:
            self.triggered_at = t
        for e in engine.drain_events():
            if e.kind in (SHIFT_UP, SHIFT_DOWN) and e.lowest is not None:
                direction = "up" if e.kind == SHIFT_UP else "down"
                self.moves.append(GridMove(t, direction, e.lowest, e.highest or e.lowest))
        if engine.is_stopped and self.stop_time is None:
            self.stop_time = t


def _walk_one(engine: GridEngine, candles: Candles, j: int, points: _Points) -> None:
    o, h, lo, c = candles.ohlc(j)
    prev = candles.price(candles.close[j - 1]) if j else None
    was_waiting = engine.waiting
    fills = engine.walk_candle(o, h, lo, c, prev)
    points.note(engine, int(candles.time_ms[j]), fills, was_waiting)


class GridRun:
    """A grid walked candle by candle with its equity marked at every close: resumable.

    The naive backtest is this loop over every candle, and a paper bot's cycle is this loop
    over the candles that closed since its last cycle, resumed from the saved peak, drawdown
    and previous close; so a paper run ends exactly where the backtest of its candles does.
    """

    __slots__ = ("engine", "peak", "max_drawdown", "prev_close", "equity")

    def __init__(
        self,
        engine: GridEngine,
        *,
        peak: Decimal | None = None,
        max_drawdown: Decimal = Decimal(0),
        prev_close: Decimal | None = None,
    ) -> None:
        self.engine = engine
        self.peak = engine.config.capital if peak is None else peak
        self.max_drawdown = max_drawdown
        self.prev_close = prev_close
        self.equity = engine.equity(prev_close if prev_close is not None else engine.start_price)

    def step(self, open: Decimal, high: Decimal, low: Decimal, close: Decimal) -> list[Fill]:
        """Walk one candle, then mark equity at its close (at the stop price once stopped)."""
        engine = self.engine
        fills = engine.walk_candle(open, high, low, close, self.prev_close)
        self.prev_close = close
        mark = engine.stop_mark if engine.is_stopped else close
        self.equity = equity = engine.equity(mark)  # type: ignore[arg-type]
        self.peak, self.max_drawdown = mark_drawdown(self.peak, self.max_drawdown, equity)
        return fills


def mark_drawdown(
    peak: Decimal | None, max_drawdown: Decimal, equity: Decimal
) -> tuple[Decimal, Decimal]:
    """(peak, max drawdown) after marking ``equity``: the drawdown is the fall from the peak as
    a fraction of it. One rule for backtests, paper and live bots."""
    peak = equity if peak is None else max(peak, equity)
    if not peak:
        return peak, max_drawdown
    return peak, max(max_drawdown, (peak - equity) / peak)


def _walk_naive(
    engine: GridEngine, candles: Candles
) -> tuple[_Points, int, Decimal, Decimal, np.ndarray]:
    points = _Points()
    run = GridRun(engine)
    curve = np.empty(len(candles))
    for j in range(len(candles)):
        was_waiting = engine.waiting
        fills = run.step(*candles.ohlc(j))
        points.note(engine, int(candles.time_ms[j]), fills, was_waiting)
        curve[j] = float(run.equity)
    return points, len(candles), run.max_drawdown, run.peak, curve


def _next_crossing(low: np.ndarray, high: np.ndarray, i: int, buy: int, sell: int) -> int:
    """The first j >= i with low[j] <= buy or high[j] >= sell, or len(low) if none.

    Galloping: look at a short window first (fills cluster), then at windows four times
    longer each time, so a long quiet stretch costs a handful of numpy calls.
    """
    n = len(low)
    size = 16
    while i < n:
        end = i + size
        hit = (low[i:end] <= buy) | (high[i:end] >= sell)
        k = int(hit.argmax())
        if hit[k]:
            return i + k
        i = end
        if size < 262144:
            size <<= 2
    return n


def _walk_fast(engine: GridEngine, candles: Candles) -> tuple[_Points, int, list[tuple]]:
    """Walk only the candles that can fill something; return the balance changes.

    Why skipping is exact: after any walk that ended at price x, every resting buy is below
    x and every resting sell above it (the price has just passed them), and a candle's path
    ``prev_close -> O -> L/H -> H/L -> C`` never leaves [min(prev_close, L), max(prev_close, H)].
    prev_close is the previous walk's end or a skipped candle's close, itself inside that
    candle's range; O lies within [L, H]. So a candle with L above the highest buy and the
    stop, and H below the lowest sell and the take-profit, fills nothing and stops nothing.
    The engine's ``wake_low``/``wake_high`` are those bounds, the trigger price and the next
    trailing line included: a shift needs a segment to end beyond that line, and after a walk
    the price is short of it (the shift loop ran until it was).
    """
    points = _Points()
    low, high = candles.low, candles.high
    n = len(candles)
    no_buy, no_sell = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    floors: dict[Decimal, int] = {}
    ceils: dict[Decimal, int] = {}
    changes: list[tuple] = []  # (candle index, quote, base) after walking that candle
    walked = 0
    i = 0
    while i < n and not engine.is_stopped:
        wake_low, wake_high = engine.wake_low, engine.wake_high
        buy, sell = no_buy, no_sell
        if wake_low is not None:
            if wake_low not in floors:
                floors[wake_low] = candles.floor_units(wake_low)
            buy = floors[wake_low]
        if wake_high is not None:
            if wake_high not in ceils:
                ceils[wake_high] = candles.ceil_units(wake_high)
            sell = ceils[wake_high]
        j = _next_crossing(low, high, i, buy, sell)
        if j >= n:
            break
        _walk_one(engine, candles, j, points)
        walked += 1
        changes.append((j, engine.quote, engine.base))
        i = j + 1
    return points, walked, changes


def _drawdown_from_changes(
    capital: Decimal,
    candles: Candles,
    start_quote: Decimal,
    start_base: Decimal,
    changes: list[tuple],
) -> tuple[Decimal, Decimal, np.ndarray]:
    """Max drawdown and peak equity, exact, from balances that change only at walked candles.

    Every close is marked: equity_j = quote + base * close_j with the balances after candle j
    (after a stop base is 0, so the stop price mark and the close mark agree). A float curve
    finds the few candidate candles; their values are recomputed exactly in Decimal.
    """
    n = len(candles)
    starts = np.array([0] + [j for j, _, _ in changes], dtype=np.int64)
    quotes = [start_quote] + [q for _, q, _ in changes]
    bases = [start_base] + [b for _, _, b in changes]
    counts = np.diff(np.append(starts, n))
    segment = np.repeat(np.arange(len(starts)), counts)  # balance segment of each candle
    close_f = candles.close * (10.0**-candles.decimals)
    equity = np.array([float(q) for q in quotes])[segment] + (
        np.array([float(b) for b in bases])[segment] * close_f
    )
    cap = float(capital)
    peak_f = np.maximum.accumulate(np.maximum(equity, cap))
    dd_f = (peak_f - equity) / peak_f

    # Candidates for the worst drawdown: within float error of the float maximum.
    worst = float(dd_f.max())
    candidate = np.flatnonzero(dd_f >= worst - _REL_TOL)
    # Candidates for the peak each of them is measured from: closes near the running peak at
    # the next candidate (later peaks are higher), and near the final peak for peak_equity.
    nxt = np.minimum(np.searchsorted(candidate, np.arange(n)), len(candidate) - 1)
    ref = np.where(np.arange(n) <= candidate[-1], peak_f[candidate[nxt]], peak_f[-1])
    near = (equity >= ref * (1 - _REL_TOL) - 1e-9) | (equity >= peak_f[-1] * (1 - _REL_TOL) - 1e-9)
    near[candidate] = True
    chosen = np.flatnonzero(near)
    # Equal balances and close mean equal equity: of a run of them keep the last, which sees
    # the highest peak (flat stretches, e.g. all in quote, would otherwise be long runs).
    seg = segment[chosen]
    has_base = np.array([b != 0 for b in bases])[seg]
    key_close = np.where(has_base, candles.close[chosen], 0)
    last = np.ones(len(chosen), dtype=bool)
    last[:-1] = (seg[1:] != seg[:-1]) | (key_close[1:] != key_close[:-1])
    # One exact pass in time order: every value seen is a real equity at or before j, so the
    # running peak is exact wherever it matters and each drawdown is real or an underestimate.
    peak, drawdown = capital, Decimal(0)
    with localcontext(prec=60):  # as wide as the engine's: these sums are exact
        exact = [
            quotes[s] + bases[s] * candles.price(c)
            for s, c in zip(seg[last].tolist(), candles.close[chosen[last]].tolist(), strict=True)
        ]
    for e in exact:
        if e > peak:
            peak = e
        dd = (peak - e) / peak
        if dd > drawdown:
            drawdown = dd
    return drawdown, peak, equity
