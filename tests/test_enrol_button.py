"""The enrol button at the door is secure by default: a stranger who holds it cannot enrol themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.access.enrol_button import ADMIN_APPROVAL_S, NO_ADMIN_HINT, enrol_button_refusal
from appliance.config import load_config
from appliance.gallery.store import Gallery

SHIPPED = Path(__file__).resolve().parents[1] / "config.toml"
NEVER = float("-inf")


def test_the_shipped_config_and_the_defaults_require_an_admin():
    assert load_config(SHIPPED).enrolment.require_admin is True
    assert load_config(None).enrolment.require_admin is True


def test_with_no_admin_enrolled_the_button_only_says_how_to_enrol_one():
    refusal = enrol_button_refusal(
        require_admin=True, admin_enrolled=False, now=100.0, admin_granted_at=NEVER
    )
    assert refusal == NO_ADMIN_HINT
    assert "facegate enroll NAME --role admin" in refusal


def test_the_button_works_only_in_the_window_after_an_admin_grant():
    def refusal(now: float, granted: float) -> str | None:
        return enrol_button_refusal(
            require_admin=True, admin_enrolled=True, now=now, admin_granted_at=granted
        )

    assert refusal(100.0, NEVER) is not None  # an admin exists but was not seen
    assert refusal(100.0, 100.0 - ADMIN_APPROVAL_S + 1) is None
    assert "must be recognised" in (refusal(100.0, 100.0 - ADMIN_APPROVAL_S - 1) or "")


def test_require_admin_false_lets_the_button_work_as_before():
    assert (
        enrol_button_refusal(require_admin=False, admin_enrolled=False, now=0.0, admin_granted_at=NEVER)
        is None
    )


def test_only_an_active_valid_admin_counts(tmp_path):
    face = np.ones((1, 128), np.float32) / np.sqrt(128)
    other = np.eye(1, 128, 5, dtype=np.float32)
    with Gallery(tmp_path / "g.db", clock=lambda: 1000.0) as gallery:
        gallery.enrol("ann", face, "m")
        assert not gallery.has_active_admin()
        gallery.enrol("root", other, "m", role="admin")
        assert gallery.has_active_admin()
        gallery.set_active("root", False)
        assert not gallery.has_active_admin()
