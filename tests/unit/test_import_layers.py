"""The code's shape, read from its imports (every ``import``, also inside functions).

Layers, lowest first: infrastructure (config, db, broker, migrate, json_values, clients) ->
models -> schemas -> services -> the edges (api, web, worker, cli, main). A module imports
only from its own layer or below; api and web never import worker (jobs reach workers through
the broker); trainer/ never imports app/. No two modules import each other, directly or around a loop.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "trainer")

INFRA = "infra"
# layer of a module: the first prefix that matches (longest prefixes first)
LAYER_OF_PREFIX = {
    "app.config": INFRA,
    "app.db": INFRA,
    "app.broker": INFRA,
    "app.migrate": INFRA,
    "app.json_values": INFRA,
    "app.clients": INFRA,
    "app.models": "models",
    "app.schemas": "schemas",
    "app.services": "services",
    "app.deps": "deps",
    "app.api": "api",
    "app.web": "web",
    "app.worker": "worker",
    "app.cli": "entry",
    "app.cli_export": "entry",
    "app.cli_jobs": "entry",
    "app.cli_labelers": "entry",
    "app.cli_support": "entry",
    "app.cli_simulate": "entry",
    # simulated labelers: a REST client of the app, importing nothing else of it
    "app.simulation": "client",
    "app.main": "entry",
    "app.asgi": "entry",
    "app": "entry",
    "trainer": "trainer",
}
# what each layer of app/ may import besides third-party libraries and trainer/ (a library of
# its own, below all of app/)
ALLOWED = {
    INFRA: {INFRA},
    "models": {INFRA, "models"},
    "schemas": {INFRA, "models", "schemas"},
    "services": {INFRA, "models", "schemas", "services"},
    "deps": {INFRA, "models", "schemas", "services"},
    "api": {INFRA, "models", "schemas", "services", "deps", "api"},
    "web": {INFRA, "models", "schemas", "services", "deps", "web"},
    "worker": {INFRA, "models", "schemas", "services", "worker"},
    "entry": {INFRA, "models", "schemas", "services", "deps", "api", "web", "worker", "entry"},
    "client": {"client"},
}
ALLOWED["entry"] |= {"client"}
ALLOWED = {name: allowed | {"trainer"} for name, allowed in ALLOWED.items()}
ALLOWED["trainer"] = {"trainer"}


def layer(module: str) -> str:
    for prefix in sorted(LAYER_OF_PREFIX, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYER_OF_PREFIX[prefix]
    raise AssertionError(f"{module} is in no layer: add it to LAYER_OF_PREFIX")


def module_files() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def imports_of(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported project module, line) for every import statement in the file."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                if not is_package:
                    anchor.pop()
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the module pkg.sub; `from pkg import name`, pkg
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            # the longest project module the name starts with
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name, node.lineno


GRAPH = {module: sorted(set(imports_of(module, path))) for module, path in MODULES.items()}


def test_the_walk_sees_the_project() -> None:
    assert {"app.services.jobs", "app.api.jobs", "trainer.ppo"} <= set(MODULES)
    assert ("app.services.jobs", "app.broker") in {
        (m, dep) for m, deps in GRAPH.items() for dep, _ in deps
    }


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = [
        f"{MODULES[module].relative_to(ROOT)}:{line} ({layer(module)}) imports {dep} ({layer(dep)})"
        for module, deps in GRAPH.items()
        for dep, line in deps
        if layer(dep) not in ALLOWED[layer(module)]
    ]
    assert not upward, "\n".join(upward)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep, _ in GRAPH[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles() -> None:
    assert _cycles() == []


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": ["b"], "b": ["a"]}, [["a", "b"]]),
        ({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}, [["a", "b", "c"]]),
        ({"a": ["b"], "b": [], "c": ["b"]}, []),
    ],
)
def test_the_cycle_finder_finds_cycles(
    monkeypatch: pytest.MonkeyPatch, edges: dict[str, list[str]], expected: list[list[str]]
) -> None:
    monkeypatch.setattr(
        __import__(__name__, fromlist=["GRAPH"]),
        "GRAPH",
        {m: [(d, 1) for d in deps] for m, deps in edges.items()},
    )
    assert _cycles() == expected
