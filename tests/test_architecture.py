"""The package's shape, checked on its source with :mod:`ast` (no Redis).

* no import circle between elk_celery's modules (imports at module level,
  inside functions and under ``TYPE_CHECKING`` all count);
* ``store/`` is the bottom layer: it imports nothing of the package but the
  plain modules it needs (errors, keys, models, settings);
* only ``store/`` touches Redis: code elsewhere never reads a store's
  ``redis`` client or ``keys``, never opens a pipeline and never calls a
  private member (``_run``, ``_create``, ...) of another object.

See docs/architecture.md for the layers.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "elk_celery"
ROOT = "elk_celery"

#: What store/ may import from the rest of the package.
STORE_MAY_IMPORT = {"elk_celery.errors", "elk_celery.keys", "elk_celery.models",
                    "elk_celery.settings", "elk_celery.redis_urls"}

#: Attributes that are Redis itself: a client, its key names, a pipeline.
RAW = {"redis", "keys", "pipeline"}

#: Private names some other object defines on purpose for outside use
#: (Celery's, the standard library's), allowed anywhere: (owner expression, attr).
FOREIGN_PRIVATE = {
    ("celery_state", "_get_active_apps"),  # Celery's list of apps (app.py, like shared_task)
    ("app", "_elk"),                      # the Elk an app carries (set by Elk(app))
    ("sys", "_getframe"),
    ("os", "_exit"),
    ("connection", "_reraise_as_library_errors"),  # kombu's, as Task.apply_async uses it
    ("task", "_get_exec_options"),                 # Celery's (leader/sender.py)
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=None)
def modules() -> dict[str, tuple[Path, ast.Module]]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        out[module_name(path)] = (path, ast.parse(path.read_text(), str(path)))
    return out


def _is_package(name: str) -> bool:
    return modules()[name][0].name == "__init__.py"


def _resolve(current: str, level: int, target: str | None) -> str:
    base = current.split(".") if _is_package(current) else current.split(".")[:-1]
    if level > 1:
        base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(name: str) -> set[str]:
    """Package modules ``name`` imports (each ``from x import y`` that names a
    submodule counts as importing it), and the sub-packages' ``__init__``
    those imports run (not the root's: it is the facade; nor those of the
    importer's own packages, which are running already)."""
    found: set[str] = set()
    known = modules()
    for node in ast.walk(known[name][1]):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, node.level, node.module) if node.level else (node.module or "")
            for a in node.names:
                sub = f"{base}.{a.name}"
                targets.append(sub if sub in known else base)
        for t in targets:
            if not (t == ROOT or t.startswith(ROOT + ".")):
                continue
            while t not in known and "." in t:
                t = t.rsplit(".", 1)[0]
            parts = t.split(".")
            for i in range(2, len(parts) + 1):  # the sub-packages' __init__ run too,
                pkg = ".".join(parts[:i])
                if not name.startswith(pkg + "."):  # except the importer's own (already running)
                    found.add(pkg)
            if t == ROOT:
                found.add(ROOT)
    found.discard(name)
    return found


def import_cycles() -> list[list[str]]:
    graph = {m: imports_of(m) for m in modules()}
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle() -> None:
    assert import_cycles() == []


def test_the_checker_sees_a_circle() -> None:
    # app.py imports the leader tick, which must not import app.py back
    assert "elk_celery.leader.tick" in imports_of("elk_celery.app")
    assert "elk_celery.app" not in imports_of("elk_celery.leader.tick")
    assert "elk_celery.strategies" in imports_of("elk_celery.job")


def test_store_is_the_bottom_layer() -> None:
    wrong = {}
    for name in modules():
        if name.startswith(f"{ROOT}.store"):
            bad = {m for m in imports_of(name)
                   if not m.startswith(f"{ROOT}.store") and m not in STORE_MAY_IMPORT}
            if bad:
                wrong[name] = sorted(bad)
    assert wrong == {}


def test_one_list_of_strategy_names() -> None:
    import typing

    from elk_celery.job_settings import JobSettings
    from elk_celery.models import StrategyType
    from elk_celery.settings import _STRATEGIES
    from elk_celery.store.scripts import LAYOUTS
    from elk_celery.strategies import STRATEGIES

    names = {t.value for t in StrategyType}
    assert set(STRATEGIES) == set(LAYOUTS) == set(_STRATEGIES) == names
    assert {cls.kind.value for cls in STRATEGIES.values()} == names
    # the typed settings spell them out (a Literal can't be computed)
    hint = typing.get_type_hints(JobSettings)["strategy"]
    assert set(typing.get_args(hint)) == names


def test_member_codec_round_trip() -> None:
    from elk_celery.store.codec import member, member_id, parse_member

    m = member(7, 2**63 - 2, 2**63 - 1)
    assert parse_member(m.encode()) == (7, 2**63 - 2, 2**63 - 1)
    assert member_id(m) == "7"


def _chain(node: ast.AST) -> str:
    """``a.b.c`` of an attribute chain (``?`` for anything not a name)."""
    if isinstance(node, ast.Attribute):
        return f"{_chain(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return "?"


def leaks() -> set[tuple[str, str]]:
    """(module, expression) of each raw Redis use or private member call
    outside store/."""
    out: set[tuple[str, str]] = set()
    for name, (_, tree) in modules().items():
        if not name.startswith(f"{ROOT}.store"):
            out |= leaks_in(name, tree)
    return out


def leaks_in(name: str, tree: ast.AST) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            owner = _chain(node.value)
            if node.attr in RAW and owner not in ("redis",):
                out.add((name, f"{owner}.{node.attr}"))
            elif (node.attr.startswith("_") and not node.attr.startswith("__")
                  and owner not in ("self", "cls")
                  and (owner.rsplit(".", 1)[-1], node.attr) not in FOREIGN_PRIVATE):
                out.add((name, f"{owner}.{node.attr}"))
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__") and node.level:
                    target = _resolve(name, node.level, node.module)
                    if not (target + "." + a.name) in modules():
                        out.add((name, f"import {a.name}"))
    return out


def test_only_the_store_touches_redis() -> None:
    assert sorted(leaks() - ALLOWED_LEAKS) == []


def test_the_leak_checker_sees_a_leak() -> None:
    tree = ast.parse("def f(store):\n    store.redis.zcard(store.keys.ids)\n"
                     "    store.strategy._run('x')\n    store.strategy.claim(1)\n")
    assert {e for _, e in leaks_in("m", tree)} == {"store.redis", "store.keys",
                                                    "store.strategy._run"}


#: Uses that are not leaks.
ALLOWED_LEAKS: set[tuple[str, str]] = {
    ("elk_celery.app", "elk._register"),     # Elk's own method, from its own module
    ("elk_celery.app", "self.redis"),        # the client, handed to the store that owns it
    ("elk_celery.job", "self.elk.redis"),    # the same
    ("elk_celery.testing", "elk.redis"),     # deletes Celery's queues (the broker's keys)
}


TESTS = Path(__file__).resolve().parent


def test_tests_share_helpers_not_test_modules() -> None:
    """Shared test code lives in conftest.py or helper modules; a test module
    imports no other test module (and no Redis-backed folder is "unit")."""
    wrong = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                last = node.module.rsplit(".", 1)[-1]
                if last.startswith("test_") and path.name != "test_architecture.py":
                    wrong.append(f"{path.relative_to(TESTS)} imports {node.module}")
    assert wrong == []
    assert not list((TESTS / "unit").glob("*.py"))


#: docs/architecture.md's layers: a module imports from its own layer or below.
LAYERS = {
    0: ["errors", "models", "keys", "settings", "job_settings", "runtime", "planners", "hooks",
        "_version", "_redis_server", "redis_urls"],
    1: ["store"],
    2: ["strategies"],
    3: ["gaps", "compaction", "breaker", "eta"],
    4: ["job"],
    5: ["leader", "worker", "metrics", "metrics_bridge"],
    6: ["app"],
    7: ["cli", "testing", ""],  # "" = the package's __init__.py
}


def layer_of(name: str) -> int:
    rest = name[len(ROOT) + 1:] if name != ROOT else ""
    top = rest.split(".", 1)[0]
    for layer, tops in LAYERS.items():
        if top in tops:
            return layer
    raise AssertionError(f"{name} is in no layer of docs/architecture.md: add it to LAYERS")


def test_every_module_imports_only_its_layer_or_below() -> None:
    upward = {name: sorted(m for m in imports_of(name) if layer_of(m) > layer_of(name))
              for name in modules()}
    assert {n: ms for n, ms in upward.items() if ms} == {}
