"""Device and dtype policy: the one place that decides where models run and in which precision.

Vocabulary after ComfyUI: a compute device, an offload device, a per-component dtype, and a
VRAM mode (normal / medvram = model offload / lowvram = sequential offload). Nothing here
probes hardware at import; `DevicePolicy.detect(args)` does it when the composition root asks.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from enum import StrEnum

import torch


class VramMode(StrEnum):
    NORMAL = "normal"
    MEDVRAM = "medvram"  # whole components move to the GPU only while used (model offload)
    LOWVRAM = "lowvram"  # submodules move one at a time (sequential offload)


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
        half = _half_dtype(device)
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


def _half_dtype(device: torch.device) -> torch.dtype:
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
