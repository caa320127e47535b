"""The layering promises of the package, read from the import statements (ast): hardware and ML runtimes
are imported in one adapter each, and the decision logic imports none of them."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "appliance"

ADAPTER_OF = {
    "ai_edge_litert": {"inference.py"},
    "tflite_runtime": {"inference.py"},
    "gpiozero": {"actuators.py"},
    "picamera2": {"cameras/picamera.py"},
    "sqlite_utils": {"gallery.py"},
    "sqlite3": {"gallery.py"},
}
PURE = [
    "domain.py",
    "errors.py",
    "ports.py",
    "matching.py",
    "policy.py",
    "quality.py",
    "door.py",
    "metrics.py",
]
USE_CASES = ["service.py", "enrolment.py"]
IO_MODULES = {
    "cv2",
    "sqlite3",
    "sqlite_utils",
    "gpiozero",
    "picamera2",
    "ai_edge_litert",
    "tflite_runtime",
    "socket",
}


def imports(path: Path) -> set[str]:
    """Top-level module names a file imports, at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def modules() -> dict[str, set[str]]:
    return {str(p.relative_to(PACKAGE)): imports(p) for p in PACKAGE.rglob("*.py")}


def test_each_runtime_is_imported_by_its_adapter_only():
    for name, imported in modules().items():
        for library, adapters in ADAPTER_OF.items():
            if library in imported:
                assert name in adapters, f"{name} imports {library}; only {adapters} may"


def test_decision_logic_and_use_cases_do_no_io():
    found = modules()
    for name in PURE + USE_CASES:
        assert not found[name] & IO_MODULES, f"{name} imports {found[name] & IO_MODULES}"
