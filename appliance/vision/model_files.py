"""Where the model files are, and the check that they are the ones the build produced.

`models/SHA256SUMS` lists every model file with its sha256 in `sha256sum` format. A file that is
missing or whose digest differs is refused before the TFLite runtime ever parses it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from appliance.errors import ModelError

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
MANIFEST_NAME = "SHA256SUMS"


def read_manifest(models_dir: Path) -> dict[str, str]:
    """Map file name -> expected sha256 hex digest."""
    manifest = models_dir / MANIFEST_NAME
    restore = "restore the folder with `git checkout models/` (`make models` rebuilds it)"
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ModelError(
            f"{manifest}: cannot read the model manifest ({exc.strerror}); check [detector] models_dir "
            f"in the config, or {restore}."
        ) from exc
    except UnicodeDecodeError as exc:
        raise ModelError(f"{manifest}: not a text file (damaged); {restore}.") from exc
    sums: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        entry = _MANIFEST_LINE.match(line)
        if entry is None:
            raise ModelError(
                f"{manifest}, line {number}: not `SHA256  FILE` as sha256sum writes it ({line[:60]!r}); "
                f"{restore}."
            )
        sums[entry["name"]] = entry["digest"].lower()
    return sums


_MANIFEST_LINE = re.compile(r"^(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>\S.*?)\s*$")
"""One line of `sha256sum` output: 64 hex digits, a space, a space or `*` (binary mode), the file name."""


def sha256_of(path: Path) -> str:
    """Hex sha256 digest of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified_model_path(models_dir: Path, name: str) -> Path:
    """Return models_dir/name after checking it against the manifest, or raise ModelError."""
    sums = read_manifest(models_dir)
    path = models_dir / name
    if name not in sums:
        raise ModelError(
            f"{path}: not listed in {models_dir / MANIFEST_NAME}; check the model name in config.toml."
        )
    if not path.is_file():
        raise ModelError(
            f"{path}: model file is missing; restore it with `git checkout models/` or `make models`."
        )
    if sha256_of(path) != sums[name]:
        raise ModelError(
            f"{path}: sha256 does not match {MANIFEST_NAME}, the file was altered or damaged; "
            "restore it with `git checkout models/` or rebuild with `make models`."
        )
    return path
