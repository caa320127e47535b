"""Site replication figures of `facegate sync`: prints numbers, asserts nothing.

    .venv/bin/python bench/site_join.py [--users 1000] [--templates 5] [--changes 20]

Needs Debian's mosquitto and the openssl CLI. Starts mosquitto on a free localhost port with TLS and a
password (as site mode requires), makes a site key, and two door folders, each with its own gallery
file and `facegate sync` process. Door a holds `--users` users of `--templates` templates each; then:

- publish: door a's sync starts and puts every user's record on the broker (time until a subscriber
  has seen all of them, from the sync's start);
- join: door b, from an empty gallery, receives and applies every user (time from its start until its
  gallery file holds them all, and from its "connected" line; records/s on the latter);
- propagation: `--changes` times, one enrolment then one removal at a, timed from its commit to the
  moment b's gallery file shows it (polled every 5 ms; the door process itself reloads within 2 s more).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from mqtt_helpers import Subscriber, facegate, stop  # noqa: E402
from site_helpers import PASSWORD, SITE, door_folder, make_pki, make_site_key, tls_broker  # noqa: E402

from appliance.gallery.store import Gallery  # noqa: E402
from appliance.vision.embedder import MODEL_ID  # noqa: E402


def faces(rng: np.random.Generator, n: int, d: int = 128) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def count_users(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def has_user(db: Path, name: str) -> bool:
    with sqlite3.connect(db, timeout=10) as conn:
        return conn.execute("SELECT 1 FROM users WHERE name = ?", [name]).fetchone() is not None


def wait(predicate, timeout_s: float, what: str, poll_s: float = 0.005) -> float:
    """Poll until true; the time.time() it became true."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"site_join: timed out waiting for {what}")
        time.sleep(poll_s)
    return time.time()


def connected_at(log: Path) -> float:
    """When the sync process logged its connection (its log's timestamps are not parsed: polled)."""
    wait(lambda: "connected" in log.read_text(), 60, "the sync connecting", poll_s=0.002)
    return time.time()


def summary(values_ms: list[float]) -> str:
    values_ms = sorted(values_ms)
    p95 = values_ms[min(len(values_ms) - 1, int(round(0.95 * (len(values_ms) - 1))))]
    return f"median {statistics.median(values_ms):6.0f} ms   p95 {p95:6.0f} ms   max {values_ms[-1]:6.0f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--templates", type=int, default=5)
    ap.add_argument("--changes", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(15)
    with tempfile.TemporaryDirectory(prefix="site-join-") as tmp:
        root = Path(tmp)
        pki = make_pki(root / "pki")
        broker = tls_broker(root / "broker", pki).start()
        key = make_site_key(root)
        a = door_folder(root, "a", broker.port, pki, key)
        b = door_folder(root, "b", broker.port, pki, key)
        procs: list[subprocess.Popen[bytes]] = []
        sub = Subscriber(broker.port, tls={"ca_certs": str(pki / "ca.pem")}, auth=("facegate", PASSWORD))
        try:
            with Gallery(a.db) as g:
                for i in range(args.users):
                    g.enrol(f"member{i:05d}", faces(rng, args.templates), MODEL_ID)
            prefix = f"facegate/site/{SITE}/users/"

            def on_broker() -> int:
                return len({m.topic for m in list(sub.messages) if m.topic.startswith(prefix)})

            started = time.time()
            procs.append(facegate("sync", "--config", a.config, "--db", a.db, log=a.folder / "sync.log"))
            done = wait(lambda: on_broker() >= args.users, 300, "door a publishing", poll_s=0.01)
            size = sum(len(m.payload) for m in sub.messages if m.topic.startswith(prefix)) / max(
                1, on_broker()
            )
            print(
                f"publish: {args.users} users x {args.templates} templates from door a in "
                f"{done - started:.2f} s "
                f"(from start, process start-up included); {size / 1024:.1f} kB per record"
            )

            started = time.time()
            procs.append(facegate("sync", "--config", b.config, "--db", b.db, log=b.folder / "sync.log"))
            linked = connected_at(b.folder / "sync.log")
            done = wait(lambda: count_users(b.db) >= args.users, 600, "door b joining", poll_s=0.01)
            print(
                f"join:    door b applied {args.users} users in {done - started:.2f} s from its start, "
                f"{done - linked:.2f} s from connecting: {args.users / (done - linked):.0f} records/s"
            )

            enrol_ms, remove_ms = [], []
            for i in range(args.changes):
                name = f"visitor{i:03d}"
                with Gallery(a.db) as g:
                    g.enrol(name, faces(rng, args.templates), MODEL_ID)
                    t0 = time.time()
                enrol_ms.append((wait(lambda n=name: has_user(b.db, n), 30, "an enrolment") - t0) * 1000)
                with Gallery(a.db) as g:
                    g.remove(name)
                    t0 = time.time()
                remove_ms.append((wait(lambda n=name: not has_user(b.db, n), 30, "a removal") - t0) * 1000)
            print(f"enrol at a -> in b's gallery ({args.changes}x):  {summary(enrol_ms)}")
            print(f"remove at a -> gone at b     ({args.changes}x):  {summary(remove_ms)}")
        finally:
            sub.close()
            for p in procs:
                stop(p)
            broker.stop()


if __name__ == "__main__":
    main()
