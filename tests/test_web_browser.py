"""The admin page in a real browser: Debian's chromium, headless, driven by Selenium through
/usr/bin/chromedriver, against a `facegate web` started on a free port with a fresh gallery.

One walk through the page, in order (each test builds on the previous one): sign in, enrol from a
packaged photo, refusals, a door replay's grant in the events, CSV download, lock now, a form without
its CSRF token, removal, and the sign-in rate limit. A screenshot of each main page is kept in the
test's output folder (`screens/`); docs/web/ holds copies for the README.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_server import ADMIN, PASSWORD, WebServer, start_web

from appliance.gallery.store import Gallery

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (make dev)")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[WebServer]:
    web = start_web(tmp_path_factory.mktemp("web"))
    yield web
    assert web.stop() == 0, web.log.read_text()
    assert PASSWORD not in web.log.read_text()


@pytest.fixture(scope="module")
def screens(tmp_path_factory) -> Path:
    """Where the screenshots go: the test's output folder."""
    return tmp_path_factory.mktemp("screens")


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def submit(element, timeout_s: float = 60) -> None:
    """Submit the form of `element` and wait until the browser has replaced the page.

    WebElement.submit() returns before the next page is loaded; reading the page straight after it
    reads the old one (seen in CI: an empty flash after a wrong password).
    """
    html = element.parent.find_element(By.TAG_NAME, "html")
    element.submit()
    WebDriverWait(element.parent, timeout_s).until(expected_conditions.staleness_of(html))


def flash(driver) -> str:
    """The one-line message at the top of the page ("" if none)."""
    found = driver.find_elements(By.ID, "flash")
    return found[0].text if found else ""


def shot(driver, screens: Path, name: str) -> None:
    driver.save_screenshot(str(screens / f"{name}.png"))
    assert (screens / f"{name}.png").stat().st_size > 5000


def sign_in(driver, server: WebServer, password: str) -> None:
    driver.get(server.url + "/signin")
    driver.find_element(By.ID, "name").clear()
    driver.find_element(By.ID, "name").send_keys(ADMIN)
    driver.find_element(By.ID, "password").send_keys(password)
    submit(driver.find_element(By.CSS_SELECTOR, "#signin button"))


def users_table(driver) -> str:
    return driver.find_element(By.ID, "users").text


def test_sign_in_refuses_a_wrong_password_then_lets_the_admin_in(browser, server, screens):
    browser.get(server.url + "/users")
    assert browser.current_url.endswith("/signin")  # every page needs a sign-in
    shot(browser, screens, "signin")
    sign_in(browser, server, "not the password")
    assert browser.current_url.endswith("/signin") and "wrong admin name or password" in flash(browser)
    sign_in(browser, server, PASSWORD)
    assert browser.current_url.endswith("/users"), flash(browser)
    assert browser.find_element(By.ID, "admin-name").text == ADMIN
    assert "No users enrolled yet" in users_table(browser)


def enrol(driver, server: WebServer, name: str, *photos: Path) -> None:
    driver.get(server.url + "/users")
    driver.find_element(By.ID, "new-name").send_keys(name)
    driver.find_element(By.ID, "photos").send_keys("\n".join(str(p) for p in photos))
    submit(driver.find_element(By.CSS_SELECTOR, "#add-user button"))


def test_enrol_from_a_photo_and_see_the_user_listed(browser, server, screens, photos):
    sent = time.monotonic()
    enrol(browser, server, "obama", photos["obama.jpg"])
    assert "enrolled obama (user) with 1 template(s)" in flash(browser)
    took = time.monotonic() - sent
    print(f"first enrolment from one photo, submit to next page (models loaded on the way): {took:.2f} s")
    assert browser.find_element(By.ID, "user-name").text == "obama"
    shot(browser, screens, "user")
    browser.get(server.url + "/users")
    assert "obama" in users_table(browser) and "active" in users_table(browser)
    shot(browser, screens, "users")
    with Gallery(server.gallery) as g:
        assert g.user("obama").templates == 1


def test_enrolment_refuses_what_the_cli_refuses(browser, server, photos):
    # The same person again under another name: already enrolled.
    enrol(browser, server, "barack", photos["obama2.jpg"])
    assert "already matches enrolled user 'obama'" in flash(browser)
    # Another person's photo added to obama: not the same person.
    browser.get(server.url + "/user?name=obama")
    form = browser.find_element(By.CSS_SELECTOR, "form[action='/user/photos']")
    form.find_element(By.NAME, "photos").send_keys(str(photos["biden.jpg"]))
    submit(form)
    assert "biden.jpg do not look like the same person" in flash(browser), flash(browser)
    with Gallery(server.gallery) as g:
        assert [u.name for u in g.users()] == ["obama"] and g.user("obama").templates == 1


def test_change_a_users_role_and_back(browser, server):
    browser.get(server.url + "/user?name=obama")
    assert browser.find_element(By.ID, "role-now").text == "user"
    form = browser.find_element(By.CSS_SELECTOR, "form[action='/user/role']")
    form.find_element(By.CSS_SELECTOR, "option[value='admin']").click()
    submit(form)
    assert "obama is now an admin" in flash(browser)
    assert browser.find_element(By.ID, "role-now").text == "admin"
    with Gallery(server.gallery) as g:
        assert g.user("obama").role == "admin"
        event = g.events(limit=1)[0]
        assert (event.kind, event.reason) == ("set_role", f"user -> admin by web admin {ADMIN}")
    form = browser.find_element(By.CSS_SELECTOR, "form[action='/user/role']")
    form.find_element(By.CSS_SELECTOR, "option[value='user']").click()
    submit(form)
    assert "obama is now a user" in flash(browser)
    with Gallery(server.gallery) as g:
        assert g.user("obama").role == "user"


def test_a_door_replay_grant_shows_in_the_events_and_the_csv_downloads(
    browser, server, screens, downloads, enrolment_clip
):
    # The live view open while the door replays: the page reloads every second, asking for frames.
    browser.get(server.url + "/live")
    assert browser.find_elements(By.ID, "live-none")  # no door running yet: no frame
    # The door loop on a clip of obama, on the same gallery, as the door service would run it.
    run = subprocess.run(
        [sys.executable, "-m", "appliance", "run", "--headless", "--config", str(server.config)]
        + ["--source", str(enrolment_clip), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0 and '"decision": "grant"' in run.stdout, run.stderr[-2000:]
    browser.get(server.url + "/live")  # the door's last shared frame, at most 0.5 s before its end
    frame = browser.find_element(By.ID, "live-frame")
    assert browser.execute_script("return arguments[0].naturalWidth", frame) == 640
    # A face at the end of the walk-up (named where the door decided on it: tests/test_live_view.py).
    assert " at " in browser.find_element(By.ID, "live-faces").text
    assert browser.find_element(By.ID, "door-state").text in ("locked", "unlocked")
    shot(browser, screens, "live")
    browser.get(server.url + "/events")
    table = browser.find_element(By.ID, "events").text
    assert "grant obama" in table and "enrol obama" in table
    # The door stored a face picture of the grant, and the page shows it.
    assert len(list((server.folder / "pictures").glob("*-grant.jpg"))) == 1
    faces = browser.find_elements(By.CSS_SELECTOR, "#events img.face")
    assert len(faces) == 1
    assert browser.execute_script("return arguments[0].naturalWidth", faces[0]) > 40
    shot(browser, screens, "events")
    # Filter by kind and user, then download that CSV with the browser.
    browser.get(server.url + "/events?kind=grant&user=oba")
    rows = browser.find_elements(By.CSS_SELECTOR, "#events tr")[1:]
    assert rows and all(" grant obama " in f" {r.text} " for r in rows)
    browser.find_element(By.ID, "csv").click()
    target = downloads / "facegate-events.csv"
    deadline = time.monotonic() + 20
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    with open(target, newline="") as f:
        lines = list(csv.DictReader(f))
    assert lines and {r["kind"] for r in lines} == {"grant"} and {r["name"] for r in lines} == {"obama"}
    assert float(lines[0]["score"]) >= 0.9


def test_stage_a_name_and_watch_the_enrolment_at_the_door_page(browser, server, screens):
    browser.get(server.url + "/users")
    form = browser.find_element(By.CSS_SELECTOR, "form[action='/users/stage']")
    form.find_element(By.NAME, "name").send_keys("dana")
    submit(form)
    # The page reloads every second and its one-time message may already be gone (a loaded machine):
    # what it must always say is who is staged and what to do.
    html = browser.page_source
    assert "/enrol?name=dana" in browser.current_url
    assert "<b>dana</b> (user) is staged: press the door's enrol button" in html
    assert 'http-equiv="refresh"' in html  # it follows the shots without JavaScript
    shot(browser, screens, "enrol")
    with Gallery(server.gallery) as g:
        assert g.staged_enrolment() == ("dana", "user")


def test_status_page_and_lock_now_is_logged_with_who(browser, server, screens):
    browser.get(server.url + "/status")
    checks = browser.find_element(By.ID, "checks").text
    assert "ok models" in checks and "ok gallery" in checks and "FAIL" not in checks
    submit(browser.find_element(By.ID, "lock-now"))
    assert "'lock now' is recorded" in flash(browser)
    shot(browser, screens, "status")
    browser.get(server.url + "/events?kind=lock_now")
    assert f"requested by web admin {ADMIN} from 127.0.0.1" in browser.find_element(By.ID, "events").text


def test_a_form_posted_without_its_csrf_token_is_refused(browser, server):
    browser.get(server.url + "/user?name=obama")
    form = browser.find_element(By.CSS_SELECTOR, "form[action='/user/active']")
    browser.execute_script("arguments[0].querySelector('input[name=csrf]').remove()", form)
    submit(form)
    assert "403" in browser.page_source and "CSRF" in browser.page_source
    with Gallery(server.gallery) as g:
        assert g.user("obama").active  # not deactivated


def test_remove_the_user_after_confirming(browser, server, screens):
    browser.get(server.url + "/user?name=obama")
    submit(browser.find_element(By.ID, "remove"))
    assert "Remove obama?" in browser.page_source
    shot(browser, screens, "remove")
    browser.find_element(By.ID, "confirm").click()
    submit(browser.find_element(By.ID, "remove-form"))
    assert "removed obama, 1 template(s) and 1 face picture(s)" in flash(browser)
    assert "obama" not in users_table(browser)
    assert not list((server.folder / "pictures").glob("*.jpg"))  # their pictures are gone
    browser.get(server.url + "/events?kind=grant")
    assert "grant obama" in browser.find_element(By.ID, "events").text  # the event itself is kept
    assert not browser.find_elements(By.CSS_SELECTOR, "#events img.face")
    with Gallery(server.gallery) as g:
        assert "obama" not in g
        assert any(e.kind == "grant" and e.name == "obama" for e in g.events(limit=None))  # history kept


def test_sign_in_is_rate_limited_after_wrong_passwords(browser, server, screens):
    submit(browser.find_element(By.CSS_SELECTOR, "form[action='/signout'] button"))
    assert browser.current_url.endswith("/signin") and "signed out" in flash(browser)
    for _ in range(5):  # the good sign-in of the first test cleared its failure
        sign_in(browser, server, "still not it")
        assert "wrong admin name or password" in flash(browser)
    sign_in(browser, server, PASSWORD)
    assert browser.current_url.endswith("/signin") and "too many failed sign-ins" in flash(browser)
    shot(browser, screens, "signin-limited")
    browser.get(server.url + "/users")
    assert browser.current_url.endswith("/signin")


def test_screenshots_of_every_main_page_are_kept(screens):
    names = {p.stem for p in screens.glob("*.png")}
    assert {"signin", "users", "user", "events", "status", "remove", "live", "enrol"} <= names
    print(f"screenshots in {screens}")  # docs/web/ holds copies made by hand for the README
