"""Logins: the user table, password checks, browser sessions and failed-login throttling.

Users come from --gradio-auth, --gradio-auth-path and --api-auth (all three merge into one
table). When any user exists, every route needs a login: browsers sign in on /login and get a
session cookie, scripts send HTTP Basic credentials. Admins (--admin-users, or an
`@admins: name, name` line in the --gradio-auth-path file) may see and control every job and
change global settings.

Passwords are compared with `secrets.compare_digest`; failed attempts are counted per client
address and an address with too many recent failures must wait (HTTP 429).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from modules.core.users import UserTable

SESSION_COOKIE = "sdwebui_session"


def parse_basic_header(value: str) -> tuple[str, str] | None:
    """'Basic base64(user:pass)' -> (user, pass); None for other schemes or malformed values."""
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class LoginThrottle:
    """Counts failed logins per client address; too many within the window lock the address out.

    In memory, bounded (oldest addresses forgotten first). `limits` returns (max failures,
    lockout seconds) and is read at each check so settings changes apply at once.
    """

    def __init__(
        self,
        limits: Callable[[], tuple[int, float]],
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 10_000,
    ):
        self._limits = limits
        self._clock = clock
        self._max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> float:
        """Seconds this address must still wait (0 = may try)."""
        max_failures, lockout = self._limits()
        now = self._clock()
        with self._lock:
            times = self._failures.get(address)
            if times is None:
                return 0.0
            while times and now - times[0] > lockout:
                times.popleft()
            if not times:
                del self._failures[address]
                return 0.0
            if len(times) < max_failures:
                return 0.0
            return max(0.0, lockout - (now - times[-1]))

    def failed(self, address: str) -> None:
        max_failures, _ = self._limits()
        with self._lock:
            times = self._failures.setdefault(address, deque(maxlen=max(1, max_failures)))
            self._failures.move_to_end(address)
            times.append(self._clock())
            while len(self._failures) > self._max_addresses:
                self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)


class SessionStore:
    """Browser sessions: random token -> (user, expiry). In memory; a restart logs everyone out."""

    def __init__(self, ttl_seconds: float = 7 * 24 * 3600, max_sessions: int = 10_000):
        self._ttl = ttl_seconds
        self._max = max_sessions
        self._sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[token] = (user, time.time() + self._ttl)
            while len(self._sessions) > self._max:
                self._sessions.popitem(last=False)
        return token

    def user_for(self, token: str | None) -> str | None:
        if not token:
            return None
        with self._lock:
            entry = self._sessions.get(token)
            if entry is None:
                return None
            user, expires = entry
            if expires < time.time():
                del self._sessions[token]
                return None
            return user

    def drop(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._sessions.pop(token, None)


@dataclass
class Authenticator:
    """Everything the auth middleware and the login page need."""

    users: UserTable
    throttle: LoginThrottle
    sessions: SessionStore = field(default_factory=SessionStore)

    @property
    def enabled(self) -> bool:
        return self.users.enabled
