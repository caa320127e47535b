"""The admin page over HTTP: Starlette routes, Jinja2 pages, served by uvicorn. The only module that
imports the web framework.

Every page but sign-in needs a signed session cookie; every POST needs the form's CSRF token
(security.py). Each POST ends in a redirect (303) with a one-line message shown on the next page, so a
reload never repeats an action. Pages are plain HTML forms: no JavaScript.
"""

from __future__ import annotations

import base64
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from appliance.config import Config
from appliance.errors import ApplianceError, ConfigError
from appliance.web.actions import (
    DOOR_REQUESTS,
    MAX_PHOTO_BYTES,
    MAX_PHOTOS,
    EventFilter,
    Upload,
    WebAdmin,
    event_kinds,
    parse_day,
)
from appliance.web.security import (
    Signer,
    SignInLimiter,
    load_or_create_secret,
    new_browser_id,
    read_passwords,
    verify_password,
)

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
SESSION_COOKIE = "fg_session"
CSRF_COOKIE = "fg_csrf"
FLASH_COOKIE = "fg_flash"
CSRF_FIELD = "csrf"
_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
"""Checked against when the admin name is unknown, so that the answer takes as long as for a known one."""

SECURITY_HEADERS = {
    # No script at all, forms only to this site, never inside a frame elsewhere.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def create_app(
    cfg: Config,
    db: Path | None = None,
    limiter: SignInLimiter | None = None,
) -> Starlette:
    """The admin page's ASGI app for `cfg` (and gallery `db`); refuses to build without an admin password.

    Raises:
        ConfigError: no admin password is set, or the key or password file cannot be read.
    """
    w = cfg.web
    if not read_passwords(w.password_file):
        raise ConfigError(
            f"no admin password is set in {w.password_file}; set one with `facegate web --set-password` "
            "(add --admin NAME for more admins), then start `facegate web` again."
        )
    signer = Signer(load_or_create_secret(w.secret_file), session_s=w.session_days * 86400)
    limiter = limiter or SignInLimiter()
    admin = WebAdmin(cfg, db)
    templates = Jinja2Templates(directory=str(TEMPLATES))  # autoescapes .html
    templates.env.filters |= {"when": _when, "day": _day, "isoday": _isoday}
    secure_cookies = bool(w.tls_cert)

    def cookie(resp: Response, name: str, value: str, max_age: int | None = None) -> None:
        resp.set_cookie(
            name, value, max_age=max_age, httponly=True, samesite="strict", secure=secure_cookies, path="/"
        )

    def browser_id(request: Request) -> str:
        return request.cookies.get(CSRF_COOKIE) or request.state.new_browser_id

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        flash = _read_flash(request.cookies.get(FLASH_COOKIE))
        context |= {
            "admin": request.state.admin,
            "csrf": signer.csrf_token(browser_id(request)),
            "flash": flash,
        }
        resp = templates.TemplateResponse(request, name, context, status_code=status)
        if flash:
            resp.delete_cookie(FLASH_COOKIE, path="/")
        return resp

    def redirect(to: str, message: str = "", error: bool = False) -> Response:
        resp = RedirectResponse(to, status_code=303)
        if message:
            text = ("error:" if error else "ok:") + message
            cookie(resp, FLASH_COOKIE, base64.urlsafe_b64encode(text.encode()).decode(), max_age=60)
        return resp

    async def form(request: Request, files: bool = False) -> FormData:
        """The POSTed form, once its CSRF token matched this browser's cookie; 403 otherwise.
        Files (photos) only where `files`: the sign-in form, open to anyone, takes none."""
        try:
            data = await request.form(
                max_files=MAX_PHOTOS if files else 0, max_fields=50, max_part_size=MAX_PHOTO_BYTES
            )
        except HTTPException:
            raise
        except Exception as exc:  # a malformed body
            why = f"the form could not be read ({exc}); reload the page and try again."
            raise HTTPException(400, why) from None
        token = data.get(CSRF_FIELD)
        if not signer.csrf_ok(request.cookies.get(CSRF_COOKIE), token if isinstance(token, str) else None):
            log.warning("refused a POST to %s without a valid CSRF token", request.url.path)
            raise HTTPException(
                403,
                "this form has no valid CSRF token (sent from another site, or an old page); "
                "reload the page and send it again.",
            )
        return data

    def field(data: FormData, name: str) -> str:
        value = data.get(name, "")
        return value if isinstance(value, str) else ""

    async def uploads(data: FormData) -> list[Upload]:
        files = [f for f in data.getlist("photos") if isinstance(f, UploadFile) and f.filename]
        return [Upload(f.filename or "", await f.read()) for f in files]

    def client(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    # -- sign-in ---------------------------------------------------------------------------------

    async def signin_page(request: Request) -> Response:
        if request.state.admin:
            return redirect("/users")
        return page(request, "signin.html")

    async def signin(request: Request) -> Response:
        data = await form(request)
        address = client(request)
        wait = limiter.blocked_for(address)
        if wait > 0:
            log.warning("sign-in from %s refused: too many failed tries", address)
            return redirect(
                "/signin",
                f"too many failed sign-ins from this address; try again in {wait / 60:.0f} min "
                f"({wait:.0f} s).",
                error=True,
            )
        name, password = field(data, "name").strip(), field(data, "password")
        stored = read_passwords(cfg.web.password_file)
        ok = await run_in_threadpool(verify_password, password, stored.get(name, _DUMMY_HASH))
        if not ok or name not in stored:
            limiter.failed(address)
            log.warning("failed sign-in as %r from %s", name[:64], address)  # never the password
            return redirect("/signin", "wrong admin name or password.", error=True)
        limiter.succeeded(address)
        log.info("admin %s signed in from %s", name, address)
        resp = redirect("/users", f"signed in as {name}.")
        cookie(resp, SESSION_COOKIE, signer.new_session(name), max_age=int(signer.session_s))
        return resp

    async def signout(request: Request) -> Response:
        await form(request)
        resp = redirect("/signin", "signed out.")
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    # -- users -----------------------------------------------------------------------------------

    async def users_page(request: Request) -> Response:
        query = request.query_params.get("q", "").strip()
        with admin.gallery() as g:
            users = g.users()
            staged = g.staged_enrolment()
        if query:
            users = [u for u in users if query.casefold() in u.name.casefold()]
        return page(request, "users.html", users=users, q=query, staged=staged, max_photos=MAX_PHOTOS)

    async def users_add(request: Request) -> Response:
        data = await form(request, files=True)
        name, role = field(data, "name").strip(), field(data, "role") or "user"
        photos = await uploads(data)
        try:
            user = await run_in_threadpool(admin.enrol, name, role, photos)
        except ApplianceError as exc:
            return redirect("/users", f"{name or 'new user'} not enrolled: {exc}", error=True)
        who = request.state.admin
        log.info("admin %s enrolled %s (%s) from %d photo(s)", who, user.name, role, len(photos))
        return redirect(
            "/user?" + urlencode({"name": user.name}),
            f"enrolled {user.name} ({user.role}) with {user.templates} template(s).",
        )

    async def users_stage(request: Request) -> Response:
        data = await form(request)
        name, role = field(data, "name").strip(), field(data, "role") or "user"
        try:
            with admin.gallery() as g:
                g.stage_enrolment(name, role)
        except ApplianceError as exc:
            return redirect("/users", f"not staged: {exc}", error=True)
        return redirect(
            "/enrol?" + urlencode({"name": name}),
            f"{name} will be the next person enrolled with the door's enrol button.",
        )

    async def enrol_page(request: Request) -> Response:
        """The staged name, the shots taken so far and the door camera; reloads every second."""
        name = request.query_params.get("name", "").strip()
        with admin.gallery() as g:
            staged = g.staged_enrolment()
            enrolled = g.user(name) if name and not staged and name in g else None
        info = await run_in_threadpool(admin.live_info)
        return page(request, "enrol.html", staged=staged, enrolled=enrolled, info=info)

    async def user_page(request: Request) -> Response:
        name = request.query_params.get("name", "")
        try:
            with admin.gallery() as g:
                user = g.user(name)
                events = [e for e in g.events(limit=500) if e.user_id == user.id][:20]
        except ApplianceError as exc:
            return redirect("/users", str(exc), error=True)
        pictures = admin.pictures_of(events)
        return page(request, "user.html", user=user, events=events, pictures=pictures, max_photos=MAX_PHOTOS)

    def user_action(
        fn: Callable[[FormData, str], Awaitable[tuple[str, str]]], files: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """A POST on one user: fn(form, name) -> (name to show next, message); errors become messages."""

        async def endpoint(request: Request) -> Response:
            data = await form(request, files)
            name = field(data, "name")
            try:
                shown, message = await fn(data, name)
            except ApplianceError as exc:
                return redirect("/user?" + urlencode({"name": name}), str(exc), error=True)
            log.info("admin %s: %s", request.state.admin, message)
            return redirect("/user?" + urlencode({"name": shown}) if shown else "/users", message)

        return endpoint

    async def rename(data: FormData, name: str) -> tuple[str, str]:
        new = field(data, "new_name")
        with admin.gallery() as g:
            user = g.rename(name, new)
        return user.name, f"renamed {name} to {user.name}."

    async def set_active(data: FormData, name: str) -> tuple[str, str]:
        active = field(data, "active") == "1"
        with admin.gallery() as g:
            user = g.set_active(name, active)
        return user.name, f"{user.name} is now {'active' if active else 'inactive'}."

    async def set_validity(data: FormData, name: str) -> tuple[str, str]:
        vf = parse_day(field(data, "valid_from"), "valid from")
        vu = parse_day(field(data, "valid_until"), "valid until", end=True)
        with admin.gallery() as g:
            user = g.set_validity(name, vf, vu)
        return user.name, f"{user.name}'s validity is saved."

    async def set_role(request: Request) -> Response:
        who = request.state.admin

        async def change(data: FormData, name: str) -> tuple[str, str]:
            with admin.gallery() as g:
                user = g.set_role(name, field(data, "role"), by=f"web admin {who}")
            return user.name, f"{user.name} is now {'an admin' if user.role == 'admin' else 'a user'}."

        return await user_action(change)(request)

    async def add_photos(data: FormData, name: str) -> tuple[str, str]:
        n = await run_in_threadpool(admin.add_photos, name, await uploads(data))
        return name, f"added {n} template(s) to {name}."

    async def remove(data: FormData, name: str) -> tuple[str, str]:
        if field(data, "confirm") != "yes":
            raise ApplianceError("removal not confirmed; tick the box to confirm it.")
        n, pictures = await run_in_threadpool(admin.remove, name)
        return "", f"removed {name}, {n} template(s) and {pictures} face picture(s); past events are kept."

    async def remove_page(request: Request) -> Response:
        name = request.query_params.get("name", "")
        try:
            with admin.gallery() as g:
                user = g.user(name)
        except ApplianceError as exc:
            return redirect("/users", str(exc), error=True)
        return page(request, "remove.html", user=user)

    # -- events, status, door --------------------------------------------------------------------

    def event_filter(request: Request) -> EventFilter:
        q = request.query_params
        kind = q.get("kind", "")
        if kind and kind not in event_kinds():
            raise ApplianceError(f"unknown event kind {kind!r}.")
        return EventFilter(
            kind=kind,
            user=q.get("user", "").strip(),
            since=parse_day(q.get("since", ""), "since"),
            until=parse_day(q.get("until", ""), "until", end=True),
        )

    async def events_page(request: Request) -> Response:
        try:
            flt = event_filter(request)
        except ApplianceError as exc:
            return redirect("/events", str(exc), error=True)
        events = await run_in_threadpool(admin.events, flt)
        pictures = await run_in_threadpool(admin.pictures_of, events)
        q = request.query_params
        return page(
            request,
            "events.html",
            events=events,
            pictures=pictures,
            kinds=event_kinds(),
            f={k: q.get(k, "") for k in ("kind", "user", "since", "until")},
            csv_query=urlencode({k: q.get(k, "") for k in ("kind", "user", "since", "until")}),
        )

    async def events_csv(request: Request) -> Response:
        try:
            flt = event_filter(request)
        except ApplianceError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        text = await run_in_threadpool(admin.events_csv, flt)
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="facegate-events.csv"'},
        )

    async def picture(request: Request) -> Response:
        event = request.query_params.get("event", "")
        data = await run_in_threadpool(admin.picture, int(event)) if event.isdigit() else None
        if data is None:
            return PlainTextResponse(
                "no picture for this event (kept for [web] pictures_days).", status_code=404
            )
        return Response(data, media_type="image/jpeg")

    async def live_page(request: Request) -> Response:
        info = await run_in_threadpool(admin.live_info)
        return page(request, "live.html", info=info)

    async def live_jpeg(request: Request) -> Response:
        data = await run_in_threadpool(admin.live_frame)
        if data is None:
            return PlainTextResponse("no recent frame from the door service.", status_code=404)
        return Response(data, media_type="image/jpeg")

    async def status_page(request: Request) -> Response:
        checks = await run_in_threadpool(admin.status)
        door = await run_in_threadpool(admin.last_door_events)
        return page(request, "status.html", checks=checks, door=door)

    async def door_request(request: Request) -> Response:
        data = await form(request)
        kind = field(data, "action")
        if kind not in DOOR_REQUESTS:
            raise HTTPException(400, "unknown door action.")
        admin.request_door(kind, request.state.admin, client(request))
        log.info("admin %s requested %s from %s", request.state.admin, kind, client(request))
        what = "lock now" if kind == "lock_now" else "unlock now"
        return redirect(
            "/status",
            f"'{what}' is recorded with your name; the door service carries it out within about a "
            "second (with a live camera) and logs a service event when it has.",
        )

    async def home(request: Request) -> Response:
        return redirect("/users")

    routes = [
        Route("/", home),
        Route("/signin", signin_page, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/users", users_page, methods=["GET"]),
        Route("/users/add", users_add, methods=["POST"]),
        Route("/users/stage", users_stage, methods=["POST"]),
        Route("/user", user_page, methods=["GET"]),
        Route("/user/rename", user_action(rename), methods=["POST"]),
        Route("/user/active", user_action(set_active), methods=["POST"]),
        Route("/user/validity", user_action(set_validity), methods=["POST"]),
        Route("/user/role", set_role, methods=["POST"]),
        Route("/user/photos", user_action(add_photos, files=True), methods=["POST"]),
        Route("/user/remove", remove_page, methods=["GET"]),
        Route("/user/remove", user_action(remove), methods=["POST"]),
        Route("/events", events_page, methods=["GET"]),
        Route("/events.csv", events_csv, methods=["GET"]),
        Route("/picture", picture, methods=["GET"]),
        Route("/live", live_page, methods=["GET"]),
        Route("/live.jpg", live_jpeg, methods=["GET"]),
        Route("/enrol", enrol_page, methods=["GET"]),
        Route("/status", status_page, methods=["GET"]),
        Route("/door", door_request, methods=["POST"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return PlainTextResponse(f"{exc.status_code}: {exc.detail}", status_code=exc.status_code)

    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Who is signed in; sign-in first for every other page; a CSRF cookie for every browser; headers."""
        request.state.admin = signer.session_user(request.cookies.get(SESSION_COOKIE))
        request.state.new_browser_id = new_browser_id()
        if request.state.admin is None and request.url.path != "/signin":
            resp: Response = RedirectResponse("/signin", status_code=303)
        else:
            resp = await call_next(request)
        if CSRF_COOKIE not in request.cookies:
            cookie(resp, CSRF_COOKIE, request.state.new_browser_id)
        resp.headers.update(SECURITY_HEADERS)
        return resp

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.add_middleware(BaseHTTPMiddleware, dispatch=guard)
    return app


def _when(t: float | None) -> str:
    """Epoch seconds as local "YYYY-MM-DD HH:MM:SS"."""
    return "" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _day(t: float | None) -> str:
    """Epoch seconds as a local date, "…" for None (an open end of a validity range)."""
    return "…" if t is None else time.strftime("%Y-%m-%d", time.localtime(t))


def _isoday(t: float | None, end: bool = False) -> str:
    """A date input's value for epoch seconds; `end`: the day before (validity ends at a day's end)."""
    if t is None:
        return ""
    return time.strftime("%Y-%m-%d", time.localtime(t - 1 if end else t))


def _read_flash(value: str | None) -> tuple[bool, str] | None:
    """(is_error, text) of the flash cookie, or None."""
    if not value:
        return None
    try:
        text = base64.urlsafe_b64decode(value.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    kind, _, message = text.partition(":")
    return (kind == "error", message[:2000])


def serve(cfg: Config, db: Path | None, host: str, port: int) -> None:
    """Run the admin page until SIGTERM or Ctrl-C (uvicorn handles both and exits cleanly)."""
    app = create_app(cfg, db)
    w = cfg.web
    scheme = "https" if w.tls_cert else "http"
    log.info("serving the admin page on %s://%s:%d", scheme, host, port)
    # uvicorn stops gracefully on SIGTERM, then raises the signal again with the handler that was
    # there before it: a no-op one makes that an exit 0, as `facegate run` exits 0 on SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: None)
    # A parent that blocked these (the door's SignalThread does, in its process) passes its mask on
    # to the processes it starts: unblocked here, or SIGTERM would never reach uvicorn.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=w.tls_cert or None,
        ssl_keyfile=w.tls_key or None,
        log_config=None,  # keep facegate's logging set-up (stderr, the journal under systemd)
        server_header=False,
        # The rate limit counts the peer's address: a forged X-Forwarded-For must not reset it.
        proxy_headers=False,
        access_log=True,
    )
