"""Real face photos for the demo, the tests and model calibration on a fresh machine.

No model hub or website can be assumed reachable, but the package registry is: the face_recognition
1.3.0 source distribution on PyPI carries a few test photos (Barack Obama, Joe Biden). They are fetched
once with pip into `<project>/.cache/samples` (or FACEGATE_CACHE) and read from there afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from appliance.errors import ApplianceError

SDIST = "face_recognition==1.3.0"
ARCHIVE = "face_recognition-1.3.0.tar.gz"
MEMBER_DIR = "face_recognition-1.3.0/tests/test_images/"
PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")
"""The photos with one clear frontal face each (the partial-face ones are left out)."""


def cache_dir() -> Path:
    """Where fetched samples live: $FACEGATE_CACHE/samples, else <project>/.cache/samples."""
    base = os.environ.get("FACEGATE_CACHE")
    root = Path(base) if base else Path(__file__).resolve().parents[2] / ".cache"
    return root / "samples"


def sample_photos() -> dict[str, Path]:
    """Map photo name (e.g. "obama.jpg") -> local path, fetching the sdist with pip the first time.

    Raises:
        ApplianceError: pip could not fetch the package (no registry access): the message says what to do.
    """
    folder = cache_dir()
    paths = {name: folder / name for name in PHOTOS}
    if all(p.is_file() for p in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / ARCHIVE
    if not archive.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        result = subprocess.run([*cmd, "-d", str(folder), SDIST], capture_output=True, text=True)
        if result.returncode != 0 or not archive.is_file():
            raise ApplianceError(
                f"cannot fetch the sample photos ({SDIST} from PyPI): {result.stderr.strip()[-200:]}; "
                f"check the network, or copy {ARCHIVE} into {folder}."
            )
    with tarfile.open(archive) as tar:
        for name in PHOTOS:
            member = tar.extractfile(MEMBER_DIR + name)
            if member is None:
                raise ApplianceError(f"{archive}: {name} is missing from the archive; delete it and retry.")
            paths[name].write_bytes(member.read())
    return paths
