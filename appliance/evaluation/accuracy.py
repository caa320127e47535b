"""Evaluation runners behind `facegate eval`: LFW verification, door (open-set 1:N), detection AP.

Each runner reads a public data set from disk, runs a `FaceDetector` and (except detection) a
`FaceEmbedder` on every image once, and turns the scores into the numbers of `appliance.evaluation.metrics`.
They return plain dicts of Python numbers and lists so the CLI can print them or dump them as JSON
(the ROC thresholds start at +inf, which `json.dumps` writes as `Infinity`).

Images are read with OpenCV and converted to RGB, as the detector expects.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TextIO

import numpy as np

from appliance.domain import Face
from appliance.errors import ApplianceError
from appliance.evaluation import metrics
from appliance.ports import FaceDetector, FaceEmbedder
from appliance.vision.images import read_image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

ProgressFn = Callable[[int, int], None]
"""Called as progress(done, total) after each image; total stays the same during one run."""

FacePicker = Callable[[Sequence[Face], tuple[int, ...]], "Face | None"]
"""Chooses the face to use from an image's detections, given the image shape (H, W, 3)."""


# --------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------


def _clock_text(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TextProgress:
    """A one-line progress bar on stderr: label, done/total, percent, images per second, ETA.

    Redraws at most every `interval` seconds (a terminal redraw per image would slow small runs)
    and always on the last item, which also ends the line.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.5,
    ):
        self.label = label
        self._stream = stream
        self._clock = clock
        self._interval = interval
        self._first: tuple[float, int] | None = None  # (time, done) at the first call
        self._last_draw = -math.inf

    def __call__(self, done: int, total: int) -> None:
        """Record that `done` of `total` items are finished and redraw if it is time."""
        now = self._clock()
        if self._first is None:
            self._first = (now, done)
        if done < total and now - self._last_draw < self._interval:
            return
        self._last_draw = now
        # Rate over the items finished since the first call: the first item's own time is unknown.
        start, start_done = self._first
        rate = (done - start_done) / (now - start) if now > start else math.nan
        eta = (total - done) / rate if rate > 0 else math.inf
        rate_text = f"{rate:5.1f}/s" if math.isfinite(rate) else "  --/s"
        pct = 100.0 * done / total if total else 100.0
        width = 24
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "-" * (width - filled)
        stream = self._stream if self._stream is not None else sys.stderr
        stream.write(f"\r{self.label} [{bar}] {done}/{total} {pct:3.0f}% {rate_text} ETA {_clock_text(eta)}")
        if done >= total:
            stream.write("\n")
        stream.flush()


def _no_progress(done: int, total: int) -> None:
    pass


# --------------------------------------------------------------------------------------------
# Images and faces
# --------------------------------------------------------------------------------------------


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as an RGB uint8 array (H, W, 3) at full size, or raise ImageError.

    Never scaled down (unlike enrolment photos): benchmark boxes are in the file's own pixels.
    """
    return read_image(path, max_side=sys.maxsize)


def face_nearest_centre(faces: Sequence[Face], shape: tuple[int, ...]) -> Face | None:
    """The face whose box centre is nearest the image centre (LFW crops are centred on the subject)."""
    if not faces:
        return None
    cy, cx = shape[0] / 2.0, shape[1] / 2.0

    def distance(face: Face) -> float:
        x1, y1, x2, y2 = face.box
        return math.hypot((x1 + x2) / 2.0 - cx, (y1 + y2) / 2.0 - cy)

    return min(faces, key=distance)  # min keeps the first on a tie: the detector's best score


def largest_face(faces: Sequence[Face], shape: tuple[int, ...]) -> Face | None:
    """The face with the largest box area (portraits: the subject is the biggest face)."""
    if not faces:
        return None
    return max(faces, key=lambda f: f.width * f.height)


def embed_images(
    paths: Sequence[Path],
    detector: FaceDetector,
    embedder: FaceEmbedder,
    pick: FacePicker,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Detect, pick one face and embed it, for each image once.

    Returns:
        (embeddings, has_face): (N, D) float32, a row of zeros where no face was found, and (N,)
        bool. D is 0 when no image had a face.
    """
    progress = progress or _no_progress
    rows: list[np.ndarray | None] = []
    dim = 0
    for i, path in enumerate(paths):
        image = read_rgb(path)
        face = pick(detector.detect(image), image.shape)
        if face is None:
            rows.append(None)
        else:
            vec = np.asarray(embedder.embed(image, [face]), dtype=np.float32).reshape(-1)
            dim = vec.size
            rows.append(vec)
        progress(i + 1, len(paths))
    out = np.zeros((len(paths), dim), dtype=np.float32)
    has_face = np.zeros(len(paths), dtype=bool)
    for i, vec in enumerate(rows):
        if vec is not None:
            out[i] = vec
            has_face[i] = True
    return out, has_face


# --------------------------------------------------------------------------------------------
# 1:1 verification on pairs (LFW View 2, deepface master.csv)
# --------------------------------------------------------------------------------------------


class Pair(NamedTuple):
    """Two images, as paths relative to the data set root, and whether they show one person."""

    a: str
    b: str
    same: bool


def lfw_image(name: str, number: int) -> str:
    """Relative path of an LFW image: name/name_0001.jpg."""
    return f"{name}/{name}_{number:04d}.jpg"


def read_lfw_pairs(pairs_file: Path) -> list[list[Pair]]:
    """Read an LFW pairs file into folds.

    View 2 (`pairs.txt`) starts with "10 300": 10 folds, each 300 same-person lines "name i j"
    then 300 different-person lines "name1 i name2 j". A View 1 file (`pairsDevTest.txt`)
    starts with a single count and is read as one fold.
    """
    try:
        lines = [line.split() for line in Path(pairs_file).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ApplianceError(f"{pairs_file}: cannot read the pairs file ({exc.strerror}).") from exc
    if not lines:
        raise ApplianceError(f"{pairs_file}: empty pairs file; expected a header such as '10 300'.")
    try:
        header = [int(x) for x in lines[0]]
    except ValueError:
        header = []
    if len(header) not in (1, 2):
        raise ApplianceError(f"{pairs_file}:1: expected a header '<folds> <pairs>' such as '10 300'.")
    n_folds, per_class = (1, header[0]) if len(header) == 1 else header
    body = lines[1:]
    if len(body) != n_folds * 2 * per_class:
        raise ApplianceError(
            f"{pairs_file}: header promises {n_folds} x {2 * per_class} pairs but the file has {len(body)}."
        )
    pairs: list[Pair] = []
    for lineno, fields in enumerate(body, start=2):
        try:
            if len(fields) == 3:
                pairs.append(
                    Pair(lfw_image(fields[0], int(fields[1])), lfw_image(fields[0], int(fields[2])), True)
                )
            elif len(fields) == 4:
                pairs.append(
                    Pair(lfw_image(fields[0], int(fields[1])), lfw_image(fields[2], int(fields[3])), False)
                )
            else:
                raise ValueError
        except ValueError:
            raise ApplianceError(
                f"{pairs_file}:{lineno}: expected 'name i j' or 'name1 i name2 j', got {' '.join(fields)!r}."
            ) from None
    size = 2 * per_class
    return [pairs[k * size : (k + 1) * size] for k in range(n_folds)]


def read_csv_pairs(csv_file: Path, n_folds: int = 10) -> list[list[Pair]]:
    """Read a deepface-style pairs list (`file_x,file_y,Decision` with Yes/No) into folds.

    The file has no folds of its own, so same and different pairs are dealt round-robin, each
    class separately, into `n_folds` folds: every fold gets its share of the (few) same pairs.
    """
    try:
        with Path(csv_file).open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise ApplianceError(f"{csv_file}: cannot read the pairs file ({exc.strerror}).") from exc
    folds: list[list[Pair]] = [[] for _ in range(n_folds)]
    dealt = {True: 0, False: 0}
    for lineno, row in enumerate(rows, start=2):
        decision = (row.get("Decision") or "").strip().lower()
        if decision not in ("yes", "no") or not row.get("file_x") or not row.get("file_y"):
            raise ApplianceError(f"{csv_file}:{lineno}: expected 'file_x,file_y,Decision' with Yes or No.")
        same = decision == "yes"
        folds[dealt[same] % n_folds].append(Pair(row["file_x"], row["file_y"], same))
        dealt[same] += 1
    return [fold for fold in folds if fold]


def pair_scores(embeddings: np.ndarray, has_face: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Cosine similarity of image ia[k] with image ib[k]; -inf where either has no face."""
    scores = np.einsum("ij,ij->i", embeddings[ia], embeddings[ib]).astype(np.float64)
    scores[~(has_face[ia] & has_face[ib])] = -np.inf
    return scores


def eval_pairs(
    root: Path,
    folds: Sequence[Sequence[Pair]],
    detector: FaceDetector,
    embedder: FaceEmbedder,
    progress: ProgressFn | None = None,
    pick: FacePicker = face_nearest_centre,
) -> dict:
    """1:1 verification on pairs of images grouped in folds.

    Every distinct image is detected and embedded once. An image without a face gives its pairs
    the score -inf, so they count as "different" at every threshold (a miss for a same pair) and
    it is counted in `no_face`.

    Returns a dict:
        accuracy, accuracy_std: k-fold accuracy, each fold's threshold fitted on the others (with
            one fold, fitted on itself, which is optimistic; std is then nan).
        fold_accuracies, fold_thresholds: per fold.
        threshold: the accuracy-maximising threshold fitted on all pairs.
        eer; tar_at_far_1e-3, threshold_at_far_1e-3; tar_at_far_1e-2, threshold_at_far_1e-2.
        pairs, same_pairs, images, no_face (images), no_face_pairs, model_id.
        roc: {"far", "tar", "thresholds"} lists for `appliance.evaluation.plot.roc_png`.
    """
    root = Path(root)
    flat = [pair for fold in folds for pair in fold]
    fold_ids = np.array([k for k, fold in enumerate(folds) for _ in fold], dtype=np.int64)
    names = sorted({p.a for p in flat} | {p.b for p in flat})
    index = {name: i for i, name in enumerate(names)}
    embeddings, has_face = embed_images([root / n for n in names], detector, embedder, pick, progress)
    ia = np.array([index[p.a] for p in flat], dtype=np.int64)
    ib = np.array([index[p.b] for p in flat], dtype=np.int64)
    labels = np.array([p.same for p in flat], dtype=bool)
    scores = pair_scores(embeddings, has_face, ia, ib)

    if len(folds) >= 2:
        kfold = metrics.kfold_accuracy(scores, labels, fold_ids)
        fold_acc, fold_thr = kfold.accuracies.tolist(), kfold.thresholds.tolist()
        accuracy, accuracy_std = kfold.mean, kfold.std
    else:
        best = metrics.best_threshold(scores, labels)
        fold_acc, fold_thr = [best.accuracy], [best.threshold]
        accuracy, accuracy_std = best.accuracy, math.nan
    far, tar, thresholds = metrics.roc(scores, labels)
    at3 = metrics.tar_at_far(scores, labels, 1e-3)
    at2 = metrics.tar_at_far(scores, labels, 1e-2)
    return {
        "accuracy": accuracy,
        "accuracy_std": accuracy_std,
        "fold_accuracies": fold_acc,
        "fold_thresholds": fold_thr,
        "threshold": metrics.best_threshold(scores, labels).threshold,
        "eer": metrics.eer(scores, labels),
        "tar_at_far_1e-3": at3.tar,
        "threshold_at_far_1e-3": at3.threshold,
        "tar_at_far_1e-2": at2.tar,
        "threshold_at_far_1e-2": at2.threshold,
        "pairs": len(flat),
        "same_pairs": int(labels.sum()),
        "images": len(names),
        "no_face": int((~has_face).sum()),
        "no_face_pairs": int(np.isneginf(scores).sum()),
        "model_id": getattr(embedder, "model_id", ""),
        "roc": {"far": far.tolist(), "tar": tar.tolist(), "thresholds": thresholds.tolist()},
    }


def eval_lfw(
    root: Path,
    pairs_file: Path,
    detector: FaceDetector,
    embedder: FaceEmbedder,
    progress: ProgressFn | None = None,
) -> dict:
    """LFW View 2: 10-fold accuracy, EER and TAR at FAR 1e-3 over the 6,000 pairs of `pairs_file`.

    `root` holds name/name_0001.jpg. The face used is the detection nearest the image centre,
    since LFW's 250x250 crops are centred on the labelled person. See `eval_pairs` for the keys.
    """
    return eval_pairs(root, read_lfw_pairs(pairs_file), detector, embedder, progress, face_nearest_centre)


def eval_csv_pairs(
    root: Path,
    csv_file: Path,
    detector: FaceDetector,
    embedder: FaceEmbedder,
    progress: ProgressFn | None = None,
    n_folds: int = 10,
) -> dict:
    """Verification on a deepface-style `master.csv` (files relative to `root`); the largest face
    in each photo is used. See `eval_pairs` for the keys."""
    return eval_pairs(root, read_csv_pairs(csv_file, n_folds), detector, embedder, progress, largest_face)


# --------------------------------------------------------------------------------------------
# Door: open-set 1:N identification against a gallery
# --------------------------------------------------------------------------------------------


def list_identities(root: Path) -> dict[str, list[Path]]:
    """Map person -> image files (sorted by file name) for every sub-folder of `root` with images."""
    root = Path(root)
    if not root.is_dir():
        raise ApplianceError(f"{root}: not a folder; expected one sub-folder of images per person.")
    people: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(
            (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: p.name,
        )
        if images:
            people[folder.name] = images
    return people


@dataclass(frozen=True)
class DoorSplit:
    """Who is enrolled with which images, and which images probe the door.

    Attributes:
        gallery: person -> enrolment images (the first K by file name).
        genuine: (person, image) probes of enrolled people: their other images.
        impostors: (person, image) probes of people not enrolled: all their images.
    """

    gallery: dict[str, list[Path]]
    genuine: list[tuple[str, Path]]
    impostors: list[tuple[str, Path]]


def split_gallery(people: dict[str, list[Path]], enrol_images: int = 1) -> DoorSplit:
    """Enrol the first `enrol_images` images of everyone with more than that many; the rest probe.

    A person with `enrol_images` images or fewer is not enrolled: every image of theirs is an
    impostor probe. So with K=1, everyone with two or more images is enrolled from their first.
    """
    if enrol_images < 1:
        raise ValueError(f"enrol_images = {enrol_images}: must be 1 or more")
    gallery: dict[str, list[Path]] = {}
    genuine: list[tuple[str, Path]] = []
    impostors: list[tuple[str, Path]] = []
    for person, images in sorted(people.items()):
        if len(images) > enrol_images:
            gallery[person] = images[:enrol_images]
            genuine.extend((person, p) for p in images[enrol_images:])
        else:
            impostors.extend((person, p) for p in images)
    return DoorSplit(gallery, genuine, impostors)


def identity_scores(
    probes: np.ndarray, templates: np.ndarray, owners: np.ndarray, n_identities: int, chunk: int = 2048
) -> np.ndarray:
    """Score of each probe against each identity: the max cosine over that identity's templates.

    Args:
        probes: (P, D) unit vectors.
        templates: (T, D) unit vectors, grouped so that each identity's templates are contiguous.
        owners: (T,) identity index 0..n_identities-1 of each template, non-decreasing, every
            identity present at least once.
        chunk: probes per matrix product, to bound memory (chunk x T floats) on a Pi.

    Returns:
        (P, n_identities) float64.
    """
    owners = np.asarray(owners)
    if owners.size and (np.any(np.diff(owners) < 0) or np.unique(owners).size != n_identities):
        raise ValueError("owners must be non-decreasing and cover every identity")
    starts = np.flatnonzero(np.concatenate(([True], owners[1:] != owners[:-1]))) if owners.size else []
    out = np.full((probes.shape[0], n_identities), -np.inf)
    for lo in range(0, probes.shape[0], chunk):
        sims = probes[lo : lo + chunk] @ templates.T
        if n_identities:
            out[lo : lo + chunk] = np.maximum.reduceat(sims, starts, axis=1)
    return out


OPERATING_GRID = tuple(round(0.88 + 0.01 * i, 2) for i in range(10))
"""Cosine thresholds at which eval_door reports FPIR and FNIR (0.88 ... 0.97)."""


def eval_door(
    root: Path,
    detector: FaceDetector,
    embedder: FaceEmbedder,
    enrol_images: int = 1,
    progress: ProgressFn | None = None,
    pick: FacePicker = largest_face,
    threshold: float | None = None,
) -> dict:
    """How the door would do on `root` (one sub-folder of images per person, e.g. LFW).

    The gallery, genuine and impostor probes come from `split_gallery`. Every image is embedded
    once; a person's score is the max cosine over their templates.

    Faces not found: a gallery image without a face gives that person one template fewer. A person
    left with no template is not enrolled (counted in `dropped_identities`), and their probe images
    become impostor probes, since the door would now treat them as strangers. A probe image without
    a face is still a probe: a genuine one is a miss (the door does not open), an impostor one is
    rejected. All of these are counted in `no_face`.

    Args:
        threshold: the configured match threshold, if any; its FNIR and FPIR are reported too.

    Returns a dict: rank1, fnir_at_fpir_1e-2, threshold_at_fpir_1e-2, fnir_at_fpir_1e-3,
    threshold_at_fpir_1e-3, gallery_size (people enrolled), templates, genuine_probes,
    impostor_probes, no_face, no_face_gallery, dropped_identities, model_id; plus fnir_at_threshold
    and fpir_at_threshold when `threshold` is given.
    """
    split = split_gallery(list_identities(root), enrol_images)
    if not split.gallery:
        raise ApplianceError(
            f"{root}: no person has more than {enrol_images} image(s), so no one can be enrolled and "
            "probed; give a folder with one sub-folder of images per person (e.g. LFW's)."
        )
    gallery_items = [(person, p) for person, images in split.gallery.items() for p in images]
    probe_items = split.genuine + split.impostors
    paths = [p for _, p in gallery_items] + [p for _, p in probe_items]
    embeddings, has_face = embed_images(paths, detector, embedder, pick, progress)
    g_emb, g_face = embeddings[: len(gallery_items)], has_face[: len(gallery_items)]
    p_emb, p_face = embeddings[len(gallery_items) :], has_face[len(gallery_items) :]

    enrolled = sorted({person for (person, _), ok in zip(gallery_items, g_face, strict=True) if ok})
    ident = {person: i for i, person in enumerate(enrolled)}
    # gallery_items are grouped by person in sorted order, so owners come out non-decreasing.
    t_rows = [i for i, ((person, _), ok) in enumerate(zip(gallery_items, g_face, strict=True)) if ok]
    owners = np.array([ident[gallery_items[i][0]] for i in t_rows], dtype=np.int64)
    per_id = identity_scores(p_emb, g_emb[t_rows], owners, len(enrolled))
    per_id[~p_face] = -np.inf

    # Index of each probe's own identity; -1 for impostors (including people dropped above).
    own_id = np.array([ident.get(person, -1) for person, _ in probe_items], dtype=np.int64)
    genuine = own_id >= 0
    rows = np.flatnonzero(genuine)
    own = per_id[rows, own_id[rows]]
    rivals = per_id[rows].copy()
    rivals[np.arange(rows.size), own_id[rows]] = -np.inf
    other = rivals.max(axis=1) if len(enrolled) else np.full(rows.size, -np.inf)
    best = per_id[~genuine].max(axis=1) if len(enrolled) else np.full(int((~genuine).sum()), -np.inf)

    at2 = metrics.fnir_at_fpir(own, other, best, 1e-2)
    at3 = metrics.fnir_at_fpir(own, other, best, 1e-3)
    result = {
        "rank1": metrics.rank1_rate(own, other),
        "fnir_at_fpir_1e-2": at2.fnir,
        "threshold_at_fpir_1e-2": at2.threshold,
        "fnir_at_fpir_1e-3": at3.fnir,
        "threshold_at_fpir_1e-3": at3.threshold,
        "gallery_size": len(enrolled),
        "templates": len(t_rows),
        "genuine_probes": int(own.size),
        "impostor_probes": int(best.size),
        "no_face": int((~has_face).sum()),
        "no_face_gallery": int((~g_face).sum()),
        "dropped_identities": len(split.gallery) - len(enrolled),
        "model_id": getattr(embedder, "model_id", ""),
    }
    if threshold is not None:
        result["fnir_at_threshold"] = metrics.fnir(own, other, threshold)
        result["fpir_at_threshold"] = metrics.fpir(best, threshold)
    # A grid of thresholds, so a threshold for another gallery size or risk can be read off one run.
    result["operating_points"] = [
        {"threshold": t, "fpir": metrics.fpir(best, t), "fnir": metrics.fnir(own, other, t)}
        for t in OPERATING_GRID
    ]
    return result


# --------------------------------------------------------------------------------------------
# Detection: WIDER FACE annotations
# --------------------------------------------------------------------------------------------


class WiderImage(NamedTuple):
    """One image's ground truth from a WIDER FACE annotation file."""

    name: str
    """Path relative to the images folder, e.g. 1--Handshaking/1_Handshaking_Handshaking_1_105.jpg."""
    boxes: np.ndarray
    """(G, 4) x1, y1, x2, y2 pixels."""
    invalid: np.ndarray
    """(G,) True for boxes flagged invalid, and for empty boxes (zero width or height)."""


def read_wider_annotations(path: Path) -> list[WiderImage]:
    """Parse a WIDER FACE `*_bbx_gt.txt` file.

    Per image: a file name line, a count line, then one line per face:
    "x1 y1 w h blur expression illumination invalid occlusion pose". A count of 0 is followed by
    one line of zeros, which is skipped.
    """
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines()]
    except OSError as exc:
        raise ApplianceError(f"{path}: cannot read the annotation file ({exc.strerror}).") from exc
    images: list[WiderImage] = []
    i = 0
    while i < len(lines):
        if not lines[i]:
            i += 1
            continue
        name = lines[i]
        try:
            count = int(lines[i + 1])
            rows = [[float(v) for v in lines[i + 2 + k].split()[:8]] for k in range(max(count, 1))]
            if any(len(r) < 8 for r in rows):
                raise ValueError
        except (IndexError, ValueError):
            raise ApplianceError(
                f"{path}:{i + 1}: bad record for {name!r}; expected a count line then "
                "'x1 y1 w h blur expression illumination invalid occlusion pose' lines."
            ) from None
        data = np.array(rows[:count], dtype=np.float64).reshape(-1, 8)
        boxes = np.column_stack([data[:, 0], data[:, 1], data[:, 0] + data[:, 2], data[:, 1] + data[:, 3]])
        invalid = (data[:, 7] != 0) | (data[:, 2] <= 0) | (data[:, 3] <= 0)
        images.append(WiderImage(name, boxes, invalid))
        i += 2 + max(count, 1)
    return images


def eval_detect(
    images_dir: Path,
    annotations_file: Path,
    detector: FaceDetector,
    min_face_px: float = 40.0,
    progress: ProgressFn | None = None,
) -> dict:
    """Detection AP and recall at IoU 0.5 on WIDER-format ground truth.

    Two variants: all valid faces count (ap50, recall50), and door-size faces only (ap50_door,
    recall50_door), where faces under `min_face_px` pixels high become ignore regions and a
    detection under that height that matches no counted face is ignored too. Boxes flagged
    invalid are ignore regions in both.

    Returns a dict: ap50, recall50, faces, ap50_door, recall50_door, faces_door, detections, images.
    """
    images_dir = Path(images_dir)
    records = read_wider_annotations(annotations_file)
    if not records:
        raise ApplianceError(
            f"{annotations_file}: no images listed; give a WIDER FACE-format box file "
            "(e.g. wider_face_val_bbx_gt.txt)."
        )
    progress = progress or _no_progress
    everything: list[metrics.ImageDetections] = []
    door: list[metrics.ImageDetections] = []
    n_dets = 0
    for k, rec in enumerate(records):
        faces = detector.detect(read_rgb(images_dir / rec.name))
        n_dets += len(faces)
        det_boxes = np.array([f.box for f in faces], dtype=np.float64).reshape(-1, 4)
        det_scores = np.array([f.score for f in faces], dtype=np.float64)
        everything.append(metrics.ImageDetections(rec.boxes, rec.invalid, det_boxes, det_scores))
        small_gt = (rec.boxes[:, 3] - rec.boxes[:, 1]) < min_face_px
        small_det = (det_boxes[:, 3] - det_boxes[:, 1]) < min_face_px
        door.append(
            metrics.ImageDetections(rec.boxes, rec.invalid | small_gt, det_boxes, det_scores, small_det)
        )
        progress(k + 1, len(records))
    all_score = metrics.average_precision(everything, 0.5)
    door_score = metrics.average_precision(door, 0.5)
    return {
        "ap50": all_score.ap,
        "recall50": all_score.recall,
        "faces": all_score.faces,
        "ap50_door": door_score.ap,
        "recall50_door": door_score.recall,
        "faces_door": door_score.faces,
        "detections": n_dets,
        "images": len(records),
    }
