"""The identity-disjoint splits of issue 13: LFW View 2 folds by person, the door by a hash of the name.

LFW: the test fold's pairs are scored by a model trained on the images of the people of the other nine
folds, never on a person who appears in the test fold (View 2's folds are disjoint in people, which
`lfw_split` asserts rather than assumes). Door: people fall into half 0 or 1 by the first byte of the
SHA-256 of their name; a model trained on one half is evaluated on a door benchmark built from the other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from appliance.evaluation.accuracy import Pair


def person_of(rel_path: str) -> str:
    """The person (folder) of an LFW path "name/name_0001.jpg"."""
    return rel_path.split("/", 1)[0]


@dataclass(frozen=True)
class LfwPairs:
    """LFW View 2 as index arrays into an embedded image set.

    Attributes:
        ia, ib: (P,) row of each pair's two images in the image set.
        same: (P,) True for a same-person pair.
        fold: (P,) fold 0..9 of each pair.
        fold_people: per fold, the people who appear in its pairs.
    """

    ia: np.ndarray
    ib: np.ndarray
    same: np.ndarray
    fold: np.ndarray
    fold_people: list[frozenset[str]]


def lfw_pairs(folds: list[list[Pair]], rel_paths: np.ndarray) -> LfwPairs:
    """Index the pairs of `folds` (from `read_lfw_pairs`) into the rows of `rel_paths`."""
    index = {str(p): i for i, p in enumerate(rel_paths)}
    flat = [(k, p) for k, fold in enumerate(folds) for p in fold]
    missing = sorted({n for _, p in flat for n in (p.a, p.b) if n not in index})
    if missing:
        raise ValueError(f"{len(missing)} pair images are not in the image set, e.g. {missing[0]}")
    return LfwPairs(
        ia=np.array([index[p.a] for _, p in flat], dtype=np.int64),
        ib=np.array([index[p.b] for _, p in flat], dtype=np.int64),
        same=np.array([p.same for _, p in flat], dtype=bool),
        fold=np.array([k for k, _ in flat], dtype=np.int64),
        fold_people=[frozenset(person_of(n) for p in fold for n in (p.a, p.b)) for fold in folds],
    )


def lfw_split(pairs: LfwPairs, people: np.ndarray, test_fold: int) -> np.ndarray:
    """Rows of the images a model for `test_fold` may train on: every image of every person of the
    other folds. Raises AssertionError if one of those people is also in the test fold."""
    test_people = pairs.fold_people[test_fold]
    train_people = frozenset().union(*(p for k, p in enumerate(pairs.fold_people) if k != test_fold))
    overlap = train_people & test_people
    assert not overlap, f"fold {test_fold} shares {len(overlap)} people with the others, e.g. {min(overlap)}"
    rows = np.flatnonzero(np.isin(people, sorted(train_people)))
    assert not set(people[rows].tolist()) & test_people, "a test-fold person leaked into the training rows"
    return rows


def name_half(name: str) -> int:
    """0 or 1: the door half of a person, from the first byte of SHA-256(name) (stable across runs)."""
    return hashlib.sha256(name.encode("utf-8")).digest()[0] & 1


@dataclass(frozen=True)
class DoorSplit:
    """One direction of the door protocol: train on one half of the people, test on the other.

    Attributes:
        train: rows of the training half's images.
        gallery: rows enrolled (the first `enrol_images` images of each test person with more).
        gallery_owner: (G,) index 0..N-1 of the enrolled person of each gallery row (non-decreasing).
        probes: rows probing the door: the other images of enrolled people, then every image of the
            test people who have too few images to enrol (impostors).
        probe_owner: (Q,) enrolled person index of each probe, -1 for an impostor.
    """

    train: np.ndarray
    gallery: np.ndarray
    gallery_owner: np.ndarray
    probes: np.ndarray
    probe_owner: np.ndarray


def door_split(people: np.ndarray, test_half: int, enrol_images: int = 1) -> DoorSplit:
    """The door benchmark of `appliance.evaluation.accuracy.split_gallery`, on the people of `test_half`.

    `people` are the images' persons in the order of the image set (grouped, sorted by file name), as
    `embeddings.load_or_embed` returns them. Raises AssertionError if a test person is in `train`.
    """
    halves = np.array([name_half(str(p)) for p in people])
    train = np.flatnonzero(halves != test_half)
    test_people = sorted(set(people[halves == test_half].tolist()))
    gallery: list[int] = []
    owner: list[int] = []
    genuine: list[tuple[int, int]] = []
    impostors: list[int] = []
    enrolled = 0
    for person in test_people:
        rows = np.flatnonzero(people == person)
        if rows.size > enrol_images:
            gallery.extend(rows[:enrol_images].tolist())
            owner.extend([enrolled] * enrol_images)
            genuine.extend((int(r), enrolled) for r in rows[enrol_images:])
            enrolled += 1
        else:
            impostors.extend(rows.tolist())
    assert not set(people[train].tolist()) & set(test_people), "a test person leaked into the training half"
    probes = np.array([r for r, _ in genuine] + impostors, dtype=np.int64)
    probe_owner = np.array([o for _, o in genuine] + [-1] * len(impostors), dtype=np.int64)
    return DoorSplit(
        train, np.array(gallery, dtype=np.int64), np.array(owner, dtype=np.int64), probes, probe_owner
    )
