"""`facegate run` as systemd runs it: sd_notify READY and WATCHDOG, SIGTERM, SIGHUP, a stalled loop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from appliance.access.loop import AccessLoop
from appliance.domain import Frame, Templates
from appliance.gallery.store import Gallery

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory, detector, photos) -> Path:
    """About 6 s of walk-up video at 15 fps, replayed in real time by the tests below."""
    from appliance.evaluation.walkup import head_and_shoulders, walkup_frames, write_video
    from appliance.vision.images import read_image

    image = read_image(photos["biden.jpg"])
    portrait = head_and_shoulders(image, detector.detect(image)[0].box)
    return write_video(walkup_frames(portrait, n_frames=90), tmp_path_factory.mktemp("svc") / "long.mp4")


class NotifyListener:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET; records (time, message)."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, text: str, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, message in self.messages:
                if text in message:
                    return t
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout} s; got {self.messages}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def start_service(clip: Path, db: Path, notify: Path, *config: str) -> subprocess.Popen[str]:
    """`facegate run` as the service runs it; `config` is e.g. ("--config", FILE)."""
    env = dict(os.environ, NOTIFY_SOCKET=str(notify), WATCHDOG_USEC="1000000")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance",
            "run",
            "--headless",
            "--realtime",
            "--source",
            str(clip),
            "--db",
            str(db),
            *config,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ready_then_watchdog_then_clean_stop_on_sigterm(long_clip, tmp_path, cfg, embedder):
    db = tmp_path / "g.db"
    with Gallery(db) as gallery:
        gallery.enrol("someone", np.eye(1, 128, dtype=np.float32), embedder.model_id)
    listener = NotifyListener(tmp_path / "notify.sock")
    try:
        proc = start_service(long_clip, db, tmp_path / "notify.sock")
        ready_at = listener.wait_for("READY=1")
        time.sleep(2.0)
        watchdogs = [t for t, m in listener.messages if m == "WATCHDOG=1" and t > ready_at]
        assert len(watchdogs) >= 3, listener.messages  # every half interval (0.5 s) while frames flow
        stop_sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() - stop_sent < 2.0
        listener.wait_for("STOPPING=1", timeout=1)
    finally:
        listener.close()
    with Gallery(db) as gallery:  # a second start finds the gallery intact, with the stop recorded
        assert [u.name for u in gallery.users()] == ["someone"]
        service_events = [e.reason for e in gallery.events() if e.kind == "service"]
        assert service_events[0] == "stopped: signal"


class StallingSource:
    """Yields a few frames, then blocks as a camera that stopped delivering would."""

    def __init__(self, frames: int):
        self.count = frames
        self.release = threading.Event()

    def frames(self):
        image = np.zeros((480, 640, 3), np.uint8)
        for i in range(self.count):
            yield Frame(image, i, i / 15)
        self.release.wait()

    def close(self) -> None:
        self.release.set()


class NoFaces:
    def detect(self, image):
        return []


def test_a_stalled_loop_stops_feeding_the_watchdog(cfg, embedder):
    from gpiozero.pins.mock import MockFactory

    from appliance.access.door import DoorController
    from appliance.access.policy import AccessPolicy
    from appliance.app.wiring import quality_limits
    from appliance.hardware.actuators import RelayDoorLock

    beats: list[float] = []
    factory = MockFactory()
    loop = AccessLoop(
        detector=NoFaces(),
        embedder=embedder,
        templates=Templates(np.array([], dtype=str), np.zeros((0, 0), np.float32)),
        policy=AccessPolicy(cfg.policy),
        door=DoorController(RelayDoorLock(17, active_high=True, pin_factory=factory)),
        unlock_s=cfg.policy.unlock_s,
        limits=quality_limits(cfg),
        heartbeat=lambda: beats.append(time.monotonic()),
    )
    source = StallingSource(frames=5)
    runner = threading.Thread(target=loop.run, args=(source, lambda f: f.t), daemon=True)
    runner.start()
    time.sleep(1.0)
    assert len(beats) == 5  # one per frame, none while the source is stuck
    source.close()
    runner.join(timeout=5)
    factory.reset()


def test_sighup_reloads_users_enrolled_while_running(tmp_path, detector, embedder, photos, cfg, liveness_off):
    from appliance.access.enrolment import embed_photos
    from appliance.app.wiring import quality_limits
    from appliance.evaluation.walkup import head_and_shoulders, walkup_frames, write_video
    from appliance.vision.images import read_image

    image = read_image(photos["obama2.jpg"])
    portrait = head_and_shoulders(image, detector.detect(image)[0].box)
    clip = write_video(walkup_frames(portrait, n_frames=90), tmp_path / "obama.mp4")
    template, _ = embed_photos(
        [("obama.jpg", read_image(photos["obama.jpg"]))], detector, embedder, quality_limits(cfg)
    )
    db = tmp_path / "g.db"
    Gallery(db).close()
    listener = NotifyListener(tmp_path / "notify.sock")
    try:
        # The clip is a photo moved in front of the camera: it is granted only with liveness off.
        proc = start_service(clip, db, tmp_path / "notify.sock", "--config", str(liveness_off))
        listener.wait_for("READY=1")
        with Gallery(db) as gallery:  # another process (the CLI) enrols while the door runs
            gallery.enrol("obama", template, embedder.model_id)
        proc.send_signal(signal.SIGHUP)
        out, err = proc.communicate(timeout=60)
    finally:
        listener.close()
    assert proc.returncode == 0, err
    assert "gallery reloaded" in err
    assert "GRANT  obama" in out
