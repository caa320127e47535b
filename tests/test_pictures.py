"""Face pictures of grants and denies (app/pictures.py): stored small and private, matched to their
event, pruned after pictures_days, deleted on demand. Real photos, real JPEG encoding."""

from __future__ import annotations

import stat

import cv2
import numpy as np

from appliance.app.pictures import MATCH_S, PICTURE_PX, PictureStore, face_picture
from appliance.vision.images import read_image

T = 1_800_000_000.0


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_a_picture_is_the_face_small_private_and_found_by_its_event(tmp_path, photos, detector):
    image = read_image(photos["obama.jpg"])
    face = detector.detect(image)[0]
    store = PictureStore(tmp_path / "pictures", keep_days=30, clock=Clock(T))
    path = store.save("grant", image, face)
    assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "pictures").stat().st_mode) == 0o700
    picture = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert max(picture.shape[:2]) == PICTURE_PX and path.stat().st_size < 20_000
    # It shows a face: the detector finds one in it.
    assert detector.detect(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB))
    events = [(1, "grant", T + 0.01), (2, "deny", T), (3, "grant", T + MATCH_S + 1)]
    assert store.find(events) == {1: path}


def test_the_crop_stays_inside_the_frame(photos, detector):
    image = read_image(photos["obama.jpg"])
    face = detector.detect(image)[0]
    moved = type(face)((-50.0, -50.0, face.box[2] - face.box[0] - 50, 100.0), face.score, face.landmarks)
    assert face_picture(image, moved).size > 0


def test_pictures_are_pruned_after_keep_days_and_deleted_with_their_events(tmp_path, photos, detector):
    image = read_image(photos["obama.jpg"])
    face = detector.detect(image)[0]
    clock = Clock(T)
    store = PictureStore(tmp_path / "pictures", keep_days=1, clock=clock)
    old = store.save("deny", image, face)
    clock.t += 86400 + 1
    new = store.save("grant", image, face)
    assert old is not None and new is not None
    # Saving prunes (at most hourly): the picture older than a day went with the new one's save.
    assert not old.exists() and new.exists()
    clock.t += 86400 + 1
    assert store.prune() == 1 and not new.exists()
    new = store.save("grant", image, face)
    assert store.delete([(7, "grant", clock.t)]) == 1 and not new.exists()


def test_an_unwritable_folder_is_logged_not_raised(tmp_path, photos, detector, caplog):
    image = read_image(photos["obama.jpg"])
    (tmp_path / "pictures").write_text("a file where the folder should be")
    store = PictureStore(tmp_path / "pictures", keep_days=1)
    assert store.save("grant", image, detector.detect(image)[0]) is None
    assert "not stored" in caplog.text
