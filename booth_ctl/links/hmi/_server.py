"""The HMI's web server (aiohttp): the page, login, the live stream and the command endpoint.

Every request that changes something (POST) needs a valid session cookie (else 401) and the
session's CSRF token in ``X-CSRF-Token`` (else 403); a command the user's role may not give is
answered 403 by the authority's ``forbidden`` before anything runs. Logins are checked on a
worker thread (scrypt takes tens of milliseconds), one at a time, so that a burst of logins
cannot starve the scan of a core.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import io
import json
import logging
import ssl
import uuid
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from booth_ctl.commands import FORBIDDEN, Authority, Source
from booth_ctl.config._booth import HmiConfig
from booth_ctl.links.hmi._feed import Feed, Page, sse
from booth_ctl.links.hmi._roles import commands_of_role
from booth_ctl.links.hmi._sessions import COOKIE, CSRF_HEADER, Session, Sessions
from booth_ctl.records._lot_search import search_lots
from booth_ctl.records._recorder import Records
from booth_ctl.records._users import UserStore

log = logging.getLogger("booth_ctl.hmi")
T = TypeVar("T")

STATIC_FILES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "charts.js": "text/javascript",
    "style.css": "text/css",
}
BODY_MAX_BYTES = 256 * 1024
#: Sent every this many seconds on an idle stream, so a dead connection is noticed.
KEEPALIVE_S = 15.0
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _static(name: str) -> bytes:
    return resources.files("booth_ctl.links.hmi").joinpath("static", name).read_bytes()


class HmiServer:
    """``async with HmiServer(...)``: listening until the block ends."""

    def __init__(
        self,
        cfg: HmiConfig,
        *,
        records: Records,
        users_path: Path,
        authority: Authority,
        feed: Feed,
        csv_export: Callable[[str, io.StringIO], int],
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.cfg = cfg
        self._records = records
        self._users_path = users_path
        self._users: UserStore | None = None
        self.authority = authority
        self.feed = feed
        self._csv_export = csv_export
        self._tls = tls
        self.sessions = Sessions(cfg.session_idle_s)
        self._login_gate = asyncio.Semaphore(1)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._runner: web.AppRunner | None = None
        self.port: int = cfg.port
        self._files = {name: _static(name) for name in STATIC_FILES}

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> HmiServer:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hmi")
        self._users = await self._call(UserStore, self._users_path)
        app = web.Application(client_max_size=BODY_MAX_BYTES, middlewares=[self._headers])
        app.add_routes(
            [
                web.get("/", self._index),
                web.get("/static/{name}", self._file),
                web.post("/api/login", self._login),
                web.post("/api/logout", self._logout),
                web.get("/api/me", self._me),
                web.get("/api/stream", self._stream),
                web.post("/api/cmd/{command}", self._command),
                web.get("/api/recipes", self._recipes),
                web.get("/api/recipes/{name}", self._recipe),
                web.get("/api/lots", self._lots),
                web.get("/api/lots/{lot}", self._lot),
                web.get("/api/lots/{lot}/csv", self._lot_csv),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        ctx: ssl.SSLContext | None = None
        if self._tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
        site = web.TCPSite(self._runner, self.cfg.host, self.cfg.port, ssl_context=ctx)
        try:
            await site.start()
        except BaseException:
            await self._close()
            raise
        for addr in self._runner.addresses:
            self.port = int(addr[1])
        log.info("HMI on %s://%s:%d/", "https" if ctx else "http", self.cfg.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def _close(self) -> None:
        self.feed.end_streams()  # open streams end now, not at the runner's timeout
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._users is not None:
            await self._call(self._users.close)
            self._users = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    # ------------------------------------------------------------------ plumbing

    @web.middleware
    async def _headers(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        try:
            resp: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            for k, v in SECURITY_HEADERS.items():
                exc.headers.setdefault(k, v)
            raise
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        if request.path.startswith("/api/"):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    def _session(self, request: web.Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def _need_session(self, request: web.Request) -> Session:
        s = self._session(request)
        if s is None:
            raise _error(401, "unauthorized", "log in first (no valid session)")
        return s

    def _need_csrf(self, request: web.Request) -> Session:
        """A state-changing request: a session and its CSRF token, from this origin."""
        s = self._need_session(request)
        if not s.csrf_ok(request.headers.get(CSRF_HEADER)):
            raise _error(403, "csrf", f"missing or wrong {CSRF_HEADER} header")
        _same_origin(request)
        return s

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        # JSON only: a cross-site form cannot send it without a preflight nobody answers.
        if request.content_type != "application/json":
            raise _error(415, "bad_request", "the body must be application/json")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise _error(400, "bad_request", f"body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise _error(400, "bad_request", "body must be a JSON object")
        return body

    # ------------------------------------------------------------------ page

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=self._files["index.html"], content_type="text/html")

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return web.Response(
            body=self._files[name], content_type=STATIC_FILES[name],
            headers={"Cache-Control": "no-cache"},
        )

    # ------------------------------------------------------------------ login

    async def _login(self, request: web.Request) -> web.Response:
        _same_origin(request)
        body = await self._json_body(request)
        name, password = body.get("username"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str) or len(password) > 1024:
            raise _error(400, "bad_request", "username and password (text) are required")
        assert self._users is not None
        async with self._login_gate:
            result = await self._call(self._users.login, name, password)
        if not result.ok or result.role is None:
            if result.locked_until is not None:
                log.warning("HMI: login of %r refused: locked out", name)
                raise _error(
                    429, "locked",
                    "too many failed logins: this user is locked out for a while; try later",
                )
            log.info("HMI: failed login of %r", name)
            raise _error(401, "login_failed", "wrong user name or password")
        token, session = self.sessions.create(name, result.role)
        log.info("HMI: %s logged in (%s)", name, result.role)
        resp = web.json_response(self._me_body(session))
        resp.set_cookie(
            COOKIE, token, httponly=True, samesite="Strict", path="/",
            secure=self._tls is not None or self.cfg.secure_cookie,
        )
        return resp

    async def _logout(self, request: web.Request) -> web.Response:
        self._need_csrf(request)
        self.sessions.drop(request.cookies.get(COOKIE))
        resp = web.json_response({"ok": True})
        resp.del_cookie(COOKIE, path="/")
        return resp

    def _me_body(self, s: Session) -> dict[str, Any]:
        return {
            "user": s.user,
            "role": s.role,
            "csrf": s.csrf,
            "allowed": sorted(self.authority.allowed(s.source)),
            "by_role": sorted(commands_of_role(s.role)),
        }

    async def _me(self, request: web.Request) -> web.Response:
        return web.json_response(self._me_body(self._need_session(request)))

    # ------------------------------------------------------------------ live stream

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        s = self._need_session(request)
        source = s.source

        def allowed() -> bytes:
            return sse("allowed", sorted(self.authority.allowed(source)))

        page = Page(on_mode=allowed)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await resp.prepare(request)
        self.feed.join(page)
        try:
            await resp.write(sse("snapshot", self.feed.snapshot()) + allowed())
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE_S):
                        msg = await page.queue.get()
                except TimeoutError:
                    msg = b": keepalive\n\n"
                    if self.sessions.get(request.cookies.get(COOKIE)) is None:
                        break  # logged out or expired
                if msg is None:
                    break
                await resp.write(msg)
        except ConnectionError:
            pass  # the page went away
        finally:
            self.feed.leave(page)
        return resp

    # ------------------------------------------------------------------ commands

    async def _command(self, request: web.Request) -> web.Response:
        s = self._need_csrf(request)
        command = request.match_info["command"]
        body = await self._json_body(request)
        body.setdefault("request_id", f"hmi-{uuid.uuid4().hex}")
        return await self._submit(command, body, s.source)

    async def _submit(self, command: str, body: dict[str, Any], source: Source) -> web.Response:
        reply = await self.authority.submit(command, body, source)
        if reply is None:
            raise _error(400, "bad_request", "request_id must be text of 1-64 characters")
        if command == "set_mode" and reply["ok"]:
            self.feed.set_mode(reply["result"]["mode"])
        err = reply.get("error") or {}
        status = 403 if err.get("code") == FORBIDDEN else 200
        return web.json_response(reply, status=status)

    async def _read(self, request: web.Request, command: str, **args: Any) -> web.Response:
        s = self._need_session(request)
        return await self._submit(
            command, {"request_id": f"hmi-{uuid.uuid4().hex}", **args}, s.source
        )

    async def _recipes(self, request: web.Request) -> web.Response:
        return await self._read(request, "list_recipes")

    async def _recipe(self, request: web.Request) -> web.Response:
        return await self._read(request, "get_recipe", name=request.match_info["name"])

    async def _lot(self, request: web.Request) -> web.Response:
        return await self._read(request, "get_job", lot_id=request.match_info["lot"])

    async def _lots(self, request: web.Request) -> web.Response:
        self._need_session(request)
        text = request.query.get("q", "")[:64]
        users = self._users
        assert users is not None

        def search() -> list[dict[str, Any]]:
            with users.lock:
                return search_lots(users.connection, text)

        return web.json_response({"lots": await self._call(search)})

    async def _lot_csv(self, request: web.Request) -> web.Response:
        self._need_session(request)
        lot = request.match_info["lot"]
        out = io.StringIO()
        rows = await self._records.call(self._csv_export, lot, out)
        if rows == 0:
            raise _error(404, "unknown_lot", f"no job on record for lot {lot!r}")
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in lot)
        return web.Response(
            text=out.getvalue(), content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="lot-{safe}.csv"'},
        )


def _same_origin(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin is not None and origin.split("://", 1)[-1] != request.host:
        raise _error(403, "origin", f"request from another origin ({origin})")


def _error(status: int, code: str, message: str) -> web.HTTPException:
    cls = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        415: web.HTTPUnsupportedMediaType,
        429: web.HTTPTooManyRequests,
    }[status]
    return cls(
        text=json.dumps({"ok": False, "error": {"code": code, "message": message}}),
        content_type="application/json",
    )
