"""`make models`: rebuild every file in models/ from the pinned packages of models/build/requirements.txt.

    .build-venv/bin/python -m models.build.all [--calib-dir DIR] [--embedder-calib-dir DIR]

Runs the MTCNN build, then the embedder build (which also records the golden outputs under tests/golden),
then rewrites models/SHA256SUMS. Calibration faces for the int8 models default to the test photos of the
face_recognition 1.3.0 sdist, which any machine can fetch with pip; --calib-dir replaces them for both
builds, --embedder-calib-dir for the embedder only. The committed files were built with

    make models EMBEDDER_CALIB_DIR=../shared/data/lfw

(MTCNN on the sample photos; the embedder on 300 LFW images, which measurably tightens its int8 ranges:
see models/README.md). Photos from your own door camera are the best calibration set of all.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.build import embedder_convert, mtcnn
from models.build.manifest import write_manifest

EMBEDDER_CALIB_LIMIT = 300
"""Calibration images for the embedder (the committed int8 model used 300 LFW images)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.build.all", description=__doc__.splitlines()[0])
    parser.add_argument("--calib-dir", type=Path, help="folder of face photos for int8 calibration (both)")
    parser.add_argument("--embedder-calib-dir", type=Path, help="calibration photos for the embedder only")
    args = parser.parse_args(argv)
    mtcnn_calib = ["--calib-dir", str(args.calib_dir)] if args.calib_dir else []
    embedder_dir = args.embedder_calib_dir or args.calib_dir
    embedder_calib = ["--calib-dir", str(embedder_dir)] if embedder_dir else []
    mtcnn.main(mtcnn_calib)
    embedder_convert.main([*embedder_calib, "--calib-limit", str(EMBEDDER_CALIB_LIMIT)])
    print(write_manifest())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
