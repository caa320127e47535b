"""Whether the enrol button at the door may start an enrolment: secure by default.

Anyone can reach the button, so by default (enrolment.require_admin = true) it works only in the
ADMIN_APPROVAL_S seconds after an admin's face was granted, and does nothing while no admin exists.
"""

from __future__ import annotations

ADMIN_APPROVAL_S = 30.0
"""With enrolment.require_admin, the enrol button works this long after an admin was granted, seconds."""

NO_ADMIN_HINT = (
    "enrol button ignored: no admin is enrolled; enrol one with "
    "`facegate enroll NAME --role admin PHOTO...`, then an admin's face at the door enables the button"
)


def enrol_button_refusal(
    *, require_admin: bool, admin_enrolled: bool, now: float, admin_granted_at: float | None
) -> str | None:
    """Why a press of the enrol button must be ignored, or None when it may start an enrolment.

    Args:
        require_admin: enrolment.require_admin.
        admin_enrolled: an active admin exists in the gallery.
        now, admin_granted_at: monotonic seconds; the time of the last admin grant, None if none yet.
    """
    if not require_admin:
        return None
    if not admin_enrolled:
        return NO_ADMIN_HINT
    if admin_granted_at is None or now - admin_granted_at > ADMIN_APPROVAL_S:
        return (
            f"enrol button ignored: an admin must be recognised at the door in the {ADMIN_APPROVAL_S:.0f} s "
            "before the button is held"
        )
    return None
