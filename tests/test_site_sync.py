"""Several doors, one set of users, with real processes: a mosquitto broker over TLS with a password, and
one `facegate sync` per door, each writing its own gallery file; changes are made as the CLI makes them
(through the gallery) and read back from the other door's file."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from cli_run import one_line_error, run
from mqtt_helpers import Subscriber, facegate, needs_mosquitto, stop, wait_until
from site_helpers import PASSWORD, SITE, door_folder, make_pki, make_site_key, tls_broker

from appliance.gallery.store import Gallery
from appliance.vision.embedder import MODEL_ID

rng = np.random.default_rng(15)
pytestmark = [
    needs_mosquitto,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed"),
]


def faces(n: int, d: int = 128) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def users(db: Path) -> dict[str, tuple[int, int]]:
    """name -> (active, templates) read straight from a door's gallery file."""
    if not db.exists():
        return {}
    with sqlite3.connect(db, timeout=10) as conn:
        try:
            rows = conn.execute(
                "SELECT u.name, u.active, COUNT(t.id) FROM users u LEFT JOIN templates t ON t.user_id = u.id"
                " GROUP BY u.id"
            ).fetchall()
        except sqlite3.OperationalError:
            return {}  # not created yet
    return {name: (active, n) for name, active, n in rows}


@pytest.fixture
def site(tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    broker = tls_broker(tmp_path / "broker", pki).start()
    key = make_site_key(tmp_path)
    a = door_folder(tmp_path, "a", broker.port, pki, key)
    b = door_folder(tmp_path, "b", broker.port, pki, key)
    yield broker, pki, a, b
    broker.stop()


def sync(door, log_name: str = "sync.log") -> subprocess.Popen[bytes]:
    return facegate("sync", "--config", door.config, "--db", door.db, log=door.folder / log_name)


def subscriber(broker, pki: Path) -> Subscriber:
    return Subscriber(broker.port, tls={"ca_certs": str(pki / "ca.pem")}, auth=("facegate", PASSWORD))


def test_enrol_at_a_reaches_b_and_a_removal_at_b_reaches_a(site, capsys, cli_tmp):
    broker, pki, a, b = site
    procs = [sync(a), sync(b)]
    try:
        for door in (a, b):
            wait_until(lambda d=door: "connected" in (d.folder / "sync.log").read_text(), 20, "connected")
        start = time.time()
        with Gallery(a.db) as g:
            g.enrol("Ann", faces(3), MODEL_ID)
        wait_until(lambda: users(b.db).get("Ann") == (1, 3), 20, "Ann at door b")
        print(f"enrol at a -> in b's gallery: {(time.time() - start) * 1000:.0f} ms")
        with Gallery(a.db) as g:
            np.testing.assert_array_equal(
                g.user_templates("Ann", MODEL_ID), Gallery(b.db).user_templates("Ann", MODEL_ID)
            )
            g.set_active("Ann", False)
        wait_until(lambda: users(b.db).get("Ann") == (0, 3), 20, "Ann deactivated at b")
        with Gallery(b.db) as g:
            g.set_active("Ann", True)
            g.remove("Ann")
        wait_until(lambda: "Ann" not in users(a.db), 20, "Ann removed at a")
        with sqlite3.connect(a.db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM templates").fetchone()[0] == 0
        # Both doors acknowledge the removal: nothing is pending anywhere.
        from appliance.gallery.replica import site_removal

        def removal_done() -> bool:  # as each door sees it: the acks reach a and b at their own pace
            for db in (a.db, b.db):
                with Gallery(db) as g:
                    removal = site_removal(g, "ann")
                if removal is None or removal.pending != []:
                    return False
            return True

        wait_until(removal_done, 20, "both doors acknowledging the removal")
        capsys.readouterr()  # the figure printed above
        code, out, err = run(capsys, "users", "show", "ann", "--db", a.db, "--config", a.config)
        assert (code, out) == (0, "Ann was removed; the removal is done at every door of the site\n"), err
        # A removal while door b is away is pending there, says `users show`, until b comes back.
        with Gallery(a.db) as g:
            g.enrol("Cy", faces(2), MODEL_ID)
        wait_until(lambda: "Cy" in users(b.db), 20, "Cy at b")
        assert stop(procs.pop()) == 0
        with Gallery(a.db) as g:
            g.remove("Cy")
        show = ("users", "show", "Cy", "--db", a.db, "--config", a.config)

        def shown() -> str:
            return run(capsys, *show)[1]

        wait_until(lambda: "pending" in shown(), 20, "the removal published by a")
        assert (
            shown()
            == "Cy was removed; the removal is still pending at b (they remove them when they come back)\n"
        )
        assert "Cy" in users(b.db)
        procs.append(sync(b, "sync2.log"))
        wait_until(lambda: "Cy" not in users(b.db), 20, "Cy removed at b on its return")
        wait_until(lambda: "every door" in shown(), 20, "b acknowledging the removal")
        # A door taken out of service is retired by clearing its announcement: no longer waited for.
        assert stop(procs.pop()) == 0
        with Gallery(a.db) as g:
            g.enrol("Dee", faces(1), MODEL_ID)
            g.remove("Dee")
        show = ("users", "show", "Dee", "--db", a.db, "--config", a.config)
        wait_until(lambda: "still pending at b" in shown(), 20, "Dee's removal pending at b")
        sub = subscriber(broker, pki)
        try:
            sub.publish(f"facegate/site/{SITE}/doors/b", "", retain=True)
        finally:
            sub.close()
        wait_until(lambda: "every door" in shown(), 20, "b retired")
    finally:
        codes = [stop(p) for p in procs]
    assert codes == [0], (a.folder / "sync.log").read_text()[-2000:]
    text = (b.folder / "sync.log").read_text()
    assert PASSWORD not in text and "applied the change to Ann from door a" in text


def test_a_door_that_was_offline_catches_up_and_a_new_door_receives_every_user(site, tmp_path):
    broker, pki, a, b = site
    pa, pb = sync(a), sync(b)
    try:
        with Gallery(a.db) as g:
            g.enrol("Ann", faces(2), MODEL_ID)
        wait_until(lambda: "Ann" in users(b.db), 20, "Ann at b")
        broker.stop()
        with Gallery(a.db) as g:
            g.enrol("Bob", faces(2), MODEL_ID)
            g.remove("Ann")
        time.sleep(1.0)
        assert users(b.db) == {"Ann": (1, 2)}  # the broker is away: nothing can arrive
        # ... and door a keeps its own users all along (it decides locally).
        assert users(a.db) == {"Bob": (1, 2)}
        broker.start()
        wait_until(lambda: users(b.db) == {"Bob": (1, 2)}, 40, "b catching up after the broker returned")
        # A door joining now, from scratch, receives every user (and no removed one).
        c = door_folder(tmp_path, "c", broker.port, pki, tmp_path / "site.key")
        with _Running(sync(c)):
            wait_until(lambda: users(c.db) == {"Bob": (1, 2)}, 20, "the new door c receiving every user")
    finally:
        stop(pa), stop(pb)


class _Running:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def __enter__(self) -> subprocess.Popen[bytes]:
        return self.proc

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)


def test_kill_9_during_a_sync_loses_and_duplicates_nothing(site):
    broker, pki, a, b = site
    n = 1000
    with Gallery(a.db) as g:
        for i in range(n):
            g.enrol(f"user{i:04d}", faces(2), MODEL_ID)
    sub = subscriber(broker, pki)
    prefix = f"facegate/site/{SITE}/users/"

    def on_broker() -> int:
        return len({m.topic for m in list(sub.messages) if m.topic.startswith(prefix)})

    # Door a killed while it publishes its users, and started again.
    pa = sync(a)
    try:
        wait_until(lambda: on_broker() >= 1, 60, "a publishing")
        pa.send_signal(signal.SIGKILL)
        pa.wait(10)
        stop(pa)
        sent = on_broker()
        print(f"killed a with {sent} of {n} users on the broker")
        assert sent < n, "the kill came too late to test anything"
        pa = sync(a, "sync2.log")
        try:
            wait_until(lambda: on_broker() >= n, 60, "a publishing after its restart")
        finally:
            sub.close()
        pb = sync(b)
        wait_until(lambda: len(users(b.db)) >= 150, 60, "b applying the first records")
        pb.send_signal(signal.SIGKILL)
        pb.wait(10)
        stop(pb)
        got = len(users(b.db))
        print(f"killed b with {got} of {n} users applied")
        assert 0 < got < n, f"the kill came too late to test anything ({got} of {n} applied)"
        # Meanwhile a change at a, made while b is down.
        with Gallery(a.db) as g:
            g.set_active("user0000", False)
        pb = sync(b, "sync2.log")
        try:
            wait_until(lambda: len(users(b.db)) == n, 60, "b finishing after its restart")
            wait_until(lambda: users(b.db)["user0000"] == (0, 2), 20, "a's later change at b")
        finally:
            stop(pb)
    finally:
        stop(pa)
    assert all(t == 2 for _, t in users(b.db).values())  # every user once, with their 2 templates once
    with sqlite3.connect(b.db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM templates").fetchone()[0] == 2 * n
        assert conn.execute("SELECT COUNT(*) FROM site_records").fetchone()[0] == n
        assert conn.execute("SELECT COUNT(*) FROM site_records WHERE published = 0").fetchone()[0] == 0
    with sqlite3.connect(a.db) as conn:
        assert conn.execute("SELECT COUNT(*), SUM(published) FROM site_records").fetchone() == (n, n)


def test_a_tampered_or_foreign_record_is_refused_and_never_applied(site, tmp_path):
    broker, pki, a, b = site
    from appliance.gallery.replica import UserState, Version
    from appliance.sites.records import SiteKey, read_key_file

    pb = sync(b)
    sub = subscriber(broker, pki)
    try:
        key = SiteKey(read_key_file(b.folder / "site.key"), SITE)
        topic = f"facegate/site/{SITE}/users/{key.user_key('Mallory')}"
        from appliance.gallery.replica import TemplateState

        state = UserState("Mallory", templates=(TemplateState(MODEL_ID, faces(1)[0].tobytes(), None),))
        good = json.loads(key.seal(state, Version(int(time.time() * 1000), "x")))
        data = bytearray(base64.b64decode(good["data"]))
        data[-1] ^= 0x01
        tampered = {**good, "data": base64.b64encode(bytes(data)).decode()}
        foreign = SiteKey(bytes(32), SITE).seal(state, Version(int(time.time() * 1000), "x"))
        wait_until(lambda: "connected" in (b.folder / "sync.log").read_text(), 20, "b connected")
        sub.publish(topic, json.dumps(tampered), retain=True)
        sub.publish(topic, foreign.decode(), retain=True)
        sub.publish(topic, json.dumps({**good, "version": good["version"] + 10}), retain=True)

        def refused() -> int:
            return (b.folder / "sync.log").read_text().count("refused a record")

        wait_until(lambda: refused() >= 3, 20, "three refusals at b")
        assert "Mallory" not in users(b.db)
        # The untouched record does go through: the refusals were for the tampering, not the person.
        sub.publish(topic, json.dumps(good), retain=True)
        wait_until(lambda: "Mallory" in users(b.db), 20, "the genuine record at b")
    finally:
        sub.close()
        stop(pb)
    log = (b.folder / "sync.log").read_text()
    assert "failed authentication" in log and "another site key" in log
    with Gallery(b.db) as g:
        reasons = [e.reason for e in g.events(limit=None) if e.kind == "site"]
    assert sum("refused a record" in r for r in reasons) == 3


def test_site_mode_refuses_to_start_without_tls_or_credentials(tmp_path, capsys, cli_tmp):
    key = make_site_key(tmp_path)
    for mqtt, expected in (
        ('host = "127.0.0.1"\nusername = "u"\npassword_file = "p"\n', "needs the broker over TLS"),
        ('host = "127.0.0.1"\ntls = true\n', "needs broker credentials"),
        ("", "[mqtt] host is not set"),
    ):
        cfg = tmp_path / "config.toml"
        cfg.write_text(f'[mqtt]\n{mqtt}\n[site]\nsite_id = "hq"\nkey_file = "{key}"\n')
        code, _, err = run(capsys, "sync", "--config", cfg, "--db", tmp_path / "g.db")
        assert code != 0
        one_line_error(err, expected)
    key.chmod(0o644)
    cfg.write_text(
        f'[mqtt]\nhost = "h"\ntls = true\nusername = "u"\npassword_file = "p"\n[site]\nsite_id = "hq"\n'
        f'key_file = "{key}"\n'
    )
    code, _, err = run(capsys, "sync", "--config", cfg, "--db", tmp_path / "g.db")
    assert code != 0
    one_line_error(err, "chmod 600")


def blank(n: int) -> list[np.ndarray]:
    """Frames of an empty hall with camera noise."""
    noise = np.random.default_rng(1)
    base = np.full((480, 640, 3), (90, 100, 110), np.uint8)
    return [np.clip(base + noise.normal(0, 2.0, base.shape), 0, 255).astype(np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def late_visit(tmp_path_factory, detector, photos) -> Path:
    """10 s of an empty hall (the enrolment at the other door happens meanwhile), then Obama walks up."""
    from appliance.evaluation.walkup import head_and_shoulders, walkup_frames, write_video
    from appliance.vision.images import read_image

    image = read_image(photos["obama2.jpg"])
    frames = blank(150) + walkup_frames(head_and_shoulders(image, detector.detect(image)[0].box)) + blank(15)
    return write_video(frames, tmp_path_factory.mktemp("late") / "late.mp4", fps=15.0)


def decisions(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{"]


@pytest.mark.slow
def test_a_running_door_grants_a_person_enrolled_at_another_and_denies_them_once_removed_there(
    site, late_visit, photos, capsys, cli_tmp
):
    broker, pki, a, b = site
    procs = [sync(a), sync(b)]
    try:
        for door in (a, b):
            wait_until(lambda d=door: "connected" in (d.folder / "sync.log").read_text(), 20, "connected")
        # Door b is running (real time) on a clip where nobody comes for 10 s, then Obama walks up.
        run_b = facegate(
            "run", "--headless", "--realtime", "--json", "--source", late_visit, "--db", b.db,
            "--config", b.config, log=b.folder / "door.log",
        )  # fmt: skip
        try:
            time.sleep(3.0)  # the door is up, with nobody enrolled anywhere
            code, _, err = run(
                capsys, "enroll", "obama", photos["obama.jpg"], "--db", a.db, "--config", a.config
            )
            assert code == 0, err
            enrolled = time.time()
            wait_until(lambda: "obama" in users(b.db), 20, "obama in b's gallery")
            took_ms = (time.time() - enrolled) * 1000
            with capsys.disabled():
                print(f"\nenrol at a -> in the running door b's gallery: {took_ms:.0f} ms")
            assert run_b.wait(60) == 0, (b.folder / "door.log").read_text()[-3000:]
        finally:
            stop(run_b)
        granted = [d for d in decisions(b.folder / "door.log") if d["decision"] == "grant"]
        assert [d["user"] for d in granted] == ["obama"], (b.folder / "door.log").read_text()[-3000:]
        # Removed at b: door a no longer lets them in.
        code, _, err = run(capsys, "users", "remove", "obama", "--db", b.db, "--config", b.config)
        assert code == 0, err
        wait_until(lambda: "obama" not in users(a.db), 20, "obama removed at a")
        code, out, _ = run(capsys, "users", "show", "obama", "--db", a.db, "--config", a.config)
        assert code == 0 and "obama was removed; the removal is" in out
        run_a = facegate(
            "run", "--headless", "--json", "--source", late_visit, "--db", a.db, "--config", a.config,
            log=a.folder / "door.log",
        )  # fmt: skip
        assert run_a.wait(120) == 0, (a.folder / "door.log").read_text()[-3000:]
        stop(run_a)
        seen = decisions(a.folder / "door.log")
        assert not [d for d in seen if d["decision"] == "grant"]
        assert [d for d in seen if d["decision"] == "deny"], seen
    finally:
        for p in procs:
            stop(p)


def test_the_sync_unit_verifies_and_is_sandboxed(tmp_path):
    """systemd/facegate-sync.service: `facegate sync` as the facegate user, writing only its state folder."""
    import re
    import shutil

    from test_systemd_unit import EXECUTABLE, MAX_EXPOSURE, ROOT, analyze, directives

    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    text = (ROOT / "systemd" / "facegate-sync.service").read_text()
    d = directives(text)
    assert d["ExecStart"] == [f"{EXECUTABLE} sync --config /etc/facegate/config.toml"]
    assert (
        d["User"] == ["facegate"] and d["StateDirectory"] == ["facegate"] and d["ProtectSystem"] == ["strict"]
    )
    stub = tmp_path / "facegate"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "facegate-sync.service"
    unit.write_text(text.replace(EXECUTABLE, str(stub)))
    result = analyze("verify", "--man=no", str(unit), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    result = analyze("security", "--offline=true", "--no-pager", str(unit), cwd=tmp_path)
    match = re.search(r"Overall exposure level for facegate-sync\.service:\s*([\d.]+)", result.stdout)
    assert match and float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_doctor_checks_the_site_key_and_names_its_id(site, capsys, cli_tmp):
    broker, pki, a, b = site
    code, out, err = run(
        capsys, "doctor", "--config", a.config, "--db", a.db, "--headless", "--no-camera", "--json"
    )
    checks = {c["name"]: c for c in json.loads(out)}
    from appliance.sites.records import SiteKey, read_key_file

    kid = SiteKey(read_key_file(a.folder / "site.key"), SITE).kid
    assert checks["site"]["ok"] and checks["site"]["detail"] == f"site {SITE} as door a, key id {kid}"
    (a.folder / "site.key").chmod(0o640)
    code, out, err = run(
        capsys, "doctor", "--config", a.config, "--db", a.db, "--headless", "--no-camera", "--json"
    )
    checks = {c["name"]: c for c in json.loads(out)}
    assert code == 1 and not checks["site"]["ok"] and "chmod 600" in checks["site"]["detail"]
    # The door service's own check (--no-mqtt: it has no network) does not depend on the site.
    code, out, err = run(
        capsys,
        "doctor",
        "--config",
        a.config,
        "--db",
        a.db,
        "--headless",
        "--no-camera",
        "--no-mqtt",
        "--json",
    )
    assert "site" not in {c["name"] for c in json.loads(out)}


def test_a_broker_that_lost_its_store_is_given_every_record_again(site, tmp_path):
    broker, pki, a, b = site
    pa, pb = sync(a), sync(b)
    try:
        with Gallery(a.db) as g:
            g.enrol("Ann", faces(2), MODEL_ID)
        with Gallery(b.db) as g:
            g.enrol("Bob", faces(2), MODEL_ID)
        wait_until(lambda: set(users(a.db)) == set(users(b.db)) == {"Ann", "Bob"}, 20, "both at both")
        broker.stop()
        (broker.folder / "mosquitto.db").unlink()  # a new broker, with nothing retained
        broker.start()
        c = door_folder(tmp_path, "c", broker.port, pki, tmp_path / "site.key")
        with _Running(sync(c)):
            wait_until(lambda: set(users(c.db)) == {"Ann", "Bob"}, 30, "the new door c receiving every user")
        # Whichever door settled first after the reconnect put the records back.
        assert any("the broker lacked" in (d.folder / "sync.log").read_text() for d in (a, b))
    finally:
        stop(pa), stop(pb)


def test_edits_made_at_two_doors_while_apart_end_the_same_at_both_and_are_logged(site):
    broker, pki, a, b = site
    pa, pb = sync(a), sync(b)
    try:
        with Gallery(a.db) as g:
            g.enrol("Ann", faces(2), MODEL_ID)
        wait_until(lambda: "Ann" in users(b.db), 20, "Ann at b")
        broker.stop()
        with Gallery(a.db) as g:
            g.set_active("Ann", False)
        time.sleep(0.05)
        with Gallery(b.db) as g:  # later: the larger clock, so b's edit wins at both doors
            g.set_validity("Ann", None, 1_900_000_000.0)
        time.sleep(0.5)  # both syncs stamp their change while the broker is away
        broker.start()

        def state(db: Path) -> tuple:
            with sqlite3.connect(db) as conn:
                return conn.execute(
                    "SELECT active, valid_from, valid_until FROM users WHERE name = 'Ann'"
                ).fetchone()

        try:
            wait_until(
                lambda: state(a.db) == state(b.db) == (1, None, 1_900_000_000.0), 30, "the same state at both"
            )
        except AssertionError:
            print(
                state(a.db),
                state(b.db),
                (a.folder / "sync.log").read_text(),
                (b.folder / "sync.log").read_text(),
            )
            raise
        time.sleep(1.0)
        assert state(a.db) == state(b.db) == (1, None, 1_900_000_000.0)  # and it stays so
    finally:
        stop(pa), stop(pb)
    # Door a, whose edit lost, always sees b's and logs the conflict; b logs it too when a's record
    # reached the broker before a had b's (otherwise b never learns of a's edit at all).
    for door in (a,):
        with Gallery(door.db) as g:
            conflicts = [
                e.reason for e in g.events(limit=None) if e.kind == "site" and "conflict" in e.reason
            ]
        assert conflicts and "kept door b's version" in conflicts[0], (door.name, conflicts)
