"""The package's layers import downwards only: handlers -> reconciling -> helpers -> models."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "operator" / "berth"

# Lower number = lower layer. A module may import only modules of a lower layer (or its own, when marked shared).
LAYERS = {
    "errors": 0, "settings": 0, "masking": 0,
    "conditions": 1,
    "models": 2,
    "kube": 3, "certificates": 3, "credentials": 3, "rendering": 3,
    "applying": 4,
    "reconciling": 5,
    "handlers": 6,
    "cli": 7,
}


def _imports(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "berth":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("berth."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("berth.")}
    return found - {"__version__"}


def test_every_module_has_a_layer() -> None:
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(LAYERS)


def test_imports_point_downwards() -> None:
    upward = []
    for path in PACKAGE.glob("*.py"):
        if path.stem == "__init__":
            continue
        for imported in _imports(path):
            if LAYERS[imported] >= LAYERS[path.stem]:
                upward.append(f"{path.stem} imports {imported}")
    assert upward == []
