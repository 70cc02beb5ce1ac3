"""HTTP hardening that applies to every route (API, UI, files, websockets): one ASGI middleware.

- Host header check against DNS rebinding: only known names of this machine (localhost, the
  --server-name, its host name with --listen, --allowed-hosts entries) or IP literals. A
  rebinding attack needs a domain name of the attacker's, so IP literals are always safe.
- Cross-origin requests (an Origin header naming another site than the Host) are refused unless
  the origin is allowed by --cors-allow-origins / --cors-allow-origins-regex. This also stops
  cross-site websocket hijacking and form posts riding on a session cookie.
- Request bodies larger than the limit get 413 (Content-Length checked up front; chunked bodies
  are read up to the limit before the app sees them).
- Security headers on every response: nosniff, frame-ancestors/X-Frame-Options, Referrer-Policy.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modules.core.cmd_args import is_non_local

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"content-security-policy", b"frame-ancestors 'self'"),
    (b"referrer-policy", b"same-origin"),
)
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


def split_host_port(value: str) -> tuple[str, int | None]:
    """'Example.com:7860' -> ('example.com', 7860); '[::1]' -> ('::1', None); bare IPv6 kept whole."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host, port_text = value, ""
    return host.rstrip("."), int(port_text) if port_text.isdecimal() else None


def split_host(value: str) -> str:
    """The host name of a Host header value, lower case, without port or brackets."""
    return split_host_port(value)[0]


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HostPolicy:
    """Which Host header values are accepted."""

    names: frozenset[str]
    suffixes: tuple[str, ...] = ()  # ".example.com" matches any sub-domain
    allow_any: bool = False

    def allows(self, header: str | None) -> bool:
        if self.allow_any:
            return True
        if not header:
            return False
        host = split_host(header)
        if is_ip_literal(host) or host in self.names:
            return True
        return any(host.endswith(suffix) for suffix in self.suffixes)

    @classmethod
    def from_args(cls, args: argparse.Namespace, hostname: str | None = None) -> HostPolicy:
        names = set(LOCAL_NAMES)
        if args.server_name:
            names.add(split_host(str(args.server_name)))
        if is_non_local(args):
            machine = (hostname if hostname is not None else socket.gethostname()).lower()
            if machine:
                names.update({machine, f"{machine}.local", machine.split(".")[0]})
        suffixes: list[str] = []
        allow_any = False
        for entry in (getattr(args, "allowed_hosts", None) or "").split(","):
            entry = entry.strip().lower()
            if entry == "*":
                allow_any = True
            elif entry.startswith("."):
                suffixes.append(entry)
            elif entry:
                names.add(split_host(entry))
        return cls(frozenset(names), tuple(suffixes), allow_any)


@dataclass(frozen=True)
class OriginPolicy:
    """Origins allowed to make cross-origin requests (besides the same origin)."""

    origins: frozenset[str] = frozenset()
    pattern: re.Pattern[str] | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> OriginPolicy:
        origins = frozenset(o.strip().rstrip("/") for o in (args.cors_allow_origins or "").split(",") if o.strip())
        regex = re.compile(args.cors_allow_origins_regex) if args.cors_allow_origins_regex else None
        return cls(origins, regex)

    def is_cors_allowed(self, origin: str) -> bool:
        return origin in self.origins or "*" in self.origins or bool(self.pattern and self.pattern.fullmatch(origin))

    def allows(self, origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True  # not a browser cross-site request (scripts, same-origin GETs)
        return same_origin(origin, host) or self.is_cors_allowed(origin.rstrip("/"))


def same_origin(origin: str, host: str | None) -> bool:
    """Whether the Origin header names the site the request was sent to (scheme default ports equal)."""
    if not host or origin == "null":
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    default = 443 if parts.scheme == "https" else 80
    try:
        origin_port = parts.port or default
    except ValueError:
        return False
    host_name, host_port = split_host_port(host)
    return parts.hostname.lower() == host_name and origin_port == (host_port or default)


class _BodyTooLarge(Exception):
    pass


def _json_error(status: int, error: str, detail: str) -> tuple[dict[str, object], bytes]:
    body = json.dumps({"error": error, "detail": detail, "body": "", "errors": detail}).encode()
    start: dict[str, object] = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, body


class SecurityMiddleware:
    """Host check, origin check, body size limit and security headers (outermost middleware)."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: HostPolicy,
        origins: OriginPolicy,
        max_body_bytes: Callable[[], int],
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.origins = origins
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host")
        if not self.hosts.allows(host):
            await self._refuse(scope, send, 400, "InvalidHost", f"Host header {host!r} is not an allowed host name")
            return
        if not self.origins.allows(headers.get("origin"), host):
            await self._refuse(scope, send, 403, "CrossOriginRefused", "cross-origin requests are not allowed")
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        await self._http(scope, receive, send, headers)

    async def _http(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        limit = self.max_body_bytes()
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                await self._refuse(scope, send, 400, "BadRequest", "invalid Content-Length header")
                return
            if int(length) > limit:
                await self._refuse(scope, send, 413, "RequestTooLarge", _too_large(int(length), limit))
                return
        elif scope["method"] not in ("GET", "HEAD", "OPTIONS", "DELETE"):
            try:
                receive = await _buffer_body(receive, limit)
            except _BodyTooLarge:
                await self._refuse(scope, send, 413, "RequestTooLarge", _too_large(None, limit))
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, scope: Scope, send: Send, status: int, error: str, detail: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        start, body = _json_error(status, error, detail)
        start["headers"] = [*start["headers"], *SECURITY_HEADERS]  # type: ignore[misc]
        await send(start)
        await send({"type": "http.response.body", "body": body})


def _too_large(length: int | None, limit: int) -> str:
    size = f"{length} bytes" if length is not None else "the request body"
    return f"{size} is over the limit of {limit} bytes (setting api_max_request_body_mb)"


async def _buffer_body(receive: Receive, limit: int) -> Receive:
    """Read a body without Content-Length up to `limit`, then hand it to the app as one message."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            chunks_done: list[Message] = [message]
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            chunks_done = []
            break
    replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}, *chunks_done]

    async def replay_receive() -> Message:
        if replay:
            return replay.pop(0)
        return await receive()

    return replay_receive
