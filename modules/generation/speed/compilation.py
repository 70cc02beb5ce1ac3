"""torch.compile for the UNet, opt-in, on CUDA only (documented in docs/performance.md).

The compiled function takes the module as an argument, so one compiled callable (kept in a
`SpeedCache` that lives as long as the generation service) serves every model and job without
holding a reference to any model: unloading a checkpoint frees it. Per job the UNet's
`_compiled_call_impl` (the slot `nn.Module.compile()` uses) points at it; afterwards it is put
back, so the module is exactly as before. Dynamo's guards recompile when shapes, the model or
the hooks (e.g. token merging) change: the first image of each new combination is slow.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

log = logging.getLogger(__name__)


def _call_module(module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
    return module._call_impl(*args, **kwargs)


@dataclass
class CompileCache:
    """Compiled callables by (backend, mode); owned by the generation service, not a global."""

    compiled: dict[tuple[str, str | None], Callable[..., Any]] = field(default_factory=dict)

    def get(self, backend: str, mode: str | None) -> Callable[..., Any]:
        key = (backend, mode)
        if key not in self.compiled:
            self.compiled[key] = torch.compile(_call_module, backend=backend, mode=mode, dynamic=False)
        return self.compiled[key]


@contextmanager
def compiled_unet(
    unet: torch.nn.Module, cache: CompileCache, *, backend: str = "inductor", mode: str | None = None
) -> Iterator[None]:
    """Route calls of `unet` through torch.compile while inside."""
    previous = unet._compiled_call_impl
    if previous is not None:  # compiled by someone else (or an enclosing patch): leave it
        yield
        return
    unet._compiled_call_impl = functools.partial(cache.get(backend, mode), unet)
    try:
        yield
    finally:
        unet._compiled_call_impl = None
