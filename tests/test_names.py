"""User names that could pass for another name are refused; the others are stored NFKC-normalised.

Against a real SQLite gallery: `lin` and `lin` + an invisible character must never be two users that
look the same in `users list` and in the event log.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import GalleryError
from appliance.gallery.store import Gallery

MODEL = "dlib-resnet-f16-test"


def faces(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "facegate.db"


@pytest.fixture
def gallery(path: Path) -> Iterator[Gallery]:
    with Gallery(path) as g:
        g.add_user("lin")
        yield g


INVISIBLE = {
    "zero width space": "lin\u200b",
    "zero width joiner": "li\u200dn",
    "zero width no-break space (BOM)": "\ufefflin",
    "soft hyphen": "li\u00adn",
    "right-to-left override": "lin\u202e",
    "left-to-right isolate": "\u2066lin",
    "word joiner": "lin\u2060",
    "mongolian vowel separator": "lin\u180e",
    "hangul filler": "lin\u3164",
    "halfwidth hangul filler": "lin\uffa0",
    "hangul choseong filler": "lin\u115f",
    "hangul jungseong filler": "lin\u1160",
    "braille pattern blank": "lin\u2800",
    "combining grapheme joiner": "lin\u034f",
    "variation selector": "lin\ufe0f",
    "line separator": "lin\u2028 x",
    "private use": "lin\ue000",
    "unassigned": "lin\U000e0080",
    "delete": "lin\x7f",
    "escape": "lin\x1b[2J",
    "tab inside": "li\tn",
    "newline inside": "li\nn",
}


@pytest.mark.parametrize("name", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_names_with_invisible_or_control_characters_are_refused(gallery: Gallery, name: str) -> None:
    with pytest.raises(GalleryError, match=r"contains .*could look the same as another name; type the name"):
        gallery.add_user(name)
    assert [u.name for u in gallery.users()] == ["lin"]


def test_the_message_names_the_character_typed(gallery: Gallery) -> None:
    with pytest.raises(GalleryError) as err:
        gallery.add_user("lin\u200b")
    assert "U+200B (ZERO WIDTH SPACE)" in str(err.value)
    # U+3164 folds to U+1160 under NFKC: the message still names what was typed.
    with pytest.raises(GalleryError, match=r"U\+3164 \(HANGUL FILLER\)"):
        gallery.add_user("lin\u3164")


@pytest.mark.parametrize(
    "name",
    ["\u200b", "\u200b\u200c\u200d", "\u3164", "\u2800\u2800", "\u202e", "\ufeff", "\u115f\u1160"],
)
def test_a_name_of_only_invisible_characters_is_refused(gallery: Gallery, name: str) -> None:
    with pytest.raises(GalleryError, match="invisible"):
        gallery.add_user(name)


@pytest.mark.parametrize("name", ["", "   ", "\u3000", "\u00a0\u2002", "\t\n"])
def test_blank_names_are_refused(gallery: Gallery, name: str) -> None:
    with pytest.raises(GalleryError, match="must not be empty|no visible characters"):
        gallery.add_user(name)


def test_two_spaces_in_a_row_are_refused(gallery: Gallery) -> None:
    with pytest.raises(GalleryError, match="two spaces in a row"):
        gallery.add_user("lin  lee")


def test_a_leading_combining_mark_is_refused(gallery: Gallery) -> None:
    with pytest.raises(GalleryError, match="combining mark"):
        gallery.add_user("\u0301lin")


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("ｌｉｎ", "lin"),  # full-width letters
        ("  lin  ", "lin"),  # surrounding spaces
        ("\u3000lin\u00a0", "lin"),  # ideographic and no-break spaces around
        ("ﬁ", "fi"),  # ligature
        ("ℌ", "H"),  # letter-like symbol
    ],
)
def test_compatibility_forms_fold_onto_the_plain_name(gallery: Gallery, typed: str, stored: str) -> None:
    if stored == "lin":
        with pytest.raises(GalleryError, match="a user called 'lin' already exists"):
            gallery.add_user(typed)
    else:
        assert gallery.add_user(typed).name == stored
        assert gallery.user(stored).name == stored


def test_the_normalised_name_is_stored_and_found(path: Path) -> None:
    with Gallery(path) as g:
        user = g.enrol("Ｄａｎａ\u00a0Ｌｅｅ", faces(2), MODEL)  # full-width letters, a no-break space
        assert user.name == "Dana Lee"
        # users show / remove / rename find it however it is typed, and events carry the stored name.
        assert g.user("Dana Lee").templates == 2
        assert g.user("Ｄａｎａ Ｌｅｅ").name == "Dana Lee"
        assert "Dana\u00a0Lee" in g
        g.log_event("grant", name="Ｄａｎａ Ｌｅｅ", score=0.97)
        assert g.events()[0].name == "Dana Lee"
        assert g.templates_matrix(MODEL).names.tolist() == ["Dana Lee", "Dana Lee"]
        assert g.rename("Dana Lee", "ｄａｎａ").name == "dana"
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT name FROM users").fetchall() == [("dana",)]
    finally:
        conn.close()


def test_good_names_are_kept_as_typed(gallery: Gallery) -> None:
    for name in ["Zoë, the 2nd", "O'Brien-Smith", "Åsa Öberg", "李小龍", "محمد", "Ана", "ñandú"]:
        assert gallery.add_user(name).name == name


def test_decomposed_accents_are_composed(gallery: Gallery) -> None:
    assert gallery.add_user("Zoe\u0308").name == "Zoë"
    with pytest.raises(GalleryError, match="already exists"):
        gallery.add_user("Zo\u00eb")


def test_renaming_to_a_look_alike_is_refused(gallery: Gallery) -> None:
    gallery.add_user("bob")
    with pytest.raises(GalleryError, match="invisible"):
        gallery.rename("bob", "lin\u200b")
    with pytest.raises(GalleryError, match="that name is taken"):
        gallery.rename("bob", "ｌｉｎ")


def test_staging_a_look_alike_is_refused(gallery: Gallery) -> None:
    with pytest.raises(GalleryError, match="invisible"):
        gallery.stage_enrolment("lin\u202e")
    with pytest.raises(GalleryError, match="already exists"):
        gallery.stage_enrolment("ｌｉｎ")


def test_a_user_stored_before_normalisation_can_still_be_found_and_removed(path: Path) -> None:
    with Gallery(path) as g:
        g.add_user("lin")
        # As an older FaceGate could have stored it, before names were checked for invisible characters.
        g.db.execute("UPDATE users SET name = ? WHERE name = ?", ["lin\u200b", "lin"])
        g.db.conn.commit()
        assert g.user("lin\u200b").name == "lin\u200b"
        assert g.remove("lin\u200b") == 0
        assert g.users() == []


def test_too_long_after_normalisation_is_refused(gallery: Gallery) -> None:
    # U+FDFA is one character that NFKC spells out as 18.
    with pytest.raises(GalleryError, match="at most 64"):
        gallery.add_user("\ufdfa" * 4)
