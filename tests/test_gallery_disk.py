"""A full disk under the gallery: the user is told the disk is full (not "disk I/O error"), and what was
stored before is still there once space is freed. Needs root to mount a small tmpfs; skips otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import GalleryError
from appliance.gallery.store import Gallery

MODEL = "test-model"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs mounted at a temporary folder."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem has no space left; returns it."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 1024)
        except OSError:
            pass
    return filler


def test_a_full_disk_is_named_as_such_and_the_gallery_survives(small_disk: Path) -> None:
    path = small_disk / "gallery.db"
    face = np.ones((1, 128), np.float32) / np.sqrt(128)
    with Gallery(path) as gallery:
        gallery.enrol("Ann", face, MODEL)
    filler = fill(small_disk)
    with pytest.raises(GalleryError, match="the disk is full; free some space"), Gallery(path) as gallery:
        gallery.enrol("Bob", face, MODEL)
    filler.unlink()
    with Gallery(path) as gallery:
        assert [u.name for u in gallery.users()] == ["Ann"]
