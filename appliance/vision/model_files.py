"""Where the model files are, and the check that they are the ones the build produced.

`models/SHA256SUMS` lists every model file with its sha256 in `sha256sum` format. A file that is
missing or whose digest differs is refused before the TFLite runtime ever parses it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from appliance.errors import ModelError

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
MANIFEST_NAME = "SHA256SUMS"


def read_manifest(models_dir: Path) -> dict[str, str]:
    """Map file name -> expected sha256 hex digest."""
    manifest = models_dir / MANIFEST_NAME
    try:
        lines = manifest.read_text().splitlines()
    except OSError as exc:
        raise ModelError(
            f"{manifest}: cannot read the model manifest ({exc.strerror}); check [detector] models_dir "
            "in the config, or restore the folder with `git checkout models/` (`make models` rebuilds it)."
        ) from exc
    sums: dict[str, str] = {}
    for line in lines:
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


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
