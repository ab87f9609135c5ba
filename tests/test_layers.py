"""The layers drawn in ``shared/__init__.py`` hold: no module imports from a layer above its own,
and no import cycle exists anywhere in the app."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

import shared
from shared import LAYERS

ROOT = Path(__file__).resolve().parents[1]


def app_modules() -> dict[str, Path]:
    """Every module of the app by dotted name: function_app and all of shared/."""
    modules = {"function_app": ROOT / "function_app.py"}
    for path in sorted((ROOT / "shared").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def imports_of(path: Path, known: Iterable[str]) -> set[str]:
    """The app modules one file imports (``TYPE_CHECKING`` imports included: they bind layers too)."""
    known = set(known)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
    return {name for name in found if name in known}


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest layer name the module falls under."""
    best = -1
    for index, layer in enumerate(LAYERS):
        if (module == layer or module.startswith(layer + ".")) and (best < 0 or len(layer) > len(LAYERS[best])):
            best = index
    if best < 0:
        raise AssertionError(f"{module} is in no layer: add it to shared.LAYERS or move it into one")
    return best


def upward_imports(graph: Mapping[str, set[str]]) -> list[str]:
    problems = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            if target == "shared":
                continue  # the package itself: its docstring and LAYERS, no code
            if layer_of(target) > layer_of(module):
                problems.append(f"{module} ({LAYERS[layer_of(module)]}) imports {target} "
                                f"({LAYERS[layer_of(target)]}), a layer above it")
    return problems


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Each import cycle once, as the path that closes it."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                found.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = app_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


@pytest.mark.unit
def test_no_module_imports_from_a_layer_above_its_own(graph: dict[str, set[str]]) -> None:
    assert upward_imports(graph) == []


@pytest.mark.unit
def test_the_app_has_no_import_cycle(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


@pytest.mark.unit
def test_every_layer_has_modules_and_the_map_names_every_module(graph: dict[str, set[str]]) -> None:
    layers = {layer_of(module) for module in graph}
    assert layers == set(range(len(LAYERS)))
    described = shared.__doc__ or ""
    missing = [module.rsplit(".", 1)[-1] for module in graph
               if module not in ("shared", "function_app") and module.rsplit(".", 1)[-1] not in described]
    assert missing == [], "shared/__init__.py's map does not name these modules"


@pytest.mark.unit
def test_the_checks_catch_an_upward_import_and_a_cycle() -> None:
    graph = {
        "shared.storage.naming": {"shared.api.start"},  # storage reaching up into the API
        "shared.api.start": {"shared.pipeline.watcher"},
        "shared.pipeline.watcher": {"shared.api.start"},  # and back: a cycle
    }
    assert upward_imports(graph) == [
        "shared.pipeline.watcher (shared.pipeline) imports shared.api.start (shared.api), a layer above it",
        "shared.storage.naming (shared.storage) imports shared.api.start (shared.api), a layer above it",
    ]
    assert cycles(graph) == [["shared.api.start", "shared.pipeline.watcher", "shared.api.start"]]
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("elsewhere.module")


def entry_points() -> set[str]:
    """What function_app.py hands each trigger to: the functions it imports from the API and pipeline layers."""
    tree = ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8"))
    return {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
            and node.module.startswith(("shared.api.", "shared.pipeline.")) for alias in node.names
            if not alias.name.isupper()}


@pytest.mark.unit
def test_the_tests_invoke_the_functions_only_through_the_worker() -> None:
    """A test that called a function's entry point itself would skip the worker's converters (the
    host stand-ins in tests/support call it through the worker; unit tests use the code below it)."""
    names = entry_points()
    assert {"handle_watch_message", "handle_artifact_message", "start_run"} <= names
    bypasses = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.parent.name in ("support", "worker"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shared."):
                bypasses += [f"{path.relative_to(ROOT)}: {alias.name}" for alias in node.names if alias.name in names]
    assert bypasses == []


@pytest.mark.unit
def test_the_deployed_app_imports_nothing_the_package_leaves_out() -> None:
    """.funcignore leaves tests/, bench/ and scripts/ out of the deployment package, though the
    checks run with them on sys.path: an import of one would pass every check and fail in Azure."""
    left_out = tuple(line.strip().rstrip("/") for line in (ROOT / ".funcignore").read_text().splitlines()
                     if line.strip().rstrip("/") in ("tests", "bench", "scripts"))
    assert set(left_out) == {"tests", "bench", "scripts"}
    found = []
    for module, path in app_modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            named = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            found += [f"{module} imports {name}" for name in named if name.split(".")[0] in left_out]
    assert found == []
