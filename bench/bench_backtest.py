"""Benchmark: a year of one-minute BTC/USDT candles through our backtest and backtesting.py.

    python bench/bench_backtest.py [--runs 7] [--peer-candles N] [--no-peer] [--profile]
    python bench/bench_backtest.py --end-to-end [--runs 3]

The year is stitched from the real multi-window file in the shared data folder (see
bench/README.md) and cached in bench/.cache/.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bots.grid.backtest import BacktestResult, Candles, load_csv, run_backtest  # noqa: E402
from bots.grid.engine import GridEngine  # noqa: E402
from bots.grid.params import GridConfig, SlotState  # noqa: E402

YEAR = 525_600
TICK = Decimal("0.01")
SOURCE = "binance_spot_BTCUSDT_1m_multiwindow_2021-2025_perf.csv.gz"
CACHE = REPO / "bench" / ".cache" / "btcusdt_1m_stitched_year.csv"
# The commit before the layout reshape: `--end-to-end` measures the command against it.
BASELINE = "062524c"


def shared_data() -> Path:
    for place in (
        REPO / "market" / "data",
        Path(os.environ.get("AIBO_SHARED_DATA", "/nonexistent")),
        REPO.parent / "shared" / "data",
    ):
        if (place / SOURCE).exists():
            return place / SOURCE
    sys.exit(f"{SOURCE} not found: set AIBO_SHARED_DATA to the shared data folder")


def stitch_year(source: Path, rows: int = YEAR) -> Candles:
    """Real windows made continuous, then repeated until a year of minutes.

    The file holds disjoint windows (and a few real exchange gaps). Each piece between gaps is
    rescaled multiplicatively so that its first open equals the previous piece's last close,
    rounded to the tick (rounding is monotone, so low <= open, close <= high still holds).
    """
    raw = load_csv(source, TICK)
    assert raw.decimals == 2
    cuts = np.flatnonzero(np.diff(raw.time_ms) > 60_000) + 1
    pieces = np.split(np.arange(len(raw)), cuts)
    ohlc = np.stack([raw.open, raw.high, raw.low, raw.close], axis=1).astype(np.float64)
    out, total, last_close, k = [], 0, None, 0
    while total < rows:
        idx = pieces[k % len(pieces)]
        block = ohlc[idx]
        if last_close is not None:
            block = np.rint(block * (last_close / block[0, 0]))
        block = block[: rows - total]
        out.append(block)
        total += len(block)
        last_close = block[-1, 3]
        k += 1
    prices = np.concatenate(out).astype(np.int64)
    times = raw.time_ms[0] + 60_000 * np.arange(rows, dtype=np.int64)
    return Candles(times, prices[:, 0], prices[:, 1], prices[:, 2], prices[:, 3], 2)


def write_csv(candles: Candles, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = [candles.open, candles.high, candles.low, candles.close]
    lines = ["timestamp_ms,open,high,low,close,volume"]
    for t, *prices in zip(candles.time_ms.tolist(), *(c.tolist() for c in cols), strict=True):
        lines.append(f"{t}," + ",".join(f"{p // 100}.{p % 100:02d}" for p in prices) + ",1")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def bench_config(candles: Candles) -> GridConfig:
    close = candles.close
    lower = candles.price(int(np.percentile(close, 5)))
    upper = candles.price(int(np.percentile(close, 95)))
    return GridConfig(
        lower=lower,
        upper=upper,
        levels=50,
        spacing="arithmetic",
        capital=Decimal(100_000),
        fee=Decimal("0.001"),
        tick=TICK,
        step=Decimal("0.00001"),
        min_notional=Decimal(5),
    )


# --- backtesting.py ----------------------------------------------------------------------------


def run_peer(config: GridConfig, candles: Candles) -> dict[str, Any]:
    """The same grid as a backtesting.py Strategy: one limit order per slot, same lot size."""
    import pandas as pd
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest

    p0 = candles.price(candles.open[0])
    engine = GridEngine.start(config, p0)  # only for the lines, slots and q of the same grid
    unit = float(config.step)  # backtesting.py trades whole units: one unit = one step of BTC
    q_units = int(engine.q / config.step)
    lines = [float(p) for p in engine.lines]
    start_states = [s.state for s in engine.slots]
    n_base = start_states.count(SlotState.BASE)
    scale = 10.0**-candles.decimals
    df = pd.DataFrame(
        {
            "Open": candles.open * scale,
            "High": candles.high * scale,
            "Low": candles.low * scale,
            "Close": candles.close * scale,
            "Volume": np.ones(len(candles)),
        },
        index=pd.to_datetime(candles.time_ms, unit="ms"),
    )
    counters = {"fills": 0}

    class Grid(Strategy):
        def init(self) -> None:
            self.states = list(start_states)
            self.live: dict[int, Any] = {}  # id(order) -> (slot, order)
            self.started = False

        def place(self, slot: int) -> None:
            # Prices are scaled by the fractional unit inside FractionalBacktest.
            if self.states[slot] == SlotState.QUOTE:
                order = self.buy(size=q_units, limit=lines[slot] * unit)
            else:
                order = self.sell(size=q_units, limit=lines[slot + 1] * unit)
            self.live[id(order)] = (slot, order)

        def next(self) -> None:
            if not self.started:
                self.started = True
                if n_base:
                    self.buy(size=n_base * q_units)  # the start buy: at the next open
                for slot in range(len(self.states)):
                    self.place(slot)
                return
            if len(self.orders) == len(self.live):
                return  # nothing filled on this bar (the common case)
            current = {id(o) for o in self.orders}
            for key in [k for k in self.live if k not in current]:
                slot, _order = self.live.pop(key)
                counters["fills"] += 1
                self.states[slot] = (
                    SlotState.BASE if self.states[slot] == SlotState.QUOTE else SlotState.QUOTE
                )
                self.place(slot)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bt = FractionalBacktest(
            df,
            Grid,
            cash=float(config.capital),
            commission=float(config.fee),
            fractional_unit=unit,
            trade_on_close=False,
            hedging=False,
            exclusive_orders=False,
            finalize_trades=False,
        )
        t0 = time.perf_counter()
        stats = bt.run()
        seconds = time.perf_counter() - t0
    trades = stats["_trades"]
    # A filled order and a cancelled one both leave self.orders; the broker warns on cancels.
    canceled = sum("canceled" in str(w.message) for w in caught)
    return {
        "canceled": canceled,
        "seconds": seconds,
        "candles": len(candles),
        "fills": counters["fills"],
        "closed_trades": int(len(trades)),
        "closed_trades_pl": float(trades["PnL"].sum()) if len(trades) else 0.0,
        "final_equity": float(stats["Equity Final [$]"]),
        "total_profit": float(stats["Equity Final [$]"]) - float(config.capital),
        "max_drawdown": -float(stats["Max. Drawdown [%]"]) / 100,
    }


# --- the command, end to end ------------------------------------------------------------------


def baseline_tree() -> Path:
    """The baseline commit's files (git archive), beside the cache; built once."""
    tree = REPO / "bench" / ".cache" / f"tree-{BASELINE}"
    if not (tree / "manage.py").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", BASELINE], cwd=REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    # The same front-end files, so both trees' system checks see the same STATICFILES_DIRS.
    if not (tree / "node_modules").exists() and (REPO / "node_modules").exists():
        (tree / "node_modules").symlink_to(REPO / "node_modules")
    return tree


def run_command(tree: Path, args: list[str]) -> tuple[float, dict[str, Any]]:
    """`manage.py backtest` as a user runs it: a new process on the embedded default."""
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "AIBO_DATA_DIR": data}
        for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
            env.pop(name, None)
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=tree, env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"{tree}: manage.py backtest failed:\n{done.stderr}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def end_to_end(runs: int) -> None:
    candles = load_csv(ensure_year(), TICK)
    config = bench_config(candles)
    args = [
        "backtest", "--csv", str(CACHE), "--lower", str(config.lower),
        "--upper", str(config.upper), "--levels", str(config.levels),
        "--capital", str(config.capital), "--json",
    ]  # fmt: skip
    trees = {"baseline": baseline_tree(), "current": REPO}
    times: dict[str, list[float]] = {name: [] for name in trees}
    results = []
    for _ in range(max(1, runs)):  # interleaved, so a slow moment hits both alike
        for name, tree in trees.items():
            seconds, result = run_command(tree, args)
            times[name].append(seconds)
            results.append(result)
    if any(r != results[0] for r in results):
        sys.exit("the baseline and the current command disagree on the result")
    base, now = (statistics.median(times[name]) for name in trees)
    print(
        f"backtest end-to-end: baseline {BASELINE} {base:.2f} s, current {now:.2f} s "
        f"({base / now:.1f}x faster), {len(candles)} candles, same result"
    )


# --- main --------------------------------------------------------------------------------------


def ensure_year() -> Path:
    if not CACHE.exists():
        print(f"stitching a year of candles into {CACHE} ...")
        write_csv(stitch_year(shared_data()), CACHE)
    return CACHE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=None, help="7, or 3 with --end-to-end")
    parser.add_argument("--peer-candles", type=int, default=None, help="limit backtesting.py")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help=f"time `manage.py backtest --csv --json` here and at {BASELINE} (new processes)",
    )
    args = parser.parse_args()
    if args.end_to_end:
        end_to_end(args.runs or 3)
        return

    ensure_year()
    args.runs = args.runs or 7
    t0 = time.perf_counter()
    candles = load_csv(CACHE, TICK)
    load_s = time.perf_counter() - t0
    config = bench_config(candles)
    print(f"candles: {len(candles):,} from {CACHE} (load {load_s:.2f} s, not timed below)")
    print(
        f"grid: {config.levels} levels {config.spacing} {config.lower}..{config.upper}, "
        f"capital {config.capital:,} USDT, fee {config.fee}"
    )

    times = []
    result: BacktestResult | None = None
    for _ in range(max(1, args.runs)):
        t0 = time.perf_counter()
        result = run_backtest(config, candles)
        times.append(time.perf_counter() - t0)
    assert result is not None
    ours = statistics.median(times)
    print(
        f"\nours: median {ours:.4f} s over {len(times)} runs "
        f"(min {min(times):.4f}, max {max(times):.4f}), "
        f"{len(candles) / ours:,.0f} candles/s"
    )
    print(
        f"  walked candles {result.walked_candles:,}, fills {result.fills:,}, "
        f"round trips {result.total_trades:,}, win rate {float(result.win_rate):.3f}"
    )
    print(
        f"  grid profit {result.grid_profit:.2f}, total profit {result.total_profit:.2f}, "
        f"final equity {result.final_equity:.2f}, max drawdown {float(result.max_drawdown):.4f}, "
        f"time in range {float(result.time_in_range):.3f}"
    )

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run_backtest(config, candles)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(20)

    if args.no_peer:
        return
    peer_candles = candles if args.peer_candles is None else candles.slice(0, args.peer_candles)
    print(f"\nbacktesting.py on {len(peer_candles):,} candles (one run) ...")
    peer = run_peer(config, peer_candles)
    per_candle = peer["seconds"] / len(peer_candles)
    peer_year = per_candle * len(candles)
    extrapolated = len(peer_candles) < len(candles)
    label = "extrapolated from " + f"{len(peer_candles):,} candles" if extrapolated else "measured"
    print(f"  backtesting.py: {peer['seconds']:.2f} s for {len(peer_candles):,} candles")
    if extrapolated:
        mine = run_backtest(config, peer_candles)
        print("  (side-by-side numbers below are for that prefix)")
    else:
        mine = result
    print(f"  year: {peer_year:.1f} s ({label}); speed ratio {peer_year / ours:,.0f}x")
    print(f"\n{'':24}{'ours':>16}{'backtesting.py':>18}")
    rows = [
        ("fills", f"{mine.fills:,}", f"{peer['fills']:,}"),
        ("round trips / trades", f"{mine.total_trades:,}", f"{peer['closed_trades']:,}"),
        ("grid / closed-trade P&L", f"{mine.grid_profit:.2f}", f"{peer['closed_trades_pl']:.2f}"),
        ("total profit", f"{mine.total_profit:.2f}", f"{peer['total_profit']:.2f}"),
        ("final equity", f"{mine.final_equity:.2f}", f"{peer['final_equity']:.2f}"),
        ("max drawdown", f"{float(mine.max_drawdown):.4f}", f"{peer['max_drawdown']:.4f}"),
    ]
    for name, a, b in rows:
        print(f"{name:24}{a:>16}{b:>18}")
    if peer["canceled"]:
        print(f"  (backtesting.py cancelled {peer['canceled']} orders for lack of cash)")
    print(WHY_THEY_DIFFER)


WHY_THEY_DIFFER = """
Why they differ (from backtesting.py 0.6 source, Backtest.run and _Broker._process_orders):
- Orders placed in Strategy.next() on bar i are first matched on bar i+1, so an order the grid
  places on a fill cannot fill in the same candle; we walk O->L->H->C (GRID_SPEC.md) and let
  it. The start market buy also fills at bar 2's open, not at P0 (next() starts at bar 1).
- A limit order fills at min(open, limit) for buys and max(open, limit) for sells: a candle
  gapping through a line fills at the better open price; ours always fill at the line.
- Orders on a bar are matched in placement order, not price order, with no intrabar path.
- Sells close long trades FIFO (hedging=False), so its "trades" pair the oldest buys with each
  sell, not a slot's buy with its own sell; its trade count and trade P&L are not our round
  trips. Its equity is in floats; ours is exact Decimal.
- Units must be whole: FractionalBacktest trades whole 0.00001 BTC units by scaling prices,
  and a buy lacking cash is cancelled (our accounting never cancels).
"""


if __name__ == "__main__":
    main()
