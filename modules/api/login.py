"""The login wall in front of every route, and the /login page browsers sign in on.

`AuthMiddleware` runs before routing, so it covers routes added later too (extensions, Gradio,
file serving, websockets, SSE). A request is signed in by the session cookie or by HTTP Basic
credentials; the user name goes to `scope["state"]["user"]` (FastAPI: `request.state.user`,
Gradio: `gr.Request.username` through `auth_dependency`). Signed-out browser page loads are
redirected to /login; everything else gets 401 with `WWW-Authenticate: Basic`.
"""

from __future__ import annotations

import html
import json
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from modules.access.policy import client_address
from modules.api.auth import SESSION_COOKIE, Authenticator, parse_basic_header

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
PUBLIC_PATHS = frozenset({LOGIN_PATH, LOGOUT_PATH})


class AuthMiddleware:
    def __init__(self, app: ASGIApp, auth: Authenticator, login_page: bool) -> None:
        self.app = app
        self.auth = auth
        self.login_page = login_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.auth.enabled:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        user = self.auth.sessions.user_for(cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE))
        if user is None and "authorization" in headers:
            address = client_address(scope)
            wait = self.auth.throttle.retry_after(address)
            if wait > 0:
                await _send_json(scope, send, 429, "TooManyLoginFailures", _wait_text(wait), _retry(wait))
                return
            user = self._basic_user(headers["authorization"], address)
            if user is None:
                await self._unauthorized(scope, send, headers, "Incorrect username or password")
                return
        if user is None:
            await self._unauthorized(scope, send, headers, "Not authenticated")
            return
        scope["state"] = {**scope.get("state", {}), "user": user}
        await self.app(scope, receive, send)

    def _basic_user(self, header: str, address: str) -> str | None:
        parsed = parse_basic_header(header)
        if parsed is not None and self.auth.users.check(*parsed):
            self.auth.throttle.succeeded(address)
            return parsed[0]
        self.auth.throttle.failed(address)
        return None

    async def _unauthorized(self, scope: Scope, send: Send, headers: Headers, detail: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": detail})
            return
        wants_page = scope["method"] == "GET" and "text/html" in headers.get("accept", "")
        if self.login_page and wants_page:
            target = scope["path"] + (f"?{scope['query_string'].decode('latin-1')}" if scope["query_string"] else "")
            location = f"{LOGIN_PATH}?next={quote(target, safe='')}"
            await send({"type": "http.response.start", "status": 303, "headers": [(b"location", location.encode())]})
            await send({"type": "http.response.body", "body": b""})
            return
        await _send_json(scope, send, 401, "Unauthorized", detail, [(b"www-authenticate", b'Basic realm="sd-webui"')])


def _retry(wait: float) -> list[tuple[bytes, bytes]]:
    return [(b"retry-after", str(int(wait) + 1).encode())]


def _wait_text(wait: float) -> str:
    return f"too many failed logins from this address; try again in {int(wait) + 1} s"


async def _send_json(scope: Scope, send: Send, status: int, error: str, detail: str, extra: list) -> None:
    body = json.dumps({"error": error, "detail": detail, "body": "", "errors": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _safe_next(target: str) -> str:
    """Only local paths: '/x' yes; '//evil.example', 'http://…' and '/\\evil' fall back to '/'."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - Stable Diffusion</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,sans-serif;background:#0b0f19;color:#e5e7eb;display:flex;
justify-content:center;align-items:center;min-height:100vh;margin:0}}
form{{background:#1f2937;padding:2rem;border-radius:.75rem;width:18rem;display:flex;flex-direction:column;gap:.75rem}}
input{{padding:.5rem;border-radius:.375rem;border:1px solid #4b5563;background:#111827;color:inherit}}
button{{padding:.6rem;border:0;border-radius:.375rem;background:#ea580c;color:#fff;font-weight:600;cursor:pointer}}
.error{{color:#f87171;margin:0}}
</style></head><body>
<form method="post" action="{action}">
<h2 style="margin:0">Sign in</h2>
{message}
<label>Username <input name="username" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<input type="hidden" name="next" value="{next}">
<button type="submit">Sign in</button>
</form></body></html>"""


def _page(target: str, message: str = "") -> str:
    shown = f'<p class="error">{html.escape(message)}</p>' if message else ""
    return _PAGE.format(action=LOGIN_PATH, message=shown, next=html.escape(_safe_next(target), quote=True))


def add_login_routes(app: FastAPI, auth: Authenticator, secure_cookie: bool) -> None:
    """GET/POST /login and /logout (the only routes reachable without signing in)."""
    router = APIRouter(include_in_schema=False)

    @router.get(LOGIN_PATH)
    async def login_page(next: str = "/") -> HTMLResponse:
        return HTMLResponse(_page(next))

    @router.post(LOGIN_PATH, response_model=None)
    async def login(
        request: Request, username: str = Form(""), password: str = Form(""), next: str = Form("/")
    ) -> Response:
        address = client_address(request.scope)
        wait = auth.throttle.retry_after(address)
        if wait > 0:
            return HTMLResponse(
                _page(next, _wait_text(wait)), status_code=429, headers={"Retry-After": str(int(wait) + 1)}
            )
        if not auth.enabled or not auth.users.check(username, password):
            auth.throttle.failed(address)
            return HTMLResponse(_page(next, "Incorrect username or password."), status_code=401)
        auth.throttle.succeeded(address)
        response = RedirectResponse(_safe_next(next), status_code=303)
        token = auth.sessions.create(username)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", secure=secure_cookie, path="/")
        return response

    @router.api_route(LOGOUT_PATH, methods=["GET", "POST"])
    async def logout(request: Request) -> RedirectResponse:
        auth.sessions.drop(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    app.include_router(router)
