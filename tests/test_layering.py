"""The package layering: cli -> study -> analyses -> hooks / metrics / data -> model, with artifacts,
choices and errors below all; metrics stay pure (no model code); no import cycles between modules,
function-local imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import transfer_neurons

PACKAGE = Path(transfer_neurons.__file__).parent
BOTTOM = {"errors", "choices", "artifacts"}
ALLOWED = {  # package -> the packages its modules may import (besides itself)
    "errors": set(),
    "choices": set(),
    "artifacts": {"errors", "choices"},
    "model": BOTTOM,
    "metrics": BOTTOM,
    "data": BOTTOM,
    "hooks": BOTTOM | {"model"},
    "analyses": BOTTOM | {"model", "hooks", "metrics", "data"},
    "study": BOTTOM | {"model", "hooks", "metrics", "data", "analyses"},
    "cli": BOTTOM | {"model", "hooks", "metrics", "data", "analyses", "study"},
}
FACADES = {
    "__init__",
    "testing",
    "calibration",
}  # the public API, the test-model builder and the simulation checks sit above everything


def modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(PACKAGE).with_suffix("").parts): path
        for path in PACKAGE.rglob("*.py")
        if path.name != "__main__.py"
    }


def imports(path: Path) -> set[str]:
    """Every transfer_neurons module a file imports, anywhere in it (relative imports are not used)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("transfer_neurons"):
            assert node.level == 0, f"{path}: use absolute imports"
            base = node.module.removeprefix("transfer_neurons").lstrip(".")
            for alias in node.names:
                candidate = f"{base}.{alias.name}" if base else alias.name
                found.add(candidate if candidate in modules() or f"{candidate}.__init__" in modules() else base)
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("transfer_neurons.")]
            found |= {name.removeprefix("transfer_neurons.") for name in names}
    return {name for name in found if name}


def package(module: str) -> str:
    return module.split(".")[0]


def test_every_package_imports_only_the_layers_below_it():
    wrong = []
    for module, path in modules().items():
        if module in FACADES:
            continue
        own = package(module)
        for target in imports(path):
            if package(target) != own and package(target) not in ALLOWED[own]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_every_source_module_belongs_to_a_known_package():
    assert {package(m) for m in modules()} - FACADES <= set(ALLOWED)


def test_no_import_cycles():
    graph = {}
    for module, path in modules().items():
        targets = set()
        for target in imports(path):
            target = target if target in modules() else f"{target}.__init__"
            if target in modules() and target != module:
                targets.add(target)
        graph[module] = targets
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]) if nxt in trail else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state and module not in FACADES:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_source_files_stay_small():
    sizes = {module: len(path.read_text(encoding="utf-8").splitlines()) for module, path in modules().items()}
    assert not {m: n for m, n in sizes.items() if n > 400}
    assert not {m: n for m, n in sizes.items() if package(m) == "cli" and n > 250}
