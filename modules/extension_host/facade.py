"""Binds the A1111 facade modules (modules.shared, modules.scripts, ...) to one app instance.

Extensions import module-level names (`from modules.shared import opts`), so the facades need
one process-wide place to find the running app. This module is that place, and the only one:
the facades keep no state of their own and resolve every access through `current()`.
`bind(services)` is called once by the composition root; tests bind and `unbind()`.

FACADE_VERSION is the version of the compatibility surface documented in docs/extensions.md.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules.extension_host.host import ExtensionHost
from modules.extension_host.preload import PreloadHooks

if TYPE_CHECKING:
    from modules.services import Services

FACADE_VERSION = "1.0"
A1111_API_VERSION = "1.10.1"  # the A1111 release whose extension API the facades follow


class FacadeNotBound(RuntimeError):
    pass


class _Binding:
    """The single slot holding the bound host (see module docstring)."""

    def __init__(self) -> None:
        self.host: ExtensionHost | None = None
        self.lock = threading.Lock()


_SLOT = _Binding()


def bind(
    services: Services,
    *,
    start: bool = True,
    run_installers: bool = True,
    preload: PreloadHooks | None = None,
    **host_options: Any,
) -> ExtensionHost:
    """Create the ExtensionHost for `services`, bind the facades to it and (by default) start it:
    discover extensions, run changed installers, import scripts, on_before_ui, on_ui_settings.
    The generation service gets the host's script runner as its hooks."""
    host = ExtensionHost(services, **host_options)
    if preload is not None:
        for problem in preload.problems.items():
            host.problems.note(problem.extension, problem.where, problem.error)
    with _SLOT.lock:
        previous = _SLOT.host
        _SLOT.host = host
    if previous is not None and previous is not host:
        previous.unload()
    if start:
        host.start(run_installers=run_installers)
    services.script_hooks.attach(host.runner)
    return host


def unbind() -> None:
    with _SLOT.lock:
        host, _SLOT.host = _SLOT.host, None
    if host is not None:
        host.unload()
        host.services.script_hooks.detach()


def current() -> ExtensionHost:
    host = _SLOT.host
    if host is None:
        raise FacadeNotBound(
            "The A1111 compatibility modules (modules.shared, modules.scripts, ...) were used before the "
            "web UI bound them; modules.extension_host.facade.bind(services) must run first."
        )
    return host


def is_bound() -> bool:
    return _SLOT.host is not None


def caller_file(skip: int = 2) -> str:
    """File of the code that called the facade function (for callback ordering names)."""
    frame = sys._getframe(skip)
    here = Path(__file__).resolve().parent.parent  # modules/
    while frame is not None:
        name = frame.f_code.co_filename
        resolved = Path(name).resolve() if not name.startswith("<") else None
        if resolved is None or resolved.parent != here:
            return name
        frame = frame.f_back  # type: ignore[assignment]
    return "unknown file"


class Lazy:
    """A stand-in for a value of the bound host, resolved at every use.

    `from modules.shared import opts` at import time gets this object; attribute access, item
    access, iteration and calls go to the current `opts`, so re-binding (tests) just works."""

    __slots__ = ("_resolve",)

    def __init__(self, resolve: Callable[[], Any]):
        object.__setattr__(self, "_resolve", resolve)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolve(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._resolve(), name, value)

    def __getitem__(self, key: Any) -> Any:
        return self._resolve()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._resolve()[key] = value

    def __contains__(self, key: Any) -> bool:
        return key in self._resolve()

    def __iter__(self) -> Any:
        return iter(self._resolve())

    def __len__(self) -> int:
        return len(self._resolve())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)

    def __bool__(self) -> bool:
        return bool(self._resolve())

    def __repr__(self) -> str:
        try:
            return repr(self._resolve())
        except FacadeNotBound:
            return "<unbound A1111 facade value>"
