"""Evaluation runners.

Two kinds of test here:

- Bookkeeping: the runners' own logic (pair parsing, one read per image, face choice, no-face
  handling, gallery/probe split, WIDER parsing) on tiny synthetic data sets, driven by
  `ColourPatchDetector` and `ColourEmbedder`. Those two are stand-ins defined here, not models:
  a "face" is a coloured square on black and its "embedding" is its colour, so every score is a
  cosine between colours that the comments work out.
- End to end: the real MTCNN detector and TFLite embedder on a few real identities from
  shared/data, skipped with a reason when the models or the data are absent.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from shared_data import DATA

from appliance.domain import Face
from appliance.errors import ApplianceError, ImageError
from appliance.evaluation import accuracy, plot
from appliance.evaluation.accuracy import (
    Pair,
    TextProgress,
    eval_detect,
    eval_door,
    eval_lfw,
    face_nearest_centre,
    identity_scores,
    largest_face,
    read_csv_pairs,
    read_lfw_pairs,
    read_wider_annotations,
    split_gallery,
)

# --------------------------------------------------------------------------------------------
# Stand-ins for the detector and embedder (test the runners' bookkeeping, not a model)
# --------------------------------------------------------------------------------------------


class ColourPatchDetector:
    """Finds coloured rectangles on a black image. Listed top-left first (so the first "face"
    is not the central one), all with score 0.9. Counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[Face]:
        self.calls += 1
        mask = (image.max(axis=2) > 60).astype(np.uint8)  # above JPEG ringing on black
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
        faces = []
        for x, y, w, h, area in stats[1:]:
            if area < 16:
                continue
            box = (float(x), float(y), float(x + w), float(y + h))
            faces.append(Face(box, 0.9, np.zeros((5, 2), np.float32)))
        return sorted(faces, key=lambda f: f.box[0] + f.box[1])


class ColourEmbedder:
    """The "embedding" of a face is its mean colour as a unit vector (padded to 128-d)."""

    model_id = "test-colour"

    def embed(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        out = np.zeros((len(faces), 128), np.float32)
        for i, face in enumerate(faces):
            x1, y1, x2, y2 = (int(v) for v in face.box)
            colour = image[y1:y2, x1:x2].reshape(-1, 3).mean(axis=0)
            out[i, :3] = colour / np.linalg.norm(colour)
        return out


def write_image(path: Path, patches: list[tuple[tuple[int, int, int, int], tuple[int, int, int]]], size=120):
    """Black RGB image with filled rectangles (x1, y1, x2, y2) of the given RGB colours."""
    img = np.zeros((size, size, 3), np.uint8)
    for (x1, y1, x2, y2), rgb in patches:
        img[y1:y2, x1:x2] = rgb
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


CENTRE = (40, 40, 80, 80)
CORNER = (2, 2, 22, 22)
RED, GREEN, BLUE = (250, 0, 0), (0, 250, 0), (0, 0, 250)


# --------------------------------------------------------------------------------------------
# Face choice and progress
# --------------------------------------------------------------------------------------------


def face(box) -> Face:
    return Face(tuple(float(v) for v in box), 0.9, np.zeros((5, 2), np.float32))


def test_face_nearest_centre_and_largest_face():
    corner_big, centre_small = face((0, 0, 100, 100)), face((110, 110, 140, 140))
    assert face_nearest_centre([corner_big, centre_small], (250, 250, 3)) is centre_small
    assert largest_face([corner_big, centre_small], (250, 250, 3)) is corner_big
    assert face_nearest_centre([], (250, 250, 3)) is None and largest_face([], (250, 250, 3)) is None


def test_text_progress_shows_count_rate_eta_and_ends_the_line():
    times = iter([0.0, 0.1, 2.0, 4.0])
    out = io.StringIO()
    progress = TextProgress("lfw", stream=out, clock=lambda: next(times), interval=0.5)
    progress(1, 4)  # first call draws
    progress(2, 4)  # 0.1 s later: throttled
    progress(3, 4)
    assert "1/4" in out.getvalue() and "2/4" not in out.getvalue()
    # 2 more images in the 2 s since the first call: 1.0/s; 1 left -> ETA 0:01.
    assert "3/4" in out.getvalue() and "1.0/s" in out.getvalue() and "ETA 0:01" in out.getvalue()
    progress(4, 4)
    assert out.getvalue().endswith("\n") and "4/4 100%" in out.getvalue()


# --------------------------------------------------------------------------------------------
# LFW pairs
# --------------------------------------------------------------------------------------------


def test_read_lfw_pairs_small_file(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text("2\t1\nAl\t1\t2\nAl\t1\tBo\t3\nBo\t2\t3\nBo\t1\tAl\t2\n")
    folds = read_lfw_pairs(f)
    assert folds == [
        [Pair("Al/Al_0001.jpg", "Al/Al_0002.jpg", True), Pair("Al/Al_0001.jpg", "Bo/Bo_0003.jpg", False)],
        [Pair("Bo/Bo_0002.jpg", "Bo/Bo_0003.jpg", True), Pair("Bo/Bo_0001.jpg", "Al/Al_0002.jpg", False)],
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("ten 300\n", "header"),
        ("1 1\nAl 1 2\n", "promises 1 x 2 pairs but the file has 1"),
        ("1 1\nAl 1 2\nAl x Bo 1\n", ":3: expected 'name i j'"),
    ],
)
def test_read_lfw_pairs_reports_what_is_wrong_and_where(tmp_path, text, message):
    f = tmp_path / "pairs.txt"
    f.write_text(text)
    with pytest.raises(ApplianceError, match=message):
        read_lfw_pairs(f)


def test_read_real_lfw_pairs_view2():
    pairs_file = DATA / "lfw" / "pairs.txt"
    if not pairs_file.is_file():
        pytest.skip(f"{pairs_file} is absent (shared developer data not mounted)")
    folds = read_lfw_pairs(pairs_file)
    assert len(folds) == 10 and all(len(fold) == 600 for fold in folds)
    assert all(
        sum(p.same for p in fold[:300]) == 300 and not any(p.same for p in fold[300:]) for fold in folds
    )
    assert folds[0][0] == Pair(
        "Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg", True
    )


def make_lfw(root: Path) -> Path:
    """A tiny LFW: Al (red, image 3 has no face), Bo (green; image 1 has a red distractor in the
    corner, listed first by the detector), Cy (blue). Two folds of 2 same + 2 different pairs."""
    write_image(root / "Al" / "Al_0001.jpg", [(CENTRE, RED)])
    write_image(root / "Al" / "Al_0002.jpg", [(CENTRE, (240, 20, 0))])
    write_image(root / "Al" / "Al_0003.jpg", [])
    write_image(root / "Bo" / "Bo_0001.jpg", [(CORNER, RED), (CENTRE, GREEN)])
    write_image(root / "Bo" / "Bo_0002.jpg", [(CENTRE, (10, 240, 20))])
    write_image(root / "Bo" / "Bo_0003.jpg", [(CENTRE, (0, 230, 10))])
    write_image(root / "Cy" / "Cy_0001.jpg", [(CENTRE, BLUE)])
    pairs = root / "pairs.txt"
    pairs.write_text(
        "2\t2\n"
        "Al\t1\t2\nBo\t1\t2\nAl\t1\tBo\t1\nAl\t2\tCy\t1\n"  # fold 1: every pair separable
        "Al\t1\t3\nBo\t2\t3\nBo\t1\tCy\t1\nAl\t3\tCy\t1\n"  # fold 2: Al_0003 has no face
    )
    return pairs


def test_eval_lfw_bookkeeping_with_stand_in_models(tmp_path):
    pairs = make_lfw(tmp_path)
    detector = ColourPatchDetector()
    result = eval_lfw(tmp_path, pairs, detector, ColourEmbedder())
    assert detector.calls == 7  # each distinct image read and detected once, not once per pair
    assert result["pairs"] == 8 and result["same_pairs"] == 4 and result["images"] == 7
    assert result["no_face"] == 1 and result["no_face_pairs"] == 2
    # Same-person colours score ~1, different ~0. Fold 1's threshold comes from fold 2 (~0.5) and
    # gets all 4 right. Fold 2's (from fold 1, ~0.5) misses only the Al 1-3 pair: Al_0003 has no
    # face, so that same pair counts as "different". Had the corner face of Bo_0001 been used,
    # Bo 1-2 would fail and Al 1 - Bo 1 would pass as the same person.
    assert result["fold_accuracies"] == [1.0, 0.75]
    assert result["accuracy"] == pytest.approx(0.875) and result["accuracy_std"] == pytest.approx(0.125)
    assert 0.1 < result["threshold"] < 0.9
    # No impostor may pass at FAR 1e-3; every genuine pair with faces does: 3 of 4.
    assert result["tar_at_far_1e-3"] == pytest.approx(0.75)
    assert result["eer"] == pytest.approx(0.25)
    assert result["model_id"] == "test-colour"
    assert len(result["roc"]["far"]) == len(result["roc"]["tar"]) == len(result["roc"]["thresholds"])
    json.dumps(result)  # plain Python numbers, so `facegate eval --json` can print it


def test_eval_lfw_missing_image_is_an_image_error(tmp_path):
    pairs = make_lfw(tmp_path)
    (tmp_path / "Cy" / "Cy_0001.jpg").unlink()
    with pytest.raises(ImageError, match="Cy_0001.jpg"):
        eval_lfw(tmp_path, pairs, ColourPatchDetector(), ColourEmbedder())


def test_read_csv_pairs_spreads_same_pairs_over_folds(tmp_path):
    f = tmp_path / "master.csv"
    rows = [f"s{i}a.jpg,s{i}b.jpg,Yes" for i in range(4)] + [f"d{i}a.jpg,d{i}b.jpg,No" for i in range(6)]
    f.write_text("file_x,file_y,Decision\n" + "\n".join(rows) + "\n")
    folds = read_csv_pairs(f, n_folds=2)
    assert [sum(p.same for p in fold) for fold in folds] == [2, 2]
    assert [len(fold) for fold in folds] == [5, 5]
    f.write_text("file_x,file_y,Decision\na.jpg,b.jpg,Maybe\n")
    with pytest.raises(ApplianceError, match=":2:"):
        read_csv_pairs(f)


def test_read_real_deepface_pairs():
    master = DATA / "identities" / "deepface" / "master.csv"
    if not master.is_file():
        pytest.skip(f"{master} is absent (shared developer data not mounted)")
    folds = read_csv_pairs(master)
    assert sum(len(f) for f in folds) == 300 and sum(p.same for f in folds for p in f) == 38
    assert all(3 <= sum(p.same for p in f) <= 4 for f in folds)
    assert all((master.parent / p.a).is_file() and (master.parent / p.b).is_file() for f in folds for p in f)


# --------------------------------------------------------------------------------------------
# Door
# --------------------------------------------------------------------------------------------


def test_split_gallery_enrols_people_with_more_than_k_images():
    people = {
        "ann": [Path("a1"), Path("a2"), Path("a3")],
        "bob": [Path("b1"), Path("b2")],
        "cat": [Path("c1")],
    }
    one = split_gallery(people, 1)
    assert one.gallery == {"ann": [Path("a1")], "bob": [Path("b1")]}
    assert one.genuine == [("ann", Path("a2")), ("ann", Path("a3")), ("bob", Path("b2"))]
    assert one.impostors == [("cat", Path("c1"))]
    two = split_gallery(people, 2)
    assert two.gallery == {"ann": [Path("a1"), Path("a2")]}
    assert two.genuine == [("ann", Path("a3"))]
    assert two.impostors == [("bob", Path("b1")), ("bob", Path("b2")), ("cat", Path("c1"))]
    with pytest.raises(ValueError):
        split_gallery(people, 0)


def test_identity_scores_is_the_max_over_each_identitys_templates():
    rng = np.random.default_rng(1)
    probes = rng.normal(size=(7, 4))
    templates = rng.normal(size=(5, 4))
    owners = np.array([0, 0, 1, 2, 2])
    got = identity_scores(probes, templates, owners, 3, chunk=3)  # chunk boundary inside the probes
    sims = probes @ templates.T
    want = np.stack([sims[:, :2].max(1), sims[:, 2], sims[:, 3:].max(1)], axis=1)
    np.testing.assert_allclose(got, want)
    with pytest.raises(ValueError):
        identity_scores(probes, templates, np.array([1, 0, 1, 2, 2]), 3)


def make_door(root: Path) -> None:
    """alice (red x3, a3 drifts to magenta), bob (green, b3 looks red), cy (blue, 1 image),
    dee (orange-red, 1 image: an impostor close to alice), erin (gallery image has no face),
    fay (cyan; her probe has no face)."""
    items = {
        "alice": [RED, (250, 5, 0), (230, 0, 100)],
        "bob": [GREEN, (10, 250, 0), (255, 30, 0)],
        "cy": [BLUE],
        "dee": [(255, 80, 0)],
        "erin": [None, (255, 255, 0)],
        "fay": [(0, 255, 255), None],
    }
    for person, colours in items.items():
        for k, rgb in enumerate(colours, start=1):
            write_image(root / person / f"{person}{k}.png", [] if rgb is None else [(CENTRE, rgb)])


def test_eval_door_bookkeeping_with_stand_in_models(tmp_path):
    make_door(tmp_path)
    detector = ColourPatchDetector()
    result = eval_door(tmp_path, detector, ColourEmbedder(), enrol_images=1, threshold=0.9)
    assert detector.calls == 12  # every image once
    # erin's only gallery image has no face: she is not enrolled and erin2 becomes an impostor.
    assert result["gallery_size"] == 3 and result["templates"] == 3 and result["dropped_identities"] == 1
    assert result["genuine_probes"] == 5  # alice2, alice3, bob2, bob3, fay2
    assert result["impostor_probes"] == 3  # cy1, dee1, erin2
    assert result["no_face"] == 2 and result["no_face_gallery"] == 1
    # alice2, alice3 (cos 0.92) and bob2 are rank-1 hits; bob3 is closer to alice; fay2 has no face.
    assert result["rank1"] == pytest.approx(3 / 5)
    # Best impostor: dee vs alice, cos(255,80,0 ; 250,0,0) = 0.954. With 3 impostors neither
    # budget allows one, so the threshold sits just above 0.954 and alice3 (0.917) fails too.
    dee = 255 / math.hypot(255, 80)
    assert result["threshold_at_fpir_1e-2"] == pytest.approx(dee, abs=1e-6)
    assert result["threshold_at_fpir_1e-2"] > dee - 1e-6
    assert result["fnir_at_fpir_1e-2"] == pytest.approx(3 / 5)
    assert result["fnir_at_fpir_1e-3"] == pytest.approx(3 / 5)
    # At the configured 0.9: alice3 is granted, dee gets in as alice.
    assert result["fnir_at_threshold"] == pytest.approx(2 / 5)
    assert result["fpir_at_threshold"] == pytest.approx(1 / 3)
    json.dumps(result)


def test_eval_door_with_nobody_enrollable_is_an_error_not_nan_rates(tmp_path):
    write_image(tmp_path / "cy" / "cy1.png", [(CENTRE, BLUE)])
    write_image(tmp_path / "dee" / "dee1.png", [(CENTRE, RED)])
    with pytest.raises(ApplianceError, match="no person has more than 1 image"):
        eval_door(tmp_path, ColourPatchDetector(), ColourEmbedder())


def test_eval_door_needs_a_folder(tmp_path):
    with pytest.raises(ApplianceError, match="not a folder"):
        eval_door(tmp_path / "missing", ColourPatchDetector(), ColourEmbedder())


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


WIDER_TEXT = """0--T/a.png
3
10 10 50 60 0 0 0 0 0 0
100 20 30 30 0 0 0 0 0 0
150 150 40 45 0 0 0 1 0 0
0--T/b.png
1
20 20 60 70 1 0 0 0 0 0
0--T/c.png
0
0 0 0 0 0 0 0 0 0 0
"""


def test_read_wider_annotations(tmp_path):
    f = tmp_path / "gt.txt"
    f.write_text(WIDER_TEXT)
    images = read_wider_annotations(f)
    assert [im.name for im in images] == ["0--T/a.png", "0--T/b.png", "0--T/c.png"]
    np.testing.assert_array_equal(images[0].boxes[0], [10, 10, 60, 70])  # x, y, w, h -> x1, y1, x2, y2
    assert images[0].invalid.tolist() == [False, False, True]
    assert images[2].boxes.shape == (0, 4)  # the zeros line after a 0 count is not a face
    f.write_text("0--T/a.png\n2\n10 10 50 60 0 0 0 0 0 0\n")
    with pytest.raises(ApplianceError, match="bad record"):
        read_wider_annotations(f)


def test_read_real_wider_subset():
    gt = DATA / "detection" / "widerface_train_subset" / "wider_face_train_bbx_gt_subset.txt"
    if not gt.is_file():
        pytest.skip(f"{gt} is absent (shared developer data not mounted)")
    images = read_wider_annotations(gt)
    assert len(images) == 40 and sum(len(im.boxes) for im in images) == 98
    assert not any(im.invalid.any() for im in images)


def test_eval_detect_bookkeeping_with_stand_in_detector(tmp_path):
    (tmp_path / "gt.txt").write_text(WIDER_TEXT)
    grey = (200, 200, 200)
    # a: both valid faces drawn (the 30 px one is small); the invalid one is not drawn.
    write_image(tmp_path / "0--T" / "a.png", [((10, 10, 60, 70), grey), ((100, 20, 130, 50), grey)], 220)
    # b: the face is missed, and a 50 px non-face is found instead.
    write_image(tmp_path / "0--T" / "b.png", [((120, 120, 170, 170), grey)], 220)
    # c: no face, one 20 px false detection.
    write_image(tmp_path / "0--T" / "c.png", [((10, 10, 30, 30), grey)], 220)
    result = eval_detect(tmp_path, tmp_path / "gt.txt", ColourPatchDetector(), min_face_px=40)
    assert result["images"] == 3 and result["detections"] == 4
    # All faces: 3 count, all 4 detections tie: one point, recall 2/3 at precision 2/4.
    assert result["faces"] == 3
    assert result["recall50"] == pytest.approx(2 / 3) and result["ap50"] == pytest.approx(1 / 3)
    # Door size: the 30 px face and the 20 px false detection are ignored; 1 TP, 1 FP, 2 faces.
    assert result["faces_door"] == 2
    assert result["recall50_door"] == pytest.approx(1 / 2) and result["ap50_door"] == pytest.approx(1 / 4)


# --------------------------------------------------------------------------------------------
# ROC plot
# --------------------------------------------------------------------------------------------


def test_far_axis_spans_whole_decades_down_to_the_smallest_far():
    assert plot.far_axis_range(np.array([0, 3e-4, 0.5, 1])) == (-4, 0)
    assert plot.far_axis_range(np.array([0.0, 0.2, 1.0])) == (-3, 0)  # 1e-3 is always shown
    assert plot.far_axis_range(np.array([1e-9, 1.0])) == (-6, 0)  # floored at 1e-6


def test_far_axis_is_logarithmic():
    xs = plot.to_pixels(np.array([0.0, 1e-3, 1e-2, 1e-1, 1.0]), np.zeros(5), (-3, 0))[:, 0]
    assert xs[0] == xs[1] == plot.MARGIN_LEFT  # FAR 0 sits on the left edge
    assert np.diff(xs[1:]) == pytest.approx([np.diff(xs[1:])[0]] * 3)  # equal space per decade


def test_roc_png_draws_the_curve_where_the_axes_say(tmp_path):
    far, tar = np.array([0, 1e-2, 1e-1, 1]), np.array([0, 0.55, 0.55, 1])
    out = plot.roc_png(far, tar, tmp_path / "roc.png", "test ROC", points={"FAR 1e-2": (1e-2, 0.55)})
    img = cv2.imread(str(out))
    assert img.shape == (plot.HEIGHT, plot.WIDTH, 3)
    x, y = np.round(plot.to_pixels(np.array(10**-1.5), np.array(0.55), (-3, 0))).astype(int)
    assert np.abs(img[y, x].astype(int) - plot.CURVE).max() < 60  # on the flat stretch of the curve
    x, y = np.round(plot.to_pixels(np.array(10**-1.5), np.array(0.25), (-3, 0))).astype(int)
    assert img[y, x].tolist() == [255, 255, 255]  # and nowhere near it below
    with pytest.raises(ApplianceError, match="cannot write"):
        plot.roc_png(far, tar, tmp_path / "missing" / "roc.png", "x")


# --------------------------------------------------------------------------------------------
# End to end with the real models
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_detector():
    try:
        from appliance.vision.detector import MtcnnDetector
    except ImportError as exc:
        pytest.skip(f"appliance.vision.detector cannot be imported yet: {exc}")
    try:
        return MtcnnDetector(min_face_size=40)
    except ApplianceError as exc:
        pytest.skip(f"MTCNN models unavailable: {exc}")


@pytest.fixture(scope="module")
def real_embedder():
    try:
        from appliance.vision.embedder import TfliteEmbedder
    except ImportError as exc:
        pytest.skip(f"appliance.vision.embedder cannot be imported yet: {exc}")
    try:
        return TfliteEmbedder()
    except ApplianceError as exc:
        pytest.skip(f"embedder model unavailable: {exc}")


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (shared developer data not mounted)")
    return path


@pytest.mark.slow
def test_real_detector_on_wider_subset(real_detector):
    root = need(DATA / "detection" / "widerface_train_subset")
    result = eval_detect(
        root / "images", root / "wider_face_train_bbx_gt_subset.txt", real_detector, min_face_px=40
    )
    assert result["images"] == 40 and result["faces"] == 98
    # The subset was chosen for faces of 40 px and up; MTCNN finds most of those.
    assert result["recall50_door"] >= 0.7
    assert result["ap50_door"] >= 0.6
    assert result["ap50_door"] >= result["ap50"] - 1e-9  # small faces only make it harder


@pytest.mark.slow
def test_real_models_door_on_face_recognition_identities(real_detector, real_embedder):
    root = need(DATA / "identities" / "face_recognition" / "train")
    result = eval_door(root, real_detector, real_embedder, enrol_images=1)
    # biden, kit_harington, obama, rose_leslie have 2 photos each; alex_lacamoire has 1.
    assert result["gallery_size"] == 4 and result["genuine_probes"] == 4 and result["impostor_probes"] == 1
    assert result["no_face"] == 0
    assert result["rank1"] >= 0.75


@pytest.mark.slow
def test_real_models_lfw_subset(tmp_path, real_detector, real_embedder):
    pairs_file = need(DATA / "lfw" / "pairs.txt")
    # 2 folds of 10 same + 10 different pairs taken from the first two View 2 folds.
    lines = pairs_file.read_text().splitlines()[1:]
    chosen = []
    for fold in range(2):
        start = 1 + fold * 600 - 1
        chosen += lines[start : start + 10] + lines[start + 300 : start + 310]
    small = tmp_path / "pairs.txt"
    small.write_text("2\t10\n" + "\n".join(chosen) + "\n")
    result = eval_lfw(DATA / "lfw", small, real_detector, real_embedder)
    assert result["pairs"] == 40 and result["no_face"] == 0
    assert result["accuracy"] >= 0.85  # dlib's ResNet is ~99% on full LFW
    assert result["eer"] <= 0.15


def test_module_has_default_progress():
    assert callable(accuracy.TextProgress("x"))
