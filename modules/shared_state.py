"""A1111's `modules.shared_state` for extensions: `State` is the class of `shared.state`."""

from __future__ import annotations

from modules.extension_host.compat_runtime import StateView as State

__all__ = ["State"]
