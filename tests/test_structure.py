"""The layering promises of the package, read from the import statements (ast): which folder may import
which, hardware and ML runtimes imported in one adapter each, and the decision logic doing no I/O.

A failure names the file and the import that breaks the rule, so the fix is to move the code, not to
widen the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "appliance"

CORE = {"domain", "errors", "ports"}
"""Top-level modules every folder may use: value types, errors, the ports (Protocols)."""

MAY_IMPORT: dict[str, set[str]] = {
    # folder (or top-level module) -> the appliance folders and top-level modules it may import
    "domain": {"domain"},
    "errors": set(),
    "ports": {"domain"},
    # config's default models_dir is the folder of models installed with FaceGate.
    "config": {"errors", "vision"},
    "vision": CORE | {"vision"},
    "access": CORE | {"access", "liveness"},
    "liveness": CORE | {"liveness"},
    "hardware": CORE | {"hardware"},
    "gallery": CORE | {"gallery"},
    "app": CORE | {"config", "vision", "access", "hardware", "gallery", "app", "liveness"},
    "evaluation": CORE
    | {"config", "vision", "access", "hardware", "gallery", "app", "evaluation", "liveness"},
    "integrations": CORE | {"config", "app", "integrations"},
    "cli": CORE
    | {"config", "vision", "access", "hardware", "gallery", "app", "evaluation", "web", "__init__"}
    | {"integrations", "liveness", "sites"},
    # The admin page: enrolment from photos needs the models (vision, app); no hardware.
    "web": CORE | {"config", "vision", "access", "gallery", "app", "web"},
    "sites": CORE | {"config", "gallery", "integrations", "sites"},
    "__main__": {"cli"},
    "__init__": set(),
}

ADAPTER_OF = {
    "ai_edge_litert": {"vision/inference.py"},
    "tflite_runtime": {"vision/inference.py"},
    "gpiozero": {"hardware/actuators.py"},
    "picamera2": {"hardware/cameras/picamera.py"},
    "sqlite_utils": {"gallery/store.py", "gallery/schema.py"},
    "sqlite3": {"gallery/store.py"},
    "paho": {"integrations/mqtt_client.py"},
    "starlette": {"web/server.py"},
    "uvicorn": {"web/server.py"},
    "jinja2": {"web/server.py"},
    "cryptography": {"sites/records.py"},
}
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
NO_IO = ["domain.py", "errors.py", "ports.py", "evaluation/metrics.py", "liveness/decision.py"]
"""Files outside access/ that must stay free of I/O too (access/ is checked as a whole)."""


def imports(path: Path) -> set[str]:
    """Dotted module names a file imports, at any depth of the file (inside functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "appliance":  # `from appliance import x`: x is a module or a dunder
                names |= {
                    "appliance.__init__" if alias.name.startswith("__") else f"appliance.{alias.name}"
                    for alias in node.names
                }
            else:
                names.add(node.module)
    return names


def modules() -> dict[str, set[str]]:
    """Path relative to the package (e.g. "vision/detector.py") -> dotted names it imports."""
    return {p.relative_to(PACKAGE).as_posix(): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def room(path_or_module: str) -> str:
    """The folder a file lives in, or its module name for a top-level file: "vision", "config"."""
    first = path_or_module.replace(".", "/").split("/")[0]
    return first.removesuffix(".py")


def test_every_file_belongs_to_a_known_folder():
    for name in modules():
        assert room(name) in MAY_IMPORT, f"{name}: a new top-level module or folder; add it to MAY_IMPORT"


def test_each_folder_imports_only_the_layers_below_it():
    for name, imported in modules().items():
        allowed = MAY_IMPORT[room(name)] | {room(name)}
        for module in sorted(imported):
            if module == "appliance" or not module.startswith("appliance."):
                continue
            target = room(module.removeprefix("appliance."))
            assert target in allowed, f"appliance/{name} imports {module}; {room(name)} may import {allowed}"


def test_each_runtime_is_imported_by_its_adapter_only():
    for name, imported in modules().items():
        top = {module.split(".")[0] for module in imported}
        for library, adapters in ADAPTER_OF.items():
            if library in top:
                assert name in adapters, f"appliance/{name} imports {library}; only {sorted(adapters)} may"


def test_decision_logic_and_use_cases_do_no_io():
    found = modules()
    checked = [name for name in found if room(name) == "access"] + NO_IO
    assert "access/loop.py" in checked and "access/policy.py" in checked
    for name in checked:
        io = {module.split(".")[0] for module in found[name]} & IO_MODULES
        assert not io, f"appliance/{name} imports {sorted(io)}; access/ and the core do no I/O"


def test_sub_packages_say_what_they_are_for():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc.lower(), (
            f"{init}: docstring must say what the folder is for and imports"
        )
