"""Face embedder: the committed TFLite models against dlib's own descriptors, and the full path
detector -> alignment -> embedder on real photos."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from shared_data import DATA, data_image

from appliance.errors import ConfigError, ImageError, ModelError
from appliance.vision.embedder import EMBEDDING_SIZE, VARIANTS, TfliteEmbedder
from appliance.vision.model_files import MANIFEST_NAME, MODELS_DIR

# dlib's 150x150 chips of four sample photos (face_recognition 1.3.0 sdist: obama, obama2, obama3,
# biden) and dlib's descriptors of them, recorded by models/build/embedder_convert.py.
GOLDEN = Path(__file__).resolve().parent / "golden" / "embedder_dlib.npz"
MIN_COSINE_TO_DLIB = {"f16": 0.9999, "int8": 0.999}


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as g:
        return {"chips": g["chips"], "dlib": unit(g["descriptors"]), "names": list(g["names"])}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def embedder(request) -> TfliteEmbedder:
    return TfliteEmbedder(variant=request.param)


@pytest.fixture(scope="module")
def detector():
    from appliance.vision.detector import MtcnnDetector

    return MtcnnDetector()


def test_embeddings_match_dlib_on_its_own_chips(embedder, golden):
    out = embedder.embed_chips(golden["chips"])
    cosine = np.sum(out * golden["dlib"], axis=1)
    by_photo = dict(zip(golden["names"], cosine, strict=True))
    assert cosine.min() >= MIN_COSINE_TO_DLIB[embedder.variant], by_photo


def test_embeddings_are_unit_length_float32(embedder, golden):
    out = embedder.embed_chips(golden["chips"])
    assert out.shape == (len(golden["chips"]), EMBEDDING_SIZE) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_same_person_is_closer_than_different_people(embedder, golden):
    out = embedder.embed_chips(golden["chips"])
    names = golden["names"]
    obama = [i for i, n in enumerate(names) if n.startswith("obama")]
    biden = names.index("biden.jpg")
    same = [out[i] @ out[j] for i in obama for j in obama if i < j]
    different = [out[i] @ out[biden] for i in obama]
    assert min(same) > 0.93  # dlib: 0.95-0.97
    assert max(different) < 0.88  # dlib: 0.80-0.83
    assert min(same) - max(different) > 0.1


def test_a_single_chip_is_accepted(embedder, golden):
    one = embedder.embed_chips(golden["chips"][0])
    assert one.shape == (1, EMBEDDING_SIZE)
    np.testing.assert_allclose(one[0], embedder.embed_chips(golden["chips"])[0], atol=1e-6)


def test_both_variants_share_one_embedding_space(golden):
    """f16 and int8 carry one model_id: their embeddings of a face must agree, so a gallery enrolled
    with one variant still matches with the other."""
    f16, int8 = TfliteEmbedder(variant="f16"), TfliteEmbedder(variant="int8")
    assert f16.model_id == int8.model_id
    cosine = np.sum(f16.embed_chips(golden["chips"]) * int8.embed_chips(golden["chips"]), axis=1)
    assert cosine.min() >= 0.999


def test_embed_aligns_detected_faces_like_dlib(embedder, detector, golden):
    """Our detector + alignment on obama3.jpg gives nearly dlib's descriptor of dlib's own chip."""
    image = data_image("identities/face_recognition/extra/obama3.jpg")  # same file as the golden one
    faces = detector.detect(image)
    out = embedder.embed(image, faces[:1])
    assert out.shape == (1, EMBEDDING_SIZE)
    reference = golden["dlib"][golden["names"].index("obama3.jpg")]
    assert out[0] @ reference > 0.99  # measured 0.9987


def test_no_faces_give_an_empty_array(embedder):
    out = embedder.embed(np.zeros((120, 160, 3), np.uint8), [])
    assert out.shape == (0, EMBEDDING_SIZE) and out.dtype == np.float32


def lfw_pairs(count: int) -> list[tuple[Path, Path, bool]]:
    """The first `count` matched and `count` mismatched pairs of LFW's pairs.txt fold 1."""
    lfw = DATA / "lfw"
    if not (lfw / "pairs.txt").is_file():
        pytest.skip(f"{lfw} is absent (the shared developer data set is not mounted)")
    rows = [line.split() for line in (lfw / "pairs.txt").read_text().splitlines()[1:]]

    def img(name: str, n: str) -> Path:
        return lfw / name / f"{name}_{int(n):04d}.jpg"

    same = [(img(r[0], r[1]), img(r[0], r[2]), True) for r in rows[:count]]
    different = [(img(r[0], r[1]), img(r[2], r[3]), False) for r in rows[300 : 300 + count]]
    return same + different


@pytest.mark.slow
def test_lfw_pairs_are_told_apart_through_the_whole_pipeline(detector):
    """Detector -> alignment -> int8 embedder ranks LFW same-person pairs above different-person ones."""
    embedder = TfliteEmbedder(variant="int8")

    def embed(path: Path) -> np.ndarray:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        faces = detector.detect(image)
        h, w = image.shape[:2]
        central = min(faces, key=lambda f: np.hypot(*(f.landmarks.mean(axis=0) - [w / 2, h / 2])))
        return embedder.embed(image, [central])[0]

    scores, same = [], []
    for a, b, is_same in lfw_pairs(25):
        scores.append(embed(a) @ embed(b))
        same.append(is_same)
    scores, same = np.array(scores), np.array(same)
    # Area under the ROC curve: the chance a same-person pair scores above a different-person pair.
    auc = np.mean(scores[same][:, None] > scores[~same][None, :])
    assert auc >= 0.98


@pytest.mark.parametrize(
    "chips",
    [
        np.zeros((2, 150, 150, 3), np.float32),
        np.zeros((2, 112, 112, 3), np.uint8),
        np.zeros((150, 150), np.uint8),
    ],
)
def test_bad_chips_are_refused_with_a_clear_message(chips):
    with pytest.raises(ImageError, match=r"uint8 RGB chips of shape \(N, 150, 150, 3\)"):
        TfliteEmbedder(variant="int8").embed_chips(chips)


def test_unknown_variant_or_threads_is_a_config_error():
    with pytest.raises(ConfigError, match="variant 'fp32'"):
        TfliteEmbedder(variant="fp32")
    with pytest.raises(ConfigError, match="threads"):
        TfliteEmbedder(threads=0)


def test_an_altered_model_file_is_refused(tmp_path):
    for name in [*VARIANTS.values(), MANIFEST_NAME]:
        shutil.copy(MODELS_DIR / name, tmp_path / name)
    data = bytearray((tmp_path / VARIANTS["int8"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / VARIANTS["int8"]).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 does not match"):
        TfliteEmbedder(tmp_path, variant="int8")
    assert TfliteEmbedder(tmp_path, variant="f16").model_id  # the untouched variant still loads
