"""Trusted reverse proxies: whose X-Forwarded-For names the client address.

The client address keys the per-address queue quota (without logins) and the failed-login
throttle. A header anyone can send must not choose it, so X-Forwarded-For / X-Forwarded-Proto
are read only when the connection comes from a proxy listed in --forwarded-allow-ips, and
uvicorn's own proxy-header handling (which trusts 127.0.0.1 by default) is switched off
(`UVICORN_OPTIONS`). Behind a trusted proxy the client is the right-most address in
X-Forwarded-For that is not itself a trusted proxy (earlier entries are the client's own claims).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from modules.api.security import is_ip_literal

# Every uvicorn server of this app runs with these (webui.py and the test servers alike).
UVICORN_OPTIONS: dict[str, Any] = {"proxy_headers": False}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyConfigError(ValueError):
    """A malformed --forwarded-allow-ips entry."""


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> TrustedProxies:
        networks: list[Network] = []
        for entry in (text or "").split(","):
            entry = entry.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ProxyConfigError(f"--forwarded-allow-ips: {entry!r} is not an IP address or range") from None
        return cls(tuple(networks))

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip().split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks if net.version == ip.version)

    def client_from(self, peer: str, forwarded_for: str | None) -> str:
        """The client address for a connection from `peer` carrying this X-Forwarded-For."""
        if not self.trusts(peer) or not forwarded_for:
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop if is_ip_literal(hop) else peer
        return hops[0] if hops and is_ip_literal(hops[0]) else peer


class ProxyHeadersMiddleware:
    """Set scope["client"] (and the scheme) from X-Forwarded-* sent by a trusted proxy only."""

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and client and self.proxies.networks:
            peer = str(client[0])
            if self.proxies.trusts(peer):
                headers = Headers(scope=scope)
                address = self.proxies.client_from(peer, headers.get("x-forwarded-for"))
                scope = {**scope, "client": (address, 0)}
                proto = (headers.get("x-forwarded-proto") or "").split(",")[0].strip().lower()
                if proto in ("http", "https"):
                    secure = proto == "https"
                    scheme = ("wss" if secure else "ws") if scope["type"] == "websocket" else proto
                    scope["scheme"] = scheme
        await self.app(scope, receive, send)
