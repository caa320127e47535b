"""`facegate web` over plain HTTP, against a real server process and gallery: setting the password, the
sign-in guard, CSRF on every POST route, the security headers, lock / unlock requests as events."""

from __future__ import annotations

import http.cookiejar
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from web_server import ADMIN, PASSWORD, WebServer, facegate, start_web, write_config

from appliance.gallery.store import Gallery


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None  # let the test see the 303 itself


class Browser:
    """An HTTP client with a cookie jar that does not follow redirects."""

    def __init__(self, url: str):
        self.url = url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)

    def request(self, path: str, data: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        """Status, headers and body of GET (data None) or a url-encoded POST."""
        body = None if data is None else urllib.parse.urlencode(data).encode()
        try:
            with self.opener.open(self.url + path, data=body, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def csrf(self, path: str = "/signin") -> str:
        """The CSRF token of the form on `path`."""
        status, _, html = self.request(path)
        assert status == 200, (path, status)
        match = re.search(r'name="csrf" value="([^"]+)"', html)
        assert match, html
        return match.group(1)

    def sign_in(self, password: str = PASSWORD) -> tuple[int, dict[str, str], str]:
        return self.request("/signin", {"csrf": self.csrf(), "name": ADMIN, "password": password})


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[WebServer]:
    web = start_web(tmp_path_factory.mktemp("web"))
    yield web
    assert web.stop() == 0, web.log.read_text()
    # No password is ever logged, not even a wrong one.
    log = web.log.read_text()
    assert PASSWORD not in log and "wrong-password-123" not in log


def test_password_is_stored_hashed_and_never_taken_from_the_command_line(tmp_path: Path):
    config = write_config(tmp_path, 8080)
    done = facegate("web", "--config", str(config), "--set-password", stdin=PASSWORD + "\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    stored = (tmp_path / "web-admins").read_text()
    assert stored.startswith(f"{ADMIN}:scrypt$") and PASSWORD not in stored
    assert PASSWORD not in done.stdout + done.stderr
    refused = facegate("web", "--config", str(config), "--set-password", "--password", PASSWORD, cwd=tmp_path)
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr
    short = facegate("web", "--config", str(config), "--set-password", stdin="short\n", cwd=tmp_path)
    assert short.returncode == 1 and "at least 10 characters" in short.stderr


def test_web_refuses_to_start_without_an_admin_password(tmp_path: Path):
    config = write_config(tmp_path, 8080)
    done = facegate("web", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("facegate: error:")]
    assert len(errors) == 1 and "facegate web --set-password" in errors[0], done.stderr


def test_every_page_needs_a_session(server: WebServer):
    b = Browser(server.url)
    paths = ("/", "/users", "/user?name=x", "/events", "/events.csv", "/status", "/user/remove?name=x")
    for path in paths + ("/live", "/live.jpg", "/enrol"):
        status, headers, _ = b.request(path)
        assert status == 303 and headers["location"] == "/signin", path
    # A POST with a valid CSRF token but no session changes nothing.
    status, headers, _ = b.request("/door", {"csrf": b.csrf(), "action": "unlock_now"})
    assert status == 303 and headers["location"] == "/signin"
    with Gallery(server.gallery) as g:
        assert not [e for e in g.events(limit=None) if e.kind == "unlock_now"]


def test_a_forged_session_cookie_is_not_a_session(server: WebServer):
    b = Browser(server.url)
    assert b.sign_in()[0] == 303
    for cookie in b.jar:
        if cookie.name == "fg_session":
            name, expires, nonce, mac = cookie.value.split("|")
            cookie.value = f"{name}|{int(expires) + 86400 * 365}|{nonce}|{mac}"
    status, headers, _ = b.request("/users")
    assert status == 303 and headers["location"] == "/signin"


def test_pages_carry_the_security_headers_and_cookies_are_httponly(server: WebServer):
    b = Browser(server.url)
    _, headers, html = b.request("/signin")
    assert "script-src" not in headers["content-security-policy"]  # default-src 'none': no script
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    assert "<script" not in html
    status, headers, _ = b.sign_in()
    assert (
        status == 303 and "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]
    )


def post_routes(server: WebServer) -> list[str]:
    """Every POST route of the app, read from the app itself, so that a new form cannot be missed."""
    from appliance.config import load_config
    from appliance.web.server import create_app

    app = create_app(load_config(server.config))
    return sorted({r.path for r in app.routes if "POST" in (getattr(r, "methods", None) or ())})


def test_every_post_route_refuses_a_form_without_its_csrf_token(server: WebServer):
    routes = post_routes(server)
    assert {"/signin", "/users/add", "/user/remove", "/door"} <= set(routes)
    b = Browser(server.url)
    assert b.sign_in()[0] == 303
    other = Browser(server.url)
    foreign = other.csrf()  # a valid token, but of another browser
    with Gallery(server.gallery) as g:
        before = len(g.events(limit=None))
    for path in routes:
        fields = {
            "name": "x",
            "action": "unlock_now",
            "new_name": "y",
            "confirm": "yes",
            "password": PASSWORD,
        }
        for token in ({}, {"csrf": ""}, {"csrf": foreign}):
            status, _, body = b.request(path, fields | token)
            assert status == 403 and "CSRF" in body, (path, token, status, body)
    with Gallery(server.gallery) as g:
        assert len(g.events(limit=None)) == before  # nothing happened


def test_lock_and_unlock_requests_are_events_naming_the_admin(server: WebServer):
    b = Browser(server.url)
    assert b.sign_in()[0] == 303
    for action in ("lock_now", "unlock_now"):
        status, headers, _ = b.request("/door", {"csrf": b.csrf("/status"), "action": action})
        assert status == 303 and headers["location"] == "/status"
    with Gallery(server.gallery) as g:
        events = [e for e in g.events(limit=None) if e.kind in ("lock_now", "unlock_now")]
    assert [e.kind for e in events] == ["unlock_now", "lock_now"]
    assert all(f"web admin {ADMIN} from 127.0.0.1" in e.reason for e in events)
    _, _, html = b.request("/status")
    assert "unlock_now" in html and "models" in html


class LoopingMjpegCamera:
    """A live camera on localhost: serves one gray frame as an MJPEG stream at 15 fps until closed."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/stream"
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        ok, jpeg = cv2.imencode(".jpg", np.full((480, 640, 3), 128, np.uint8))
        assert ok
        part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
        part += jpeg.tobytes() + b"\r\n"
        try:
            client, _ = self.server.accept()
            client.recv(65536)  # the GET request
            client.sendall(
                b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n"
            )
            while not self.closed.is_set():
                client.sendall(part)
                time.sleep(1 / 15)
            client.close()
        except OSError:
            return

    def close(self) -> None:
        self.closed.set()
        self.server.close()


def wait_for_event(gallery: Path, match, timeout_s: float):  # type: ignore[no-untyped-def]
    """The first event for which match(event) is true, polling the gallery; None after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with Gallery(gallery) as g:
            found = [e for e in g.events(limit=50) if match(e)]
        if found:
            return found[0]
        time.sleep(0.1)
    return None


def test_the_door_process_carries_out_an_unlock_request_from_the_page(server: WebServer):
    camera = LoopingMjpegCamera()
    door = subprocess.Popen(
        [sys.executable, "-m", "appliance", "run", "--headless", "--source", camera.url]
        + ["--config", str(server.config)],
        cwd=server.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = wait_for_event(server.gallery, lambda e: e.reason == f"started on {camera.url}", 60)
        assert started is not None, "the door process did not start"
        b = Browser(server.url)
        assert b.sign_in()[0] == 303
        sent = time.monotonic()
        assert b.request("/door", {"csrf": b.csrf("/status"), "action": "unlock_now"})[0] == 303
        done = wait_for_event(server.gallery, lambda e: e.reason.startswith("door unlocked"), 10)
        took = time.monotonic() - sent
        assert done is not None and f"web admin {ADMIN}" in done.reason
        print(f"unlock request carried out by the door process {took:.2f} s after the POST")
        assert took < 3.0  # polled once a second
        check_live_view(server, b)
    finally:
        door.terminate()
        _, err = door.communicate(timeout=30)
        camera.close()
    assert door.returncode == 0, err[-2000:]


def check_live_view(server: WebServer, b: Browser) -> None:
    """With the door process running on a live camera: no frame is shared until the live view is opened;
    then the signed-in admin gets the door's frames, and a browser without a session gets none."""
    live = server.folder / "live"
    assert not (live / "live.jpg").exists()  # the door has run for a while, and nobody watched
    status, _, html = b.request("/live")  # asks the door for frames
    assert status == 200 and 'http-equiv="refresh"' in html
    deadline, status = time.monotonic() + 10, 0
    while status != 200 and time.monotonic() < deadline:
        try:
            with b.opener.open(b.url + "/live.jpg", timeout=30) as resp:
                status, kind, data = resp.status, resp.headers["content-type"], resp.read()
        except urllib.error.HTTPError as exc:
            assert exc.code == 404, exc.code  # no frame yet: the door looks twice a second
            time.sleep(0.2)
    assert status == 200 and kind == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (480, 640, 3)  # the camera's frame
    status, _, html = b.request("/live")
    assert status == 200 and 'id="live-frame"' in html and 'id="door-state"' in html, html
    info = json.loads((live / "live.json").read_text())
    assert info["door"] in ("locked", "unlocked") and info["faces"] == []  # a gray frame: no face
    anonymous = Browser(server.url)
    status, headers, body = anonymous.request("/live.jpg")
    assert status == 303 and headers["location"] == "/signin"


def test_the_enrol_at_the_door_page_follows_the_shots_the_door_shares(server: WebServer):
    from appliance.app.live_view import Snapshot, write_snapshot

    b = Browser(server.url)
    assert b.sign_in()[0] == 303
    status, headers, _ = b.request("/users/stage", {"csrf": b.csrf("/users"), "name": "erin", "role": "user"})
    assert status == 303 and headers["location"] == "/enrol?name=erin"
    _, _, html = b.request("/enrol?name=erin")
    assert "<b>erin</b> (user) is staged" in html and 'http-equiv="refresh"' in html
    # What the door writes while it captures (app/live_view.py, as in tests/test_live_view.py).
    progress = {"name": "user-20261202-101500", "shots": 5, "taken": 2}
    gray = np.full((480, 640, 3), 128, np.uint8)
    write_snapshot(server.folder / "live", Snapshot(gray, [], None, None, None, True, progress))
    _, _, html = b.request("/enrol?name=erin")
    assert 'id="shots">shot 2 of 5</span>' in html and 'id="live-frame"' in html
    with Gallery(server.gallery) as g:
        g.enrol_at_door("user-20261202-101500", np.eye(3, 128, dtype=np.float32), "m")  # the door stores it
    _, _, html = b.request("/enrol?name=erin")
    assert "<b>erin</b> is enrolled (user, 3 template(s))" in html and 'http-equiv="refresh"' not in html


def test_sign_in_is_rate_limited_per_address(server: WebServer):
    # Last in this module: it locks 127.0.0.1 out of this server for the rest of the window.
    b = Browser(server.url)
    for _ in range(5):
        status, headers, _ = b.sign_in("wrong-password-123")
        assert status == 303 and headers["location"] == "/signin"
        _, _, html = b.request("/signin")
        assert "wrong admin name or password" in html
    status, _, _ = b.sign_in()  # the right password, but too many failures came first
    _, _, html = b.request("/signin")
    assert "too many failed sign-ins" in html
    assert all(c.name != "fg_session" for c in b.jar)


def test_serving_the_network_over_plain_http_is_warned_about_and_tls_needs_both_files(tmp_path: Path):
    from appliance.config import config_warnings, load_config
    from appliance.errors import ConfigError

    (tmp_path / "c.toml").write_text('[web]\nhost = "0.0.0.0"\n')
    warnings = config_warnings(load_config(tmp_path / "c.toml"))
    assert len(warnings) == 1 and "plain HTTP" in warnings[0] and "tls_cert" in warnings[0]
    (tmp_path / "c.toml").write_text('[web]\nhost = "0.0.0.0"\ntls_cert = "cert.pem"\ntls_key = "key.pem"\n')
    cfg = load_config(tmp_path / "c.toml")
    assert not config_warnings(cfg) and cfg.web.tls_cert == str(tmp_path / "cert.pem")
    assert cfg.web.password_file == tmp_path / "web-admins"  # next to the gallery
    (tmp_path / "c.toml").write_text('[web]\ntls_cert = "cert.pem"\n')
    with pytest.raises(ConfigError, match="give both"):
        load_config(tmp_path / "c.toml")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_with_a_certificate_the_page_is_https_only_and_cookies_are_secure(tmp_path: Path):
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"]
        + ["-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        capture_output=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    web = start_web(tmp_path, 'tls_cert = "cert.pem"\ntls_key = "key.pem"\n', scheme="https")
    try:
        insecure = ssl._create_unverified_context()
        with urllib.request.urlopen(web.url + "/signin", context=insecure, timeout=10) as resp:
            assert resp.status == 200 and "Secure" in resp.headers["set-cookie"]
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # no plain HTTP on that port
            urllib.request.urlopen(web.url.replace("https", "http") + "/signin", timeout=10)
    finally:
        assert web.stop() == 0


def test_sigterm_stops_the_page_with_0_even_if_the_parent_had_it_blocked(tmp_path: Path):
    # The door's SignalThread blocks SIGTERM in its process, and a blocked mask is inherited by children.
    block = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    web = start_web(tmp_path, preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, block))
    sent = time.monotonic()
    assert web.stop() == 0
    assert time.monotonic() - sent < 5.0
