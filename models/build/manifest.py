"""Rewrite models/SHA256SUMS from the *.tflite files in the models folder.

    python -m models.build.manifest [MODELS_DIR]

The runtime (appliance/vision/model_files.py) refuses any model file whose digest differs from this list.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parents[1]


def write_manifest(models_dir: Path = MODELS_DIR) -> Path:
    """Write SHA256SUMS (sha256sum format, sorted by name) for every *.tflite in models_dir."""
    lines = []
    for path in sorted(models_dir.glob("*.tflite")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.name}\n")
    manifest = models_dir / "SHA256SUMS"
    manifest.write_text("".join(lines))
    return manifest


if __name__ == "__main__":
    print(write_manifest(Path(sys.argv[1]) if len(sys.argv) > 1 else MODELS_DIR))
