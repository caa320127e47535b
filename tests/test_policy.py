"""Access policy: k of n, window expiry, margin, cooldowns, alternating users, deny events."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.access.matching import Match
from appliance.access.policy import AccessPolicy, Decision, Reason
from appliance.config import PolicySettings
from appliance.domain import Verdict

RULES = PolicySettings(
    match_threshold=0.5,
    margin=0.05,
    frames_needed=3,
    window_frames=5,
    window_s=2.0,
    cooldown_s=6.0,
    deny_after_frames=4,
    deny_cooldown_s=10.0,
)
DT = 0.1  # seconds between frames (10 fps)


def good(user: str, score: float = 0.8) -> Match:
    return Match(user, score, 0.2, "someone")


def stranger() -> Match:
    return Match("ann", 0.3, 0.25, "bob")


def run(policy: AccessPolicy, frames: list[Match | None], start: float = 0.0) -> list[Decision]:
    """Feed frames with a face, DT apart."""
    return [policy.observe(start + i * DT, m, True) for i, m in enumerate(frames)]


def verdicts(decisions: list[Decision]) -> list[Verdict]:
    return [d.verdict for d in decisions]


def test_grant_on_the_kth_match() -> None:
    out = run(AccessPolicy(RULES), [good("ann")] * 3)
    assert [d.reason for d in out] == [Reason.CONFIRMING, Reason.CONFIRMING, Reason.MATCHED]
    assert out[2] == Decision(Verdict.GRANT, Reason.MATCHED, "ann", 0.8)


def test_k_of_n_tolerates_misses() -> None:
    out = run(AccessPolicy(RULES), [good("ann"), stranger(), good("ann"), None, good("ann")])
    assert verdicts(out) == [Verdict.WAIT] * 4 + [Verdict.GRANT]


def test_matches_spread_over_more_than_n_frames_do_not_grant() -> None:
    frames = [good("ann"), None, None, None, None, good("ann"), None, None, None, None, good("ann")]
    assert Verdict.GRANT not in verdicts(run(AccessPolicy(RULES), frames))


def test_matches_spread_over_more_than_window_s_do_not_grant() -> None:
    policy = AccessPolicy(RULES)
    times = [0.0, 1.0, 2.05]  # the first falls out of the 2 s window before the third arrives
    out = [policy.observe(t, good("ann"), True) for t in times]
    assert verdicts(out) == [Verdict.WAIT] * 3
    # ...but two more within the window complete it.
    assert policy.observe(2.5, good("ann"), True).verdict is Verdict.GRANT


def test_a_gap_longer_than_the_window_forgets_earlier_frames() -> None:
    policy = AccessPolicy(RULES)
    run(policy, [good("ann")] * 2)
    assert policy.observe(10.0, good("ann"), True).reason is Reason.CONFIRMING


def test_no_face_clears_the_window() -> None:
    policy = AccessPolicy(RULES)
    run(policy, [good("ann")] * 2)
    assert policy.observe(0.2, None, False) == Decision(Verdict.WAIT, Reason.NO_FACE)
    out = run(policy, [good("ann")] * 3, start=0.3)
    assert verdicts(out) == [Verdict.WAIT, Verdict.WAIT, Verdict.GRANT]


def test_below_threshold_is_not_a_match() -> None:
    out = run(AccessPolicy(RULES), [good("ann", 0.49)] * 3)
    assert [d.reason for d in out] == [Reason.BELOW_THRESHOLD] * 3


def test_score_equal_to_threshold_matches() -> None:
    out = run(AccessPolicy(RULES), [Match("ann", 0.5, 0.0, "bob")] * 3)
    assert out[-1].verdict is Verdict.GRANT


def test_small_margin_over_second_user_is_ambiguous_and_never_grants() -> None:
    lookalike = Match("ann", 0.8, 0.78, "annstwin")
    out = run(AccessPolicy(RULES), [lookalike] * 20)
    assert {d.reason for d in out} == {Reason.AMBIGUOUS}
    # Ambiguous faces are known faces: they never turn into an "unknown face" deny.
    assert Verdict.DENY not in verdicts(out)


def test_alternating_users_never_reach_k_of_n() -> None:
    # 3 of the last 4: strict alternation gives each user only 2.
    frames = [good("ann"), good("bob")] * 10
    assert Verdict.GRANT not in verdicts(
        run(AccessPolicy(dataclasses.replace(RULES, window_frames=4)), frames)
    )


def test_alternating_users_grant_the_one_with_k_in_the_window() -> None:
    out = run(AccessPolicy(RULES), [good("ann"), good("bob"), good("ann"), good("bob"), good("ann")])
    assert out[-1] == Decision(Verdict.GRANT, Reason.MATCHED, "ann", 0.8)
    assert verdicts(out[:-1]) == [Verdict.WAIT] * 4


def test_cooldown_blocks_any_regrant_then_needs_k_fresh_frames() -> None:
    policy = AccessPolicy(RULES)
    assert run(policy, [good("ann")] * 3)[-1].verdict is Verdict.GRANT
    during = run(policy, [good("bob")] * 30, start=0.3)  # up to t = 3.2 s, inside the 6 s cooldown
    assert {d.reason for d in during} == {Reason.COOLDOWN}
    after = run(policy, [good("bob")] * 3, start=0.2 + RULES.cooldown_s)
    assert [d.reason for d in after] == [Reason.CONFIRMING, Reason.CONFIRMING, Reason.MATCHED]
    assert after[-1].user == "bob"


def test_unknown_face_denies_after_n_frames_then_once_per_deny_cooldown() -> None:
    policy = AccessPolicy(RULES)
    out = run(policy, [stranger()] * 120)  # 12 s of a lingering stranger
    denies = [i for i, d in enumerate(out) if d.verdict is Verdict.DENY]
    assert denies == [3, 103]  # 4th frame, then again after 10 s
    assert out[3].reason is Reason.UNKNOWN_FACE
    assert {out[i].reason for i in range(4, 103)} == {Reason.DENY_COOLDOWN}


def test_deny_cooldown_holds_across_people() -> None:
    policy = AccessPolicy(RULES)
    assert Verdict.DENY in verdicts(run(policy, [stranger()] * 4))
    policy.observe(0.5, None, False)
    assert Verdict.DENY not in verdicts(run(policy, [stranger()] * 10, start=0.6))


def test_a_good_match_resets_the_unknown_count() -> None:
    # An enrolled user whose score dips now and then must not be denied on the way to a grant.
    frames = [stranger(), stranger(), stranger(), good("ann"), stranger(), stranger(), stranger()]
    assert Verdict.DENY not in verdicts(
        run(AccessPolicy(dataclasses.replace(RULES, frames_needed=5)), frames)
    )


def test_unmatched_face_is_neither_granted_nor_denied() -> None:
    out = run(AccessPolicy(RULES), [None] * 50)
    assert {d.reason for d in out} == {Reason.NOT_IDENTIFIED}


def test_empty_gallery_faces_are_unknown_with_no_score() -> None:
    # matching's NO_SCORE (-1) is "no template at all", not a similarity to print as `score -1.000`.
    out = run(AccessPolicy(RULES), [Match(None, -1.0)] * 4)
    assert out[-1] == Decision(Verdict.DENY, Reason.UNKNOWN_FACE, None, None)


def test_no_deny_during_grant_cooldown() -> None:
    policy = AccessPolicy(RULES)
    run(policy, [good("ann")] * 3)
    out = run(policy, [stranger()] * 20, start=0.3)
    assert {d.reason for d in out} == {Reason.COOLDOWN}


def test_time_going_backwards_is_a_bug() -> None:
    policy = AccessPolicy(RULES)
    policy.observe(5.0, None, False)
    with pytest.raises(ValueError, match="backwards"):
        policy.observe(4.0, None, False)


def test_impossible_rules_are_refused() -> None:
    with pytest.raises(ValueError):
        AccessPolicy(dataclasses.replace(RULES, frames_needed=6))


frame = st.one_of(
    st.none(),
    st.builds(Match, st.sampled_from(["ann", "bob", None]), st.floats(-1, 1), st.floats(-1, 1)),
)


@given(st.lists(st.tuples(st.floats(0, 0.5), frame, st.booleans()), max_size=80))
def test_grants_always_follow_k_confident_frames_of_that_user(steps: list) -> None:
    policy = AccessPolicy(RULES)
    now = 0.0
    last_grant = float("-inf")
    history: list[tuple[float, object]] = []  # (time, confident user) since the last no-face
    for dt, match, face in steps:
        now += dt
        d = policy.observe(now, match, face)
        if not face:
            history.clear()
            continue
        confident = (
            match is not None
            and match.user is not None
            and match.score >= RULES.match_threshold
            and match.score - match.second_score >= RULES.margin
        )
        history.append((now, match.user if confident else None))
        if d.verdict is Verdict.GRANT:
            assert now - last_grant >= RULES.cooldown_s
            recent = [u for t, u in history[-RULES.window_frames :] if now - t <= RULES.window_s]
            assert recent.count(d.user) >= RULES.frames_needed
            last_grant = now
            history.clear()
