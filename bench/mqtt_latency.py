"""Decision -> broker latency of `facegate mqtt`: prints milliseconds, asserts nothing.

    .venv/bin/python bench/mqtt_latency.py [--events 200] [--interval 0.05] [--burst 50]

Starts Debian's mosquitto on a free localhost port, the door link server of the door process
(appliance/app/door_link.py, the code `facegate run` uses) in this process, `facegate mqtt` as its own
process, and a paho subscriber. Each event is stamped with the wall clock when the door logs it (the
moment of the decision, as in the door process) and timed to its arrival at the subscriber: that is
door link + bridge + broker + the broker's delivery to a client, an upper bound on decision -> broker.
Then a burst of events logged at once shows the in-order outbox's cost per queued event.
"""

from __future__ import annotations

import argparse
import getpass
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from appliance.app.door_link import DoorLinkServer

ROOT = Path(__file__).resolve().parents[1]
EVENT_TOPIC = "facegate/door/event"
BUDGET_MS = 200.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"mqtt_latency: timed out waiting for {what}")
        time.sleep(0.01)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200, help="events sent one at a time (default 200)")
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between them (default 0.05)")
    ap.add_argument("--burst", type=int, default=50, help="events then logged at once (default 50)")
    args = ap.parse_args()
    mosquitto = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if mosquitto is None:
        sys.exit("mqtt_latency: mosquitto is not installed (apt-get install mosquitto)")
    work = Path(tempfile.mkdtemp(prefix="facegate-mqtt-bench-"))
    port = free_port()
    (work / "mosquitto.conf").write_text(
        f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
    )
    broker = subprocess.Popen(
        [mosquitto, "-c", str(work / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    cfg = work / "config.toml"
    cfg.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nsocket = "{work / "door.sock"}"\n')
    arrivals: dict[int, float] = {}
    lock = threading.Lock()

    def on_message(client, userdata, message) -> None:
        now = time.time()
        with lock:
            arrivals[json.loads(message.payload)["seq"]] = now

    link = DoorLinkServer(work / "door.sock", lambda: (True, None), lambda command, origin: None)
    sub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    bridge = None
    try:
        with socket.socket() as s:
            wait(lambda: s.connect_ex(("127.0.0.1", port)) == 0, 10, "mosquitto")
        sub.connect("127.0.0.1", port)
        sub.subscribe(EVENT_TOPIC, qos=1)
        sub.loop_start()
        bridge = subprocess.Popen(
            [sys.executable, "-m", "appliance", "mqtt", "--config", str(cfg)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait(lambda: link.clients == 1, 20, "the bridge to connect to the door link")
        time.sleep(1.0)  # let it finish connecting to the broker and publishing discovery

        sent: dict[int, float] = {}
        for i in range(args.events):
            when = time.time()
            link.event("grant", "bench", 0.97, "matched", when)
            sent[i + 1] = when
            time.sleep(args.interval)
        wait(lambda: len(arrivals) >= args.events, 30, "the events")
        one = [(arrivals[k] - sent[k]) * 1000 for k in sent]

        start = time.time()
        for _ in range(args.burst):
            link.event("deny", None, 0.8, "unknown face", time.time())
        total = args.events + args.burst
        wait(lambda: len(arrivals) >= total, 30, "the burst")
        with lock:
            burst_seqs = sorted(arrivals, key=arrivals.get)[args.events :]
            last = max(arrivals.values())
        in_order = burst_seqs == sorted(burst_seqs)
    finally:
        if bridge is not None:
            bridge.terminate()
            bridge.wait(10)
        link.close()
        sub.loop_stop()
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    print(f"decision -> bridge -> broker -> subscriber, {args.events} events {args.interval:g} s apart:")
    print(
        f"  median {statistics.median(one):.2f} ms, p95 {percentile(one, 0.95):.2f} ms, "
        f"max {max(one):.2f} ms (budget {BUDGET_MS:g} ms: {'met' if max(one) <= BUDGET_MS else 'MISSED'})"
    )
    print(
        f"burst of {args.burst} events logged at once: the last arrived {(last - start) * 1000:.1f} ms later "
        f"({(last - start) * 1000 / args.burst:.2f} ms per event, one in flight at a time), "
        f"{'in order' if in_order else 'OUT OF ORDER'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
