"""Every LFW image embedded once by the appliance's own pipeline, cached under .cache/learning/.

The detector and embedder are the ones `facegate eval` uses (appliance/app/wiring.py from the config),
and the face of each image is the detection nearest the image centre, as in `eval lfw` and `eval door`.
The cache file is named by the embedder's model id and the two variants, and records the relative paths,
so a change of model or of the image set is a new file rather than stale vectors.

    .venv/bin/python -m models.build.learning.embeddings --root ../shared/data/lfw
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.app.wiring import build_detector, build_embedder
from appliance.config import load_config
from appliance.evaluation import accuracy
from appliance.vision.embedder import MODEL_ID

REPO = Path(__file__).resolve().parents[3]
CACHE_DIR = REPO / ".cache" / "learning"


@dataclass(frozen=True)
class EmbeddedSet:
    """One embedding per image of a folder-per-person data set.

    Attributes:
        paths: (N,) relative paths "name/name_0001.jpg", sorted.
        people: (N,) the person (folder name) of each image.
        embeddings: (N, 128) float32 unit vectors; zeros where no face was found.
        has_face: (N,) bool.
        model_id: the embedder's model id, with the detector and embedder variants.
    """

    paths: np.ndarray
    people: np.ndarray
    embeddings: np.ndarray
    has_face: np.ndarray
    model_id: str


def cache_path(model_id: str, rel_paths: list[str], settings: str = "", cache_dir: Path = CACHE_DIR) -> Path:
    """The cache file for this model, these settings and this exact list of images."""
    digest = hashlib.sha256(("\n".join([model_id, settings, *rel_paths])).encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in model_id)
    return Path(cache_dir) / f"lfw-{safe}-{digest}.npz"


def load_or_embed(
    root: Path, config: Path | None = None, verbose: bool = True, cache_dir: Path = CACHE_DIR
) -> EmbeddedSet:
    """Embed every image under `root` (one folder per person) once; later calls read the cache."""
    root = Path(root)
    people = accuracy.list_identities(root)
    rel = [f"{person}/{p.name}" for person, images in people.items() for p in images]
    cfg = load_config(config if config is not None else REPO / "config.toml")
    model_id = f"{MODEL_ID}/det-{cfg.detector.variant}/emb-{cfg.embedder.variant}"
    # The model files' checksums and the detector and embedder settings are part of the key: a rebuilt
    # model or a changed threshold gives other embeddings.
    sums = Path(cfg.detector.models_dir) / "SHA256SUMS"
    settings = f"{cfg.detector!r}\n{cfg.embedder!r}\n{sums.read_text() if sums.is_file() else ''}"
    settings = settings.replace(str(cfg.detector.models_dir), "MODELS")
    path = cache_path(model_id, rel, settings, cache_dir)
    if path.is_file():
        data = np.load(path, allow_pickle=False)
        return EmbeddedSet(
            data["paths"], data["people"], data["embeddings"], data["has_face"], str(data["model_id"])
        )
    detector, embedder = build_detector(cfg), build_embedder(cfg)
    progress = accuracy.TextProgress("embed LFW") if verbose else None
    start = time.monotonic()
    emb, has_face = accuracy.embed_images(
        [root / r for r in rel], detector, embedder, accuracy.face_nearest_centre, progress
    )
    if verbose:
        print(
            f"embedded {len(rel)} images in {time.monotonic() - start:.0f} s, no face in {(~has_face).sum()}",
            file=sys.stderr,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        paths=np.array(rel),
        people=np.array([r.split("/")[0] for r in rel]),
        embeddings=emb,
        has_face=has_face,
        model_id=np.array(model_id),
    )
    tmp.replace(path)
    return load_or_embed(root, config, verbose=False, cache_dir=cache_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.build.learning.embeddings", description=__doc__)
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "lfw")
    parser.add_argument("--config", type=Path)
    args = parser.parse_args(argv)
    data = load_or_embed(args.root, args.config)
    print(f"{len(data.paths)} images, {int(data.has_face.sum())} with a face, model {data.model_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
