"""A1111's `modules.safe` for extensions: a restricted unpickler for .ckpt/.pt files.

`load` is torch.load limited to tensors and plain containers (our safe loader's rules), unless
the app runs with --disable-safe-unpickle. `unsafe_torch_load` is the unrestricted torch.load;
`Extra(handler)` lets a block of code load files its handler approves (A1111).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import torch

from modules.extension_host.facade import current, is_bound

__all__ = ["Extra", "load", "load_with_extra", "unsafe_torch_load"]

_torch_load = torch.load  # the original, even if an extension later replaces torch.load


def unsafe_torch_load(f: Any, *args: Any, **kwargs: Any) -> Any:
    """torch.load without restrictions (A1111's name; torch >= 2.6 restricts by default)."""
    kwargs.setdefault("weights_only", False)
    return _torch_load(f, *args, **kwargs)


# Handler of the innermost `with Extra(handler)` block of this thread/task (None: no block).
_EXTRA: contextvars.ContextVar[Callable[[str, str], Any] | None] = contextvars.ContextVar("safe_extra", default=None)


def _safe_wanted() -> bool:
    if _EXTRA.get() is not None:
        return False
    return not (is_bound() and getattr(current().services.args, "disable_safe_unpickle", False))


def load(filename: Any, *args: Any, **kwargs: Any) -> Any:
    """torch.load that refuses arbitrary code in pickles (weights_only), as A1111's check does."""
    if _safe_wanted():
        kwargs["weights_only"] = True
        return _torch_load(filename, *args, **kwargs)
    return unsafe_torch_load(filename, *args, **kwargs)


def load_with_extra(
    filename: Any, extra_handler: Callable[[str, str], Any] | None = None, *args: Any, **kwargs: Any
) -> Any:
    """A1111: `extra_handler(module, name)` may allow more globals; here it means the caller trusts
    the file, so it loads without the restriction."""
    if extra_handler is not None:
        return unsafe_torch_load(filename, *args, **kwargs)
    return load(filename, *args, **kwargs)


@contextlib.contextmanager
def Extra(handler: Callable[[str, str], Any]) -> Iterator[None]:
    """`with safe.Extra(handler): ...` - inside, `safe.load` trusts the files (see load_with_extra)."""
    token = _EXTRA.set(handler)
    try:
        yield
    finally:
        _EXTRA.reset(token)
