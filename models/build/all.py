"""`make models`: rebuild every file in models/ from the pinned packages of models/build/requirements.txt.

    .build-venv/bin/python -m models.build.all [--calib-dir DIR]

Runs the MTCNN build, then the embedder build (which also records the golden outputs under tests/golden),
then rewrites models/SHA256SUMS. --calib-dir replaces the default calibration faces (the test photos of
the face_recognition 1.3.0 sdist) for both: LFW or photos from your own door camera give int8 ranges
closer to what the appliance will see.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.build import embedder_convert, mtcnn
from models.build.manifest import write_manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.build.all", description=__doc__.splitlines()[0])
    parser.add_argument("--calib-dir", type=Path, help="folder of face photos for int8 calibration")
    args = parser.parse_args(argv)
    calib = ["--calib-dir", str(args.calib_dir)] if args.calib_dir else []
    mtcnn.main(calib)
    embedder_convert.main(calib)
    print(write_manifest())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
