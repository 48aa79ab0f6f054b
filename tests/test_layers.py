"""The house's import rules: no loop, and no module imports one above its floor.

Floors, from the bottom (ARCHITECTURE.md's rule 3): a module may import its
own floor's modules and those below, never above. Lazy imports inside
functions count too: they are how an upward import would hide.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import downloader

PACKAGE = Path(downloader.__file__).parent

FLOORS: dict[str, int] = {
    # plain data and the settings: import nothing of ours but each other
    "_version": 0,
    "_types": 0,
    "_settings": 0,
    "_exceptions": 0,
    "_integrity": 0,
    "_models": 0,
    # pure rules, manifests, progress
    "_policy": 1,
    "_manifest": 1,
    "_progress": 1,
    "_events": 1,
    # the wings on foreign things: disk, network, the test server
    "_storage": 2,
    "_http": 2,
    "testing": 2,
    "_raw_replies": 2,
    "_server_quota": 2,
    "_server_faults": 2,
    "_lockfile": 2,
    # the run
    "_engine": 3,
    # the ways in
    "_api": 4,
    "_offline": 4,
    "_cluster": 4,
    "distributed": 4,
    "_cli": 5,
    "__init__": 6,
    "__main__": 6,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__") or "__init__"


def _wing(module: str) -> str:
    return module.split(".")[0]


def _imports(path: Path) -> set[str]:
    """Our modules ``path`` imports (resolved, ``downloader.`` dropped)."""
    here = _module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = ".".join([*base, node.module or ""]).strip(".")
            elif node.module and node.module.startswith("downloader"):
                target = node.module.removeprefix("downloader").strip(".")
            else:
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}".strip(".")
                found.add(full if _is_module(full) else target or "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("downloader."):
                    found.add(alias.name.removeprefix("downloader."))
    return {m for m in found if m}


def _is_module(name: str) -> bool:
    base = PACKAGE.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


GRAPH = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_floor() -> None:
    assert sorted({_wing(m) for m in GRAPH} - set(FLOORS)) == []


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_import_reaches_up(module: str) -> None:
    floor = FLOORS[_wing(module)]
    upward = sorted(
        m
        for m in GRAPH[module]
        if _wing(m) != _wing(module) and FLOORS[_wing(m)] > floor
    )
    assert upward == [], f"{module} (floor {floor}) imports from above"


def test_no_import_loop() -> None:
    """Between modules, counting imports inside functions and TYPE_CHECKING."""
    seen: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if target not in GRAPH:
                continue
            if seen.get(target) == 1:
                loop = [*path[path.index(target) :], target]
                pytest.fail("import loop: " + " -> ".join(loop))
            if target not in seen:
                visit(target, [*path, target])
        seen[module] = 2

    for module in sorted(GRAPH):
        if module not in seen:
            visit(module, [module])
