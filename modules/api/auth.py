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

import argparse
import base64
import binascii
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ADMINS_DIRECTIVE = "@admins:"
SESSION_COOKIE = "sdwebui_session"


class AuthConfigError(ValueError):
    """A malformed credentials flag or file; the message says which entry."""


@dataclass(frozen=True)
class UserTable:
    """User name -> password, and the admin names."""

    passwords: dict[str, str] = field(default_factory=dict)
    admins: frozenset[str] = frozenset()

    @property
    def enabled(self) -> bool:
        return bool(self.passwords)

    def check(self, user: str, password: str) -> bool:
        """Constant-time comparison; an unknown user costs the same as a wrong password."""
        expected = self.passwords.get(user)
        candidate = password.encode("utf-8")
        if expected is None:
            secrets.compare_digest(candidate, candidate)
            return False
        return secrets.compare_digest(candidate, expected.encode("utf-8"))


def parse_credentials(text: str, source: str) -> dict[str, str]:
    """'user:pass,user2:pass2' (commas or new lines) -> {user: pass}. Passwords may contain ':'."""
    out: dict[str, str] = {}
    for raw in text.replace("\n", ",").split(","):
        entry = raw.strip()
        if not entry:
            continue
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password:
            raise AuthConfigError(f"{source}: expected user:password, got {_mask(entry)!r}")
        out[user.strip()] = password
    return out


def _mask(entry: str) -> str:
    user, _, _ = entry.partition(":")
    return f"{user}:***" if ":" in entry else entry[:2] + "***"


def parse_auth_file(text: str, source: str) -> tuple[dict[str, str], set[str]]:
    """An auth file: user:password entries (lines or commas), `#` comments, `@admins: a, b` lines."""
    users: dict[str, str] = {}
    admins: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith(ADMINS_DIRECTIVE):
            admins.update(name.strip() for name in line[len(ADMINS_DIRECTIVE) :].split(",") if name.strip())
            continue
        users.update(parse_credentials(line, f"{source} line {number}"))
    return users, admins


def load_user_table(args: argparse.Namespace) -> UserTable:
    """Read the credentials flags and file (called once by the composition root)."""
    users: dict[str, str] = {}
    admins: set[str] = set()
    if getattr(args, "gradio_auth", None):
        users.update(parse_credentials(args.gradio_auth, "--gradio-auth"))
    if getattr(args, "gradio_auth_path", None):
        path = Path(args.gradio_auth_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise AuthConfigError(f"--gradio-auth-path: cannot read {path}: {exc}") from exc
        file_users, file_admins = parse_auth_file(text, str(path))
        users.update(file_users)
        admins.update(file_admins)
    if getattr(args, "api_auth", None):
        users.update(parse_credentials(args.api_auth, "--api-auth"))
    if getattr(args, "admin_users", None):
        admins.update(name.strip() for name in args.admin_users.split(",") if name.strip())
    unknown = sorted(admins - set(users))
    if users and unknown:
        raise AuthConfigError(f"admin names without a login: {', '.join(unknown)}")
    return UserTable(users, frozenset(admins))


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
