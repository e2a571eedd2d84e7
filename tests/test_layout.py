"""The layout's rules (README, "Where things live"), read from the source with ``ast``.

Every import counts, those inside functions included: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = ("aibo", "accounts", "bots", "market", "ai_advisor", "notifications")


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Our modules (migrations aside: they are generated and import only Django)."""
    found = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" not in path.parts:
                found[_module_of(path)] = path
    return found


def _resolve(name: str) -> str | None:
    """The most specific module of ours that an import of ``name`` loads, or None."""
    while name:
        if name in modules():
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def imports(module: str) -> frozenset[str]:
    """Every module of ours ``module`` imports, at the top or inside a function."""
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            # `from bots import services` imports the module bots.services; the package
            # itself counts only when a name is not a module (`from bots.config import KEYS`).
            names = [f"{base}.{alias.name}" for alias in node.names]
            if any(name not in modules() for name in names):
                names.append(base)
        else:
            continue
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                out.add(target)
    return frozenset(out)


def third_party(module: str) -> set[str]:
    path = modules()[module]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out - set(APPS)


def _in(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def arrows_from(*packages: str) -> dict[str, set[str]]:
    return {m: set(imports(m)) for m in modules() if _in(m, *packages)}


def test_the_walk_finds_lazy_imports_too() -> None:
    # bots.services starts the task chain from inside a function: the walk must see it.
    assert "bots.tasks" in imports("bots.services")
    assert "bots.grid.engine" in imports("bots.grid.backtest")


def test_the_grid_is_pure() -> None:
    for module, targets in arrows_from("bots.grid").items():
        assert targets <= {m for m in modules() if _in(m, "bots.grid")} | {"market.precision"}, (
            module,
            targets,
        )
        assert "django" not in third_party(module), module


def test_precision_and_exchange_are_the_bottom() -> None:
    assert imports("market.precision") == frozenset()
    assert "django" not in third_party("market.precision")
    assert imports("market.exchange") <= {"market.precision"}


def test_market_knows_nothing_of_bots_or_the_advisor() -> None:
    for module, targets in arrows_from("market").items():
        wrong = {t for t in targets if _in(t, "bots", "ai_advisor")}
        assert not wrong, (module, wrong)


def test_accounts_uses_only_the_exchange_layer_of_market() -> None:
    for module, targets in arrows_from("accounts").items():
        wrong = {t for t in targets if _in(t, "bots", "ai_advisor")}
        wrong |= {t for t in targets if _in(t, "market")} - {"market.exchange", "market.precision"}
        assert not wrong, (module, wrong)


def test_bots_know_nothing_of_the_advisor() -> None:
    for module, targets in arrows_from("bots").items():
        wrong = {t for t in targets if _in(t, "ai_advisor")}
        assert not wrong, (module, wrong)


def test_only_the_wiring_knows_the_notifications() -> None:
    """Notifications sit on top: the apps wake them by signals, never by importing them."""
    for module, targets in arrows_from("accounts", "bots", "market", "ai_advisor").items():
        wrong = {t for t in targets if _in(t, "notifications")}
        assert not wrong, (module, wrong)


def test_no_import_circles() -> None:
    """Tarjan's strongly connected components over every import, lazy ones included."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(imports(v)):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(modules()):
        if module not in index:
            visit(module)
    assert not circles, circles


HEAVY = ("ccxt", "anthropic", "matplotlib")


@pytest.mark.parametrize(
    "imported",
    [
        "bots.models, accounts.models, market.models, ai_advisor.models",
        "bots.services, market.services, ai_advisor.services, accounts.services",
        "notifications.models, notifications.services",
        "bots.management.commands.backtest",
    ],
)
def test_models_services_and_the_backtest_command_load_no_heavy_client(imported: str) -> None:
    """Commands that do not talk to an exchange or to Claude start fast."""
    names = [n.strip() for n in imported.split(",") if _resolve(n.strip()) == n.strip()]
    assert names, imported
    code = (
        "import importlib, json, sys, django; django.setup(); "
        f"[importlib.import_module(n) for n in {names!r}]; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "aibo.settings"}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [], done.stdout
