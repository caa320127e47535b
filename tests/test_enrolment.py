"""Enrolment from photos: one clear face per photo, refused otherwise with the file named."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.access.enrolment import check_not_enrolled, embed_photos
from appliance.app.wiring import quality_limits
from appliance.errors import EnrolmentError, ImageError
from appliance.gallery.store import Gallery
from appliance.vision.images import read_image


def test_one_photo_gives_one_unit_embedding(cfg, detector, embedder, photos):
    embeddings, qualities = embed_photos(
        [("obama.jpg", read_image(photos["obama.jpg"]))], detector, embedder, quality_limits(cfg)
    )
    assert embeddings.shape == (1, 128)
    assert np.linalg.norm(embeddings[0]) == pytest.approx(1.0, abs=1e-5)
    assert qualities[0].ok


def test_photo_without_a_face_is_refused_by_name(cfg, detector, embedder):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    with pytest.raises(EnrolmentError, match=r"wall\.jpg: no face found"):
        embed_photos([("wall.jpg", noise)], detector, embedder, quality_limits(cfg))


def test_photo_with_two_people_is_refused_by_name(cfg, detector, embedder, photos):
    a = read_image(photos["obama.jpg"], max_side=600)
    b = read_image(photos["biden.jpg"], max_side=600)
    h = min(a.shape[0], b.shape[0])
    both = np.concatenate([a[:h], b[:h]], axis=1)
    with pytest.raises(EnrolmentError, match=r"pair\.jpg: 2 faces found"):
        embed_photos([("pair.jpg", both)], detector, embedder, quality_limits(cfg))


def test_text_file_named_jpg_is_an_image_error(tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("not a photo\n")
    with pytest.raises(ImageError, match="notes.jpg: cannot be decoded"):
        read_image(fake)


def test_a_face_already_enrolled_under_another_name_is_refused(cfg, detector, embedder, photos, tmp_path):
    limits = quality_limits(cfg)
    obama, _ = embed_photos([("obama.jpg", read_image(photos["obama.jpg"]))], detector, embedder, limits)
    obama3, _ = embed_photos([("obama3.jpg", read_image(photos["obama3.jpg"]))], detector, embedder, limits)
    biden, _ = embed_photos([("biden.jpg", read_image(photos["biden.jpg"]))], detector, embedder, limits)
    with Gallery(tmp_path / "g.db") as gallery:
        gallery.enrol("barack", obama, embedder.model_id)
        current = gallery.templates_matrix(embedder.model_id)
    threshold = cfg.enrolment.duplicate_threshold
    with pytest.raises(EnrolmentError, match="already matches enrolled user 'barack'"):
        check_not_enrolled(obama3, current.names, current.matrix, threshold)
    check_not_enrolled(biden, current.names, current.matrix, threshold)  # a different person is fine
