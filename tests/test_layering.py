"""Imports go one way: cli -> stages -> training / evaluation -> checkpoints, tracking -> models,
metrics, data -> config, io; the stage declarations (pipeline) sit at the bottom with the paths. A
module may import from its own layer or below, never above, and no two subpackages or modules import
each other, directly or around a cycle."""

from __future__ import annotations

import ast

from slotbench import paths

PACKAGE = paths.PACKAGE_DIR
#: Every top-level module or subpackage of slotbench and its layer (a unit imports only its layer or below).
LAYERS = {
    "__init__": 0, "io": 0, "paths": 0, "pipeline": 0,
    "config": 1, "runtime": 1, "weights": 1, "visualize": 1, "jobs": 1,
    "data": 2, "metrics": 2, "models": 2,
    "checkpoint": 3, "tracking": 3,
    "training": 4, "evaluation": 4, "interop": 4,
    "table": 5, "report": 5, "preflight": 5, "workflow_dvc": 5,
    "cli_help": 6, "cli": 6, "__main__": 7,
}


def _unit(module: tuple[str, ...]) -> str:
    return module[0] if module else "__init__"


def import_graph() -> dict[str, set[str]]:
    """unit -> the other units it imports (relative and ``slotbench.`` absolute imports)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("").parts
        package = rel[:-1] if rel[-1] != "__init__" else rel[:-1]
        here = _unit(rel if rel != ("__init__",) else ())
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[:len(package) - node.level + 1]
                module = tuple(node.module.split(".")) if node.module else ()
                targets = [base + module] if module else [base + (alias.name,) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("slotbench"):
                targets = [tuple(node.module.split(".")[1:])]
            elif isinstance(node, ast.Import):
                targets = [tuple(a.name.split(".")[1:]) for a in node.names if a.name.startswith("slotbench")]
            for target in targets:
                unit = _unit(target)
                unit = unit if unit in LAYERS else "__init__"  # `from .. import __version__`
                if unit != here:
                    graph.setdefault(here, set()).add(unit)
    return graph


def test_every_unit_has_a_layer():
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert units == set(LAYERS), f"add to LAYERS: {sorted(units - set(LAYERS))}; gone: {sorted(set(LAYERS) - units)}"


def test_imports_never_go_up_a_layer():
    upward = sorted(f"{a} (layer {LAYERS[a]}) imports {b} (layer {LAYERS[b]})"
                    for a, targets in import_graph().items() for b in targets if LAYERS[b] > LAYERS[a])
    assert not upward, upward


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, int] = {}

    def visit(unit: str, trail: list[str]) -> None:
        state[unit] = 1
        for nxt in sorted(graph.get(unit, ())):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join(trail + [unit, nxt])}"
            if nxt not in state:
                visit(nxt, trail + [unit])
        state[unit] = 2

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [])


def test_the_checker_sees_a_cycle_and_an_upward_import(monkeypatch):
    """The two checks are not vacuous: training -> evaluation -> training would be caught."""
    real = import_graph()
    fake = {**real, "evaluation": real.get("evaluation", set()) | {"training"},
            "models": real.get("models", set()) | {"training"}}
    monkeypatch.setattr(__import__(__name__), "import_graph", lambda: fake)
    for check in (test_no_import_cycle, test_imports_never_go_up_a_layer):
        try:
            check()
        except AssertionError:
            continue
        raise AssertionError(f"{check.__name__} missed the injected import")
