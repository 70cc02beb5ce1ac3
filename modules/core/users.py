"""The user table: logins and admins from --gradio-auth, --gradio-auth-path, --api-auth and
--admin-users (parsed once by the composition root; checked by modules.api.auth)."""

from __future__ import annotations

import argparse
import secrets
from dataclasses import dataclass, field
from pathlib import Path

ADMINS_DIRECTIVE = "@admins:"


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
