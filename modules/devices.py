"""A1111's `modules.devices` for extensions: the device and dtypes of the running app.

`devices.device`, `dtype`, `dtype_vae`, `dtype_unet` are read from the app's DevicePolicy at each
access (module `__getattr__`), so `x.to(devices.device)` gets a real torch.device. Before the app
is bound (an install.py, a preload.py) they describe the default: CUDA if present, else CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from modules.core.devices import torch_gc as _torch_gc
from modules.extension_host.facade import current, is_bound

__all__ = [
    "NansException",
    "autocast",
    "cond_cast_float",
    "cond_cast_unet",
    "cpu",
    "get_cuda_device_string",
    "get_device_for",
    "get_optimal_device",
    "get_optimal_device_name",
    "has_mps",
    "randn",
    "randn_like",
    "test_for_nans",
    "torch_gc",
    "without_autocast",
]

cpu = torch.device("cpu")
fp8 = False
unet_needs_upcast = False
force_fp16 = False


class NansException(Exception):
    """A1111 raises this when a model produces NaNs (extensions catch it)."""


def _policy_value(name: str) -> Any:
    if is_bound():
        policy = current().services.policy
        return {
            "device": policy.device,
            "dtype": policy.unet_dtype,
            "dtype_unet": policy.unet_dtype,
            "dtype_inference": policy.unet_dtype,
            "dtype_vae": policy.vae_dtype,
            "device_interrogate": policy.device,
            "device_gfpgan": policy.device,
            "device_esrgan": policy.device,
            "device_codeformer": policy.device,
        }[name]
    default = torch.device("cuda") if torch.cuda.is_available() else cpu
    return default if name.startswith("device") else (torch.float16 if default.type == "cuda" else torch.float32)


_POLICY_NAMES = {
    "device",
    "dtype",
    "dtype_unet",
    "dtype_inference",
    "dtype_vae",
    "device_interrogate",
    "device_gfpgan",
    "device_esrgan",
    "device_codeformer",
}


def __getattr__(name: str) -> Any:
    if name in _POLICY_NAMES:
        return _policy_value(name)
    raise AttributeError(f"module 'modules.devices' has no attribute {name!r}")


def has_mps() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def get_cuda_device_string() -> str:
    return str(_policy_value("device")) if torch.cuda.is_available() else "cuda"


def get_optimal_device_name() -> str:
    return str(_policy_value("device"))


def get_optimal_device() -> torch.device:
    device: torch.device = _policy_value("device")
    return device


def get_device_for(task: str) -> torch.device:
    """`--use-cpu all` or `--use-cpu <task>` puts that task on the CPU (A1111)."""
    if is_bound():
        use_cpu = set(getattr(current().services.args, "use_cpu", []) or [])
        if "all" in use_cpu or task in use_cpu:
            return cpu
    return get_optimal_device()


def torch_gc() -> None:
    _torch_gc()


def randn(seed: int, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise as A1111 makes it for a seed (CPU generator, moved to the device)."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed)) if generator is None else generator
    return torch.randn(shape, generator=gen, device="cpu").to(get_optimal_device())


def randn_like(x: torch.Tensor) -> torch.Tensor:
    return torch.randn(x.shape, device="cpu", dtype=x.dtype).to(x.device)


def autocast(disable: bool = False) -> contextlib.AbstractContextManager[Any]:
    """Our pipelines run in the policy's dtypes already, so this is a no-op context (as A1111's
    is in full precision)."""
    return contextlib.nullcontext()


@contextlib.contextmanager
def without_autocast(disable: bool = False) -> Iterator[None]:
    yield


def cond_cast_unet(x: torch.Tensor) -> torch.Tensor:
    return x.to(_policy_value("dtype_unet"))


def cond_cast_float(x: torch.Tensor) -> torch.Tensor:
    return x.float()


def test_for_nans(x: torch.Tensor, where: str) -> None:
    """Raise NansException when every value of `x` is NaN (A1111's check, unet/vae)."""
    if is_bound() and getattr(current().services.args, "disable_nan_check", False):
        return
    if bool(torch.isnan(x).all()):
        raise NansException(f"A tensor with all NaNs was produced in {where}.")
