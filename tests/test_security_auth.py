"""Logins on every route, the login page, throttling, and per-user isolation of jobs and settings."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from modules.api.auth import SESSION_COOKIE, LoginThrottle, parse_basic_header
from modules.api.login import AuthMiddleware
from modules.core.cmd_args import parse_args
from modules.core.users import AuthConfigError, UserTable, load_user_table
from tests.api_server import TINY_TXT2IMG, BlockHooks, LiveServer, start_server
from tests.fixtures_models import TinyModelFiles

ALICE, BOB, ROOT = ("alice", "pw-a"), ("bob", "pw-b"), ("root", "pw:r")
UPGRADE = {
    "connection": "Upgrade",
    "upgrade": "websocket",
    "sec-websocket-version": "13",
    "sec-websocket-key": "x3JJHMbDL1EzLkh9GBhXDw==",
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("auth")
    auth_file = root / "users.txt"
    auth_file.write_text("# team\nroot:pw:r\n@admins: root\n")
    server = start_server(
        root,
        tiny_models,
        "--api",
        "--api-server-stop",
        "--gradio-auth",
        "alice:pw-a",
        "--api-auth",
        "bob:pw-b",
        "--gradio-auth-path",
        str(auth_file),
        settings={"api_login_max_failures": 3, "api_login_lockout_seconds": 1.5},
    )
    server.services.script_hooks.attach(BlockHooks())
    yield server
    server.stop()


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path) or "/"


def enumerate_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route of the app, Gradio's mounted app and static mounts included."""
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's lazily included routers
        if included is not None:
            yield from enumerate_routes(list(included.routes), prefix + route.include_context.prefix)  # type: ignore[attr-defined]
        elif isinstance(route, Mount):
            sub = list(getattr(route, "routes", []) or [])
            base = prefix + route.path
            if sub:
                yield from enumerate_routes(sub, base)
            else:
                yield "GET", concrete(base + "/x")
        elif isinstance(route, WebSocketRoute):
            yield "WEBSOCKET", concrete(prefix + route.path)
        elif isinstance(route, Route):
            for method in sorted(route.methods or {"GET"}):
                if method != "HEAD":
                    yield method, concrete(prefix + route.path)


def request(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    if method == "WEBSOCKET":
        return client.get(path, headers=UPGRADE)
    return client.request(method, path, **kwargs)


def test_every_route_answers_401_or_login_redirect(live: LiveServer) -> None:
    routes = sorted(set(enumerate_routes(live.app.router.routes)))
    paths = {p for _, p in routes}
    assert {"/sdapi/v1/txt2img", "/sdapi/v1/server-kill", "/file=x", "/docs", "/openapi.json"} <= paths
    assert any(p.startswith("/gradio_api/") for p in paths) and "/config" in paths  # Gradio's routes
    checked = 0
    with live.client() as client:
        for method, path in routes:
            if path in ("/login", "/logout"):
                continue
            r = request(client, method, path)
            if method == "WEBSOCKET":
                assert r.status_code == 403, (method, path, r.status_code)
            else:
                assert r.status_code == 401, (method, path, r.status_code, r.text[:100])
                assert r.headers["www-authenticate"].startswith("Basic")
            if method == "GET":
                page = client.get(path, headers={"accept": "text/html"})
                assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")
            checked += 1
    assert checked > 40
    with live.client(auth=ALICE) as client:  # and a valid login gets through
        for method, path in routes:
            if method == "GET" and path.startswith("/sdapi/v1/"):
                assert client.get(path).status_code == 200, path


def test_websocket_upgrade_needs_login(live: LiveServer) -> None:
    with live.client() as client:
        assert client.get("/gradio_api/queue/join", headers=UPGRADE).status_code in (401, 403)


def test_websocket_scope_is_closed_without_login(live: LiveServer) -> None:
    """At ASGI level (uvicorn here has no websocket library): closed before the app sees it."""
    sent: list[dict[str, Any]] = []
    reached: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    middleware = AuthMiddleware(app, live.app.state.auth, login_page=True)
    scope: Any = {"type": "websocket", "path": "/ws", "headers": [], "client": ("127.0.0.1", 1), "query_string": b""}
    asyncio.run(middleware(scope, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "Not authenticated"}] and not reached
    token = live.app.state.auth.sessions.create("alice")
    scope["headers"] = [(b"cookie", f"{SESSION_COOKIE}={token}".encode())]
    asyncio.run(middleware(scope, receive, send))
    assert reached == [True] and scope["state"]["user"] == "alice"


def test_login_page_cookie_and_logout(live: LiveServer) -> None:
    with live.client() as browser:
        page = browser.get("/", headers={"accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F"
        form = browser.get("/login", params={"next": "/?x=1"})
        assert form.status_code == 200 and 'name="password"' in form.text and 'value="/?x=1"' in form.text
        bad = browser.post("/login", data={"username": "alice", "password": "nope", "next": "/"})
        assert bad.status_code == 401 and "Incorrect" in bad.text
        good = browser.post("/login", data={"username": "alice", "password": "pw-a", "next": "/?x=1"})
        assert good.status_code == 303 and good.headers["location"] == "/?x=1"
        cookie = good.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        ui = browser.get("/")
        assert ui.status_code == 200 and "gradio" in ui.text.lower()
        assert browser.get("/config").status_code == 200  # Gradio sees the signed-in user
        assert browser.get("/gradio_api/user").json() == "alice"
        assert browser.get("/internal/whoami").json() == {"user": "alice", "admin": False}
        assert browser.get("/sdapi/v1/progress").status_code == 200
        browser.get("/logout")
        assert browser.get("/sdapi/v1/progress").status_code == 401


def test_login_redirect_stays_on_this_site(live: LiveServer) -> None:
    with live.client() as browser:
        for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
            r = browser.post("/login", data={"username": "bob", "password": "pw-b", "next": target})
            assert r.status_code == 303 and r.headers["location"] == "/"


def test_every_source_of_users_works_and_passwords_may_contain_colons(live: LiveServer) -> None:
    for creds in (ALICE, BOB, ROOT):
        with live.client(auth=creds) as client:
            assert client.get("/internal/whoami").json()["user"] == creds[0]
    with live.client(auth=("alice", "pw-b")) as client:
        assert client.get("/internal/whoami").status_code == 401


def start_blocked_job(live: LiveServer, creds: tuple[str, str], task: str) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        with live.client(auth=creds) as client:
            out["response"] = client.post(
                "/sdapi/v1/txt2img", json={**TINY_TXT2IMG, "prompt": "block", "force_task_id": task}
            )

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_users_see_and_stop_only_their_own_jobs(live: LiveServer) -> None:
    hooks = live.services.generation.hooks
    assert isinstance(hooks, BlockHooks)
    hooks.gate.clear()
    hooks.blocked.clear()
    thread, out = start_blocked_job(live, ALICE, "task(alice-1)")
    try:
        assert hooks.blocked.wait(30)
        with live.client(auth=ALICE) as alice, live.client(auth=BOB) as bob, live.client(auth=ROOT) as root:
            queued = threading.Thread(
                target=lambda: alice.post("/sdapi/v1/txt2img", json={**TINY_TXT2IMG, "force_task_id": "task(alice-2)"})
            )
            queued.start()
            deadline = time.monotonic() + 30
            while alice.get("/internal/pending-tasks").json()["size"] != 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert alice.get("/sdapi/v1/progress").json()["state"]["job"] == "task(alice-1)"
            bob_view = bob.get("/sdapi/v1/progress").json()
            assert bob_view["state"]["job"] == "" and bob_view["progress"] == 0
            assert bob.get("/internal/pending-tasks").json() == {"size": 0, "tasks": []}
            assert bob.post("/internal/progress", json={"id_task": "task(alice-1)"}).json()["textinfo"] == "Waiting..."
            assert bob.post("/sdapi/v1/interrupt").status_code == 200
            assert bob.post("/sdapi/v1/skip").status_code == 200
            assert bob.post("/sdapi/v1/interrupt", params={"id_task": "task(alice-2)"}).status_code == 404
            control = live.services.jobs.get("task(alice-1)").control
            assert not control.interrupted.is_set() and not control.skipped.is_set()
            assert root.get("/internal/pending-tasks").json()["tasks"] == ["task(alice-2)"]  # admin sees all
            assert root.post("/sdapi/v1/interrupt", params={"id_task": "task(alice-2)"}).status_code == 200
            assert alice.post("/sdapi/v1/interrupt").status_code == 200
            assert control.interrupted.is_set()
            queued.join(1)
    finally:
        hooks.gate.set()
        thread.join(30)
    assert out["response"].status_code == 200 and out["response"].json()["images"] == []


def test_per_user_queue_limit(live: LiveServer) -> None:
    hooks = live.services.generation.hooks
    assert isinstance(hooks, BlockHooks)
    hooks.gate.clear()
    hooks.blocked.clear()
    live.services.options.set("api_max_queued_per_user", 1)
    thread, _ = start_blocked_job(live, ALICE, "task(alice-3)")
    try:
        assert hooks.blocked.wait(30)
        with live.client(auth=ALICE) as alice, live.client(auth=BOB) as bob:
            waiting = threading.Thread(target=lambda: alice.post("/sdapi/v1/txt2img", json=TINY_TXT2IMG))
            waiting.start()
            deadline = time.monotonic() + 30
            while alice.get("/internal/pending-tasks").json()["size"] != 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            full = alice.post("/sdapi/v1/txt2img", json=TINY_TXT2IMG)
            assert full.status_code == 429 and "api_max_queued_per_user" in full.json()["detail"]
            bob_job = threading.Thread(target=lambda: bob.post("/sdapi/v1/txt2img", json=TINY_TXT2IMG))
            bob_job.start()  # another user still gets in
            while bob.get("/internal/pending-tasks").json()["size"] != 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            hooks.gate.set()
            waiting.join(30)
            bob_job.join(30)
    finally:
        hooks.gate.set()
        live.services.options.set("api_max_queued_per_user", 10)
        thread.join(30)


def test_global_settings_are_for_admins_when_an_admin_list_exists(live: LiveServer) -> None:
    with live.client(auth=BOB) as bob, live.client(auth=ROOT) as root:
        r = bob.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2})
        assert r.status_code == 403 and r.json()["error"] == "Forbidden"
        assert bob.post("/sdapi/v1/unload-checkpoint").status_code == 403
        assert bob.post("/sdapi/v1/server-kill").status_code == 403
        assert root.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2}).status_code == 200
        assert bob.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 2
        root.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 1})


def test_failed_logins_are_throttled_per_address(live: LiveServer) -> None:
    with live.client() as client:
        for _ in range(3):
            assert client.get("/sdapi/v1/progress", auth=("alice", "wrong")).status_code == 401
        locked = client.get("/sdapi/v1/progress", auth=ALICE)  # even the right password must wait
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1
        form = client.post("/login", data={"username": "alice", "password": "pw-a"})
        assert form.status_code == 429
        deadline = time.monotonic() + 15  # the lockout is 1.5 s; a locked request does not extend it
        while (after := client.get("/sdapi/v1/progress", auth=ALICE)).status_code == 429:
            assert time.monotonic() < deadline, "the address stayed locked out"
            time.sleep(0.05)
        assert after.status_code == 200


class FakeExtensionHost:
    """Stands in for modules.extension_host.host.ExtensionHost: adds a route in on_app_started."""

    def __init__(self) -> None:
        self.started_with: list[Any] = []
        self.runner = self

    def scripts_list(self) -> dict[str, list[str]]:
        return {"txt2img": ["fake script"], "img2img": []}

    def app_started(self, demo: Any, app: Any) -> None:
        self.started_with.append(demo)

        @app.get("/my-extension/secret")
        def secret() -> dict[str, str]:
            return {"secret": "extension data"}


def test_routes_added_by_extensions_need_login(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    host = FakeExtensionHost()
    server = start_server(tmp_path, tiny_models, "--nowebui", "--api-auth", "bob:pw-b", extension_host=host)
    try:
        assert host.started_with == [None]  # on_app_started ran (no UI: demo is None)
        with server.client() as anonymous, server.client(auth=BOB) as bob:
            assert anonymous.get("/my-extension/secret").status_code == 401
            assert bob.get("/my-extension/secret").json() == {"secret": "extension data"}
            assert anonymous.get("/sdapi/v1/scripts").status_code == 401
            assert bob.get("/sdapi/v1/scripts").json()["txt2img"] == ["fake script"]  # the host's route
    finally:
        server.stop()


# --- units -----------------------------------------------------------------------------------------


def test_user_table_from_flags_and_file(tmp_path: Path) -> None:
    path = tmp_path / "auth.txt"
    path.write_text("a:1, b:2\n# comment\n@admins: b\nc:x:y\n")
    table = load_user_table(parse_args(["--gradio-auth-path", str(path), "--api-auth", "d:4", "--admin-users", "a"]))
    assert table.passwords == {"a": "1", "b": "2", "c": "x:y", "d": "4"}
    assert table.admins == frozenset({"a", "b"})
    assert table.check("c", "x:y") and not table.check("c", "x") and not table.check("zz", "1")
    assert not load_user_table(parse_args([])).enabled
    with pytest.raises(AuthConfigError, match="expected user:password"):
        load_user_table(parse_args(["--gradio-auth", "nopassword"]))
    with pytest.raises(AuthConfigError, match="admin names without a login: ghost"):
        load_user_table(parse_args(["--gradio-auth", "a:1", "--admin-users", "ghost"]))
    with pytest.raises(AuthConfigError, match="cannot read"):
        load_user_table(parse_args(["--gradio-auth-path", str(tmp_path / "missing")]))


def test_basic_header_parsing() -> None:
    assert parse_basic_header("Basic YWxpY2U6cHc6eA==") == ("alice", "pw:x")
    assert parse_basic_header("Bearer abc") is None
    assert parse_basic_header("Basic !!!") is None
    assert parse_basic_header("Basic bm9jb2xvbg==") is None  # "nocolon"


def test_throttle_window_and_reset() -> None:
    now = [0.0]
    throttle = LoginThrottle(lambda: (2, 10.0), clock=lambda: now[0], max_addresses=2)
    throttle.failed("a")
    assert throttle.retry_after("a") == 0
    throttle.failed("a")
    assert throttle.retry_after("a") == pytest.approx(10.0)
    now[0] = 5.0
    assert throttle.retry_after("a") == pytest.approx(5.0)
    now[0] = 10.5
    assert throttle.retry_after("a") == 0
    throttle.failed("b")
    throttle.failed("b")
    throttle.succeeded("b")
    assert throttle.retry_after("b") == 0
    for address in ("c", "d", "e"):
        throttle.failed(address)
    assert len(throttle._failures) <= 2  # bounded memory


def test_user_table_without_users_is_disabled() -> None:
    assert not UserTable().enabled
