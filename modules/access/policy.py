"""The one access policy: who may change what, whose jobs a caller sees, which quota a job counts
against and which limits a request must fit. The HTTP routes, the Gradio UI handlers and Gradio's
own API endpoints all ask this object; no adapter keeps a rule of its own.

Rules (docs/api.md "Security model"):
- Without logins everyone is the local user: all jobs are visible, global settings may be changed
  (A1111), and the queue limit counts per client address.
- With logins, an admin list (--admin-users or `@admins:` in the auth file) makes global changes
  (settings, the loaded checkpoint, server control, training) admin-only; without one any
  signed-in user may make them (A1111 behaviour). Jobs are visible to their owner and admins.
- The shared-instance limits (section "sharing") are changed only by an admin, or by the local
  user of a server without logins that does not listen on the network.
- Folder settings (`outdir_*`) are locked for everyone with --hide-ui-dir-config or --listen.
- --freeze-settings* keys cannot be changed at all.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modules.access.limits import (
    SHARING,
    RequestLimits,
    check_generation,
    check_upscale,
)
from modules.core.cmd_args import is_non_local
from modules.core.options import Options
from modules.generation.requests import GenerationRequest

# Settings that name folders: changed from a shared server they would let a client write anywhere.
PATH_SETTING_PREFIXES = ("outdir_",)


class AccessDenied(PermissionError):
    """The caller may not do this (HTTP 403); the message says why."""


@dataclass(frozen=True)
class Caller:
    """Who asks: the signed-in user (None without logins) and the client address."""

    user: str | None
    address: str = "unknown"

    @property
    def quota_key(self) -> str:
        """What the per-user queue limit counts: the user, else the client address."""
        return self.user if self.user is not None else f"addr:{self.address}"


def client_address(scope: Mapping[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def caller_of(scope: Mapping[str, Any]) -> Caller:
    """The caller of an HTTP request (HTTP routes and Gradio handlers alike): the user the auth
    middleware put into the scope's state, and the client address."""
    state = scope.get("state") or {}
    user = state.get("user")
    return Caller(str(user) if user is not None else None, client_address(scope))


class AccessPolicy:
    def __init__(self, options: Options, args: argparse.Namespace, admins: frozenset[str], logins: bool):
        self._options = options
        self._args = args
        self.admins = admins
        self.logins = logins

    # --- who is who ------------------------------------------------------------------------------
    def is_admin(self, user: str | None) -> bool:
        return user is not None and user in self.admins

    def may_change_settings(self, user: str | None) -> bool:
        """Global changes: everyone without logins or without an admin list, else admins only."""
        return not self.logins or not self.admins or self.is_admin(user)

    def may_change_limits(self, user: str | None) -> bool:
        return self.is_admin(user) or (not self.logins and not is_non_local(self._args))

    def may_see_job(self, owner: str | None, user: str | None) -> bool:
        """A job is visible to its owner and admins; without logins (user None) to everyone."""
        return user is None or owner is None or owner == user or self.is_admin(user)

    # --- settings --------------------------------------------------------------------------------
    @property
    def path_settings_locked(self) -> bool:
        return bool(self._args.hide_ui_dir_config) or is_non_local(self._args)

    def frozen_keys(self) -> set[str]:
        """--freeze-settings, --freeze-settings-in-sections, --freeze-specific-settings (A1111)."""
        args = self._args
        registry = self._options.registry.options
        if args.freeze_settings:
            return set(registry)
        sections = {s.strip() for s in (args.freeze_settings_in_sections or "").split(",") if s.strip()}
        keys = {s.strip() for s in (args.freeze_specific_settings or "").split(",") if s.strip()}
        return keys | {k for k, info in registry.items() if info.section[0] in sections}

    def require_settings_access(self, caller: Caller) -> None:
        if not self.may_change_settings(caller.user):
            raise AccessDenied("only admins may change global settings or models on this server")

    def check_path_keys(self, keys: Iterable[str], what: str) -> None:
        """Refuse folder settings on shared servers (A1111 --hide-ui-dir-config), for every caller."""
        if not self.path_settings_locked:
            return
        locked = sorted(k for k in keys if k.startswith(PATH_SETTING_PREFIXES))
        if locked:
            raise AccessDenied(f"{what}: folder settings cannot be changed on this server: {', '.join(locked)}")

    def check_settings_change(self, caller: Caller, keys: Iterable[str], what: str = "settings") -> None:
        """Refuse the whole change when any key is not the caller's to change (nothing is stored)."""
        keys = sorted(set(keys))
        if not keys:
            return
        self.require_settings_access(caller)
        self.check_path_keys(keys, what)
        frozen = sorted(set(keys) & self.frozen_keys())
        if frozen:
            raise AccessDenied(f"{what}: these settings are frozen on this server: {', '.join(frozen)}")
        registry = self._options.registry
        limits = sorted(k for k in keys if k in registry and registry[k].section == SHARING)
        if limits and not self.may_change_limits(caller.user):
            raise AccessDenied(f"{what}: only an admin may change the shared-instance limits: {', '.join(limits)}")

    # --- requests --------------------------------------------------------------------------------
    @property
    def limits(self) -> RequestLimits:
        return RequestLimits.from_settings(self._options.as_dict())

    def check_generation(self, req: GenerationRequest) -> None:
        """Limits and override_settings rules for a txt2img/img2img request, before it is queued."""
        check_generation(req, self.limits)
        self.check_path_keys(set(req.override_settings or {}), "override_settings")

    def check_upscale(self, width: int, height: int, scale: float, target: tuple[int, int] | None) -> None:
        check_upscale(width, height, scale, target, self.limits)
