"""Storing an enrolment with the gallery-side checks, the same for `facegate enroll`, `users add-photos`
and the admin page: no face already enrolled as someone else, and new photos of the same person."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from appliance.access.enrolment import check_not_enrolled, check_same_person
from appliance.gallery.store import Gallery, User


def enrol_new_user(
    gallery: Gallery,
    name: str,
    embeddings: np.ndarray,
    qualities: Sequence[float],
    model_id: str,
    duplicate_threshold: float,
    role: str = "user",
) -> User:
    """Enrol `name` from (N, D) `embeddings`, refused when a face is already enrolled."""
    current = gallery.templates_matrix(model_id)
    check_not_enrolled(embeddings, current.names, current.matrix, duplicate_threshold)
    return gallery.enrol(name, embeddings, model_id, list(qualities), role=role)


def add_user_photos(
    gallery: Gallery,
    name: str,
    embeddings: np.ndarray,
    qualities: Sequence[float],
    model_id: str,
    duplicate_threshold: float,
    labels: Sequence[str],
) -> tuple[User, int]:
    """Add templates to user `name`; returns the user and how many were added.

    The new photos must not be someone else enrolled (a mix-up of photos between two users), and must
    show this user: checked with enrolment's own rule, old templates and new together (`labels` name the
    new photos in its message)."""
    user = gallery.user(name)
    current = gallery.templates_matrix(model_id)
    others = current.names != user.name
    check_not_enrolled(embeddings, current.names[others], current.matrix[others], duplicate_threshold)
    own = gallery.user_templates(user.name, model_id)
    if len(own):
        check_same_person(
            np.concatenate([own, embeddings]), [f"{user.name}'s templates"] * len(own) + list(labels)
        )
    return user, gallery.add_templates(user.name, embeddings, model_id, list(qualities))
