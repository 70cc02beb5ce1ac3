"""Device and dtype policy: the one place that decides where models run and in which precision.

Vocabulary after ComfyUI: a compute device, an offload device, a per-component dtype, and a
VRAM mode (normal / medvram = model offload / lowvram = sequential offload). Nothing here
probes hardware at import; `DevicePolicy.detect(args)` does it when the composition root asks.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch

UPCAST_ATTN_LABEL = "Upcast cross attention layer to float32"  # shared_options' upcast_attn
AUTO_VAE_LABEL = "Automatically revert VAE to 32-bit floats"  # shared_options' auto_vae_precision


class NansException(RuntimeError):
    """A model produced NaN/inf values: the job fails with advice instead of a black image."""


@dataclass(frozen=True)
class NanCheck:
    """A1111's `test_for_nans` with the flags that shape its advice.

    One `isfinite` reduction and one host sync per call: the UNet is checked once per sampler
    step, the VAE once per decoded image batch (docs/benchmarks.md has the cost).
    """

    enabled: bool = True
    no_half: bool = False  # the UNet already runs in fp32: upcasting advice would not help
    no_half_vae: bool = False  # the VAE already runs in fp32

    def unet(self, x: torch.Tensor) -> None:
        if self.enabled and not all_finite(x):
            raise NansException(self.message("unet"))

    def vae_ok(self, x: torch.Tensor) -> bool:
        return not self.enabled or all_finite(x)

    def message(self, where: str) -> str:
        if where == "unet":
            text = "A tensor with NaN or infinite values was produced in the UNet."
            if not self.no_half:
                text += (
                    " Half precision may be too narrow for this picture, or the video card may not support it:"
                    f" turn on '{UPCAST_ATTN_LABEL}' in Settings > Stable Diffusion, or start with --no-half."
                )
        else:
            text = "A tensor with NaN or infinite values was produced in the VAE."
            if not self.no_half_vae:
                text += (
                    f" Half precision may be too narrow for this picture: turn on '{AUTO_VAE_LABEL}'"
                    " in Settings > VAE, or start with --no-half-vae."
                )
        return text + " Use --disable-nan-check to turn this check off."


def all_finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x).all().item())


def vae_fallback_dtype(opts: Mapping[str, Any], current: torch.dtype, device: torch.device) -> torch.dtype | None:
    """The dtype to decode again in after the VAE gave NaNs (A1111's auto_vae_precision[_bfloat16]);
    None: nothing left to try."""
    bf16_ok = device.type != "cuda" or torch.cuda.is_bf16_supported()
    if opts.get("auto_vae_precision_bfloat16", False) and current not in (torch.bfloat16, torch.float32) and bf16_ok:
        return torch.bfloat16
    if opts.get("auto_vae_precision", True) and current != torch.float32:
        return torch.float32
    return None


class VramMode(StrEnum):
    NORMAL = "normal"
    MEDVRAM = "medvram"  # whole components move to the GPU only while used (model offload)
    LOWVRAM = "lowvram"  # blocks move one at a time (modules.models.offload)


@dataclass(frozen=True)
class DevicePolicy:
    device: torch.device
    unet_dtype: torch.dtype
    vae_dtype: torch.dtype
    text_encoder_dtype: torch.dtype
    vram_mode: VramMode = VramMode.NORMAL
    medvram_sdxl_only: bool = False
    offload_device: torch.device = torch.device("cpu")
    rng_device: torch.device = torch.device("cpu")
    nan_check: bool = True  # off with --disable-nan-check
    no_half: bool = False  # the flags, for the advice a NaN error gives
    no_half_vae: bool = False

    @property
    def nans(self) -> NanCheck:
        return NanCheck(
            self.nan_check,
            no_half=self.no_half or self.unet_dtype == torch.float32,
            no_half_vae=self.no_half or self.no_half_vae or self.vae_dtype == torch.float32,
        )

    @property
    def is_cpu(self) -> bool:
        return self.device.type == "cpu"

    def vram_mode_for(self, is_sdxl: bool) -> VramMode:
        if self.medvram_sdxl_only and self.vram_mode == VramMode.NORMAL and is_sdxl:
            return VramMode.MEDVRAM
        return self.vram_mode

    @classmethod
    def cpu(cls) -> DevicePolicy:
        """fp32 on the CPU: the policy tests use."""
        cpu = torch.device("cpu")
        return cls(cpu, torch.float32, torch.float32, torch.float32)

    @classmethod
    def detect(cls, args: argparse.Namespace) -> DevicePolicy:
        """Pick device and dtypes from the hardware present and the A1111 flags."""
        device = _pick_device(args)
        full = args.no_half or args.precision == "full" or device.type == "cpu"
        half = _half_dtype(device, args.precision)
        unet_dtype = torch.float32 if full else half
        vae_dtype = torch.float32 if (full or args.no_half_vae) else half
        if args.lowvram:
            mode = VramMode.LOWVRAM
        elif args.medvram:
            mode = VramMode.MEDVRAM
        else:
            mode = VramMode.NORMAL
        if device.type == "cpu":
            mode = VramMode.NORMAL  # offloading to where the model already is saves nothing
        return cls(
            device=device,
            unet_dtype=unet_dtype,
            vae_dtype=vae_dtype,
            text_encoder_dtype=unet_dtype,
            vram_mode=mode,
            medvram_sdxl_only=bool(args.medvram_sdxl) and device.type != "cpu",
            rng_device=device if device.type == "cuda" else torch.device("cpu"),
            nan_check=not getattr(args, "disable_nan_check", False),
            no_half=bool(args.no_half),
            no_half_vae=bool(args.no_half_vae),
        )


def _pick_device(args: argparse.Namespace) -> torch.device:
    use_cpu = set(getattr(args, "use_cpu", []) or [])
    if "all" in use_cpu or "sd" in use_cpu:
        return torch.device("cpu")
    if torch.cuda.is_available():
        index = f":{args.device_id}" if getattr(args, "device_id", None) is not None else ""
        return torch.device(f"cuda{index}")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _half_dtype(device: torch.device, precision: str = "autocast") -> torch.dtype:
    """fp16 on CUDA/MPS; bf16 where asked for (--precision bf16) and the device has it."""
    if precision == "bf16" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if precision == "bf16" and device.type == "mps":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def torch_gc() -> None:
    """Release cached accelerator memory after unloading a model."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        mps.empty_cache()


@dataclass
class MemoryPeak:
    """Peak memory over one block (a job): host RSS and, on an accelerator, allocated device memory."""

    ram_mib: float | None = None
    vram_mib: float | None = None
    ram_since_start: bool = True  # False: the process's lifetime peak (the RSS peak could not be reset)

    def describe(self) -> str:
        parts = []
        if self.vram_mib is not None:
            parts.append(f"VRAM {self.vram_mib:.0f} MiB")
        if self.ram_mib is not None:
            parts.append(f"RAM {self.ram_mib:.0f} MiB" + ("" if self.ram_since_start else " (process peak)"))
        return ", ".join(parts) or "not measurable here"


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[MemoryPeak]:
    """Measure peak memory while inside; the yielded object is filled in on exit."""
    peak = MemoryPeak(ram_since_start=_reset_peak_rss())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield peak
    finally:
        peak.ram_mib = _peak_rss_mib()
        if device.type == "cuda":
            peak.vram_mib = torch.cuda.max_memory_allocated(device) / 2**20
        elif device.type == "mps":
            peak.vram_mib = torch.mps.driver_allocated_memory() / 2**20  # current, MPS keeps no peak


def _reset_peak_rss() -> bool:
    """Linux resets VmHWM (peak RSS) when "5" is written to clear_refs; elsewhere it cannot be reset."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def device_total_bytes(device: torch.device) -> int | None:
    """Memory of the compute device (None: unknown, e.g. the CPU, where RAM is the budget)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory())
    return None


def ram_total_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None
