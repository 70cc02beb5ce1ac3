"""Image inputs given as base64 or, when allowed, as http(s) URLs, without server-side request forgery.

URLs are off unless the `api_enable_requests` setting is on. Even then, a URL whose host
resolves to any non-public address (loopback, private ranges, link-local such as cloud metadata
at 169.254.169.254, CGNAT, multicast, reserved) is refused, whatever `api_forbid_local_requests`
says. The connection goes to the address that was checked (no second DNS lookup an attacker
could rebind), redirects are not followed, and the download is capped.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from PIL import Image

from modules.generation.image_io import decode_image_base64, decode_image_bytes

Resolver = Callable[[str, int], list[str]]


class UrlInputError(ValueError):
    """A URL input that is disabled, malformed, not public, or failed to download."""


@dataclass(frozen=True)
class UrlPolicy:
    enabled: bool = False
    max_bytes: int = 64 * 1024 * 1024
    timeout: float = 10.0


def is_url(value: str) -> bool:
    head = value[:8].lower()
    return head.startswith("http://") or head.startswith("https://")


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global) and not ip.is_multicast


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UrlInputError(f"cannot resolve {host!r}: {exc}") from exc
    return sorted({str(info[4][0]) for info in infos})


def checked_address(host: str, port: int, resolver: Resolver) -> str:
    """One public address of `host`; refuse if any of its addresses is not public."""
    addresses = resolver(host, port)
    if not addresses:
        raise UrlInputError(f"{host!r} has no address")
    for address in addresses:
        if not is_public_address(address):
            raise UrlInputError(f"URL host {host!r} resolves to {address}, which is not a public address")
    return addresses[0]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a fixed IP address, with the certificate checked for the URL's host name."""

    def __init__(self, host: str, address: str, port: int, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address
        self._tls = ssl.create_default_context()

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def fetch_url(url: str, policy: UrlPolicy, resolver: Resolver = system_resolver) -> bytes:
    """Download `url` under the policy (see module docstring)."""
    if not policy.enabled:
        raise UrlInputError("image URLs are disabled on this server (setting api_enable_requests); send base64")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlInputError(f"not an http(s) URL: {url[:200]!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UrlInputError(f"invalid port in URL {url[:200]!r}") from exc
    address = checked_address(parts.hostname, port, resolver)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = _PinnedHTTPSConnection(parts.hostname, address, port, policy.timeout)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=policy.timeout)
    try:
        conn.request("GET", path, headers={"Host": parts.netloc.rsplit("@", 1)[-1], "User-Agent": "sd-webui"})
        response = conn.getresponse()
        if response.status != 200:
            raise UrlInputError(f"downloading {url[:200]!r} gave HTTP {response.status} (redirects are not followed)")
        data = response.read(policy.max_bytes + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise UrlInputError(f"could not download {url[:200]!r}: {exc}") from exc
    finally:
        conn.close()
    if len(data) > policy.max_bytes:
        raise UrlInputError(f"image at {url[:200]!r} is larger than {policy.max_bytes} bytes")
    return data


def load_image_input(value: object, policy: UrlPolicy, resolver: Resolver = system_resolver) -> Image.Image:
    """An API image field (base64, data URI or URL) as a PIL image; clear errors otherwise."""
    if not isinstance(value, str) or not value:
        raise UrlInputError("image must be a non-empty base64 string or URL")
    if is_url(value):
        return decode_image_bytes(fetch_url(value, policy, resolver))
    return decode_image_base64(value)
