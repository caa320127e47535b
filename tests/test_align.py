"""Alignment from five landmarks to the embedder's 150x150 chip."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from shared_data import data_image

from appliance.errors import ImageError
from appliance.vision.align import CHIP_SIZE, TEMPLATE_150, align_face, similarity_transform


@pytest.fixture(scope="module")
def face_photo() -> tuple[np.ndarray, np.ndarray]:
    """A real photo and the landmarks our detector finds on it."""
    from appliance.vision.detector import MtcnnDetector

    image = data_image("identities/face_recognition/extra/obama3.jpg")
    faces = MtcnnDetector().detect(image)
    assert faces, "the detector must find Obama in obama3.jpg"
    return image, faces[0].landmarks


def similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def apply(matrix: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ matrix[:, :2].T + matrix[:, 2]


def test_similarity_fit_recovers_a_known_transform():
    truth = similarity(17.0, 1.7, 30.5, -12.0)
    fitted = similarity_transform(TEMPLATE_150, apply(truth, TEMPLATE_150))
    np.testing.assert_allclose(fitted, truth, atol=1e-9)


def test_similarity_fit_never_mirrors():
    mirrored = TEMPLATE_150 * [-1, 1]
    fitted = similarity_transform(TEMPLATE_150, mirrored)
    assert np.linalg.det(fitted[:, :2]) > 0


def test_landmarks_already_on_the_template_give_the_image_itself():
    image = np.random.default_rng(0).integers(0, 256, (CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
    chip = align_face(image, TEMPLATE_150)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    assert np.abs(chip.astype(int) - image).max() <= 1


def test_chip_size_scales_the_template():
    image = np.random.default_rng(1).integers(0, 256, (112, 112, 3), np.uint8)
    chip = align_face(image, TEMPLATE_150 * 112 / 150, size=112)
    assert chip.shape == (112, 112, 3)
    assert np.abs(chip.astype(int) - image).max() <= 1


def test_template_is_an_upright_face():
    left_eye, right_eye, nose, left_mouth, right_mouth = TEMPLATE_150
    assert left_eye[0] < nose[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert left_eye[1] < nose[1] < left_mouth[1] and right_eye[1] < nose[1] < right_mouth[1]
    assert np.all((TEMPLATE_150 > 0) & (TEMPLATE_150 < CHIP_SIZE))


def test_chip_does_not_depend_on_where_and_how_the_face_sits_in_the_frame(face_photo):
    """Turning, shifting and zooming the camera image gives the same chip."""
    image, landmarks = face_photo
    reference = align_face(image, landmarks)
    h, w = image.shape[:2]
    moved = similarity(-25.0, 1.4, 0.0, 0.0)
    corners = apply(moved, np.array([[0, 0], [w, 0], [0, h], [w, h]], float))
    moved[:, 2] = 7.0 - corners.min(axis=0)  # the whole photo stays in the new frame
    size = np.ceil(corners.max(axis=0) - corners.min(axis=0) + 20).astype(int)
    moved_image = cv2.warpAffine(image, moved, (int(size[0]), int(size[1])), flags=cv2.INTER_CUBIC)
    chip = align_face(moved_image, apply(moved, landmarks).astype(np.float32))
    assert np.abs(chip.astype(float) - reference).mean() < 4.0


def test_a_face_much_larger_than_the_chip_is_averaged_not_aliased(face_photo):
    """A close-up (face 4x bigger) gives the chip the same face at normal size would."""
    image, landmarks = face_photo
    reference = align_face(image, landmarks)
    big = cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    chip = align_face(big, ((landmarks + 0.5) * 4 - 0.5).astype(np.float32))
    assert np.abs(chip.astype(float) - reference).mean() < 1.5  # a plain bilinear warp gives 3.0


def test_face_partly_outside_the_image_is_filled_black(face_photo):
    image, landmarks = face_photo
    x0 = int(landmarks[:, 0].mean())  # cut the photo through the middle of the face
    chip = align_face(np.ascontiguousarray(image[:, x0:]), landmarks - [x0, 0])
    assert np.all(chip[:, :40] == 0)
    assert chip[:, 100:].mean() > 20


@pytest.mark.parametrize(
    ("image", "landmarks", "message"),
    [
        (np.zeros((50, 50, 3), np.float32), TEMPLATE_150, "RGB uint8 image"),
        (np.zeros((50, 50), np.uint8), TEMPLATE_150, "RGB uint8 image"),
        (np.zeros((50, 50, 3), np.uint8), TEMPLATE_150[:4], r"\(5, 2\)"),
        (np.zeros((50, 50, 3), np.uint8), np.full((5, 2), np.nan), r"\(5, 2\)"),
        (np.zeros((50, 50, 3), np.uint8), np.full((5, 2), 10.0), "coincide"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(image, landmarks, message):
    with pytest.raises(ImageError, match=message):
        align_face(image, landmarks)
