"""The fault-injection run (bench/live_chaos.py, issue 11) at a bounded size, in the suite: real
bots, the real ccxt client and gateway, the fake Binance, faults at random points. It must end
with no duplicate order, no orphan order and no ledger mismatch; bigger runs go by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.django_db

BENCH = Path(__file__).resolve().parents[2] / "bench" / "live_chaos.py"


def live_chaos() -> Any:
    spec = importlib.util.spec_from_file_location("live_chaos", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [7, 12])
def test_live_bots_under_random_faults_never_double_orphan_or_misbook(settings, seed):
    settings.MARKET_FEED = "live"
    chaos = live_chaos()

    result = chaos.run(seed=seed, faults=200, cycles=60, bots=3, quiet=False)

    print(result.line())
    assert result.cycles >= 60 and sum(result.faults.values()) >= 200
    assert {"worker killed", "partial fill", "accepted then lost"} <= set(result.faults)
    assert not result.duplicates, result.duplicates
    assert not result.orphans, result.orphans
    assert not result.mismatches, result.mismatches


def test_the_run_prints_exactly_one_line(capsys):
    chaos = live_chaos()
    outcome = chaos.Result(cycles=3)
    outcome.faults["partial fill"] = 2

    assert outcome.line() == (
        "live-chaos: 2 faults, 3 cycles, 0 duplicate orders, 0 orphan orders, 0 ledger mismatches"
    )
    assert outcome.clean
