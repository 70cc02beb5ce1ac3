"""Settings of the speed and memory options (A1111 keys and infotext labels where A1111 has them).

Register them in the composition root with `registry.extend(speed_options(args))`: the CLI
flags A1111 users know (--opt-channelslast, --opt-sdp-no-mem-attention, --xformers, ...) set
the defaults; a value stored in config.json or sent in override_settings still wins.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modules.core.cmd_args import CPU_BACKENDS
from modules.core.options import OptionInfo
from modules.generation.speed.attention import ATTENTION_CHOICES
from modules.generation.speed.openvino import openvino_available
from modules.generation.speed.tome import MAX_RATIO

OPTIMIZATIONS = ("optimizations", "Optimizations")

# Measured on the reference machine (docs/benchmarks.md, "OpenVINO"): what "auto" means.
# OpenVINO fp32 used ~25% less CPU time per SD1.5 step than PyTorch; bf16 (no AMX here) was slower
# than both. The default stays torch: the first use of each model/LoRA set costs minutes.
DEFAULT_CPU_BACKEND = "torch"
AUTO_CPU_BACKEND = "openvino"

TOKEN_MERGING_INFO = "0=disable, higher=faster; merges similar tokens in the UNet's self-attention (quality cost)"


def speed_options(args: argparse.Namespace | None = None) -> tuple[OptionInfo, ...]:
    """The option declarations; defaults follow the A1111 command-line flags in `args`."""

    def flag(name: str) -> bool:
        return bool(getattr(args, name, False)) if args is not None else False

    return (
        OptionInfo(
            "cross_attention_optimization",
            _attention_default(flag),
            "Cross attention optimization",
            OPTIMIZATIONS,
            "dropdown",
            ATTENTION_CHOICES,
            comment="Automatic = PyTorch SDPA (diffusers default); sliced = least memory, slowest",
        ),
        _ratio_option("token_merging_ratio", "Token merging ratio", "Token merging ratio", TOKEN_MERGING_INFO),
        _ratio_option(
            "token_merging_ratio_img2img",
            "Token merging ratio for img2img",
            None,
            "only applies if non-zero and overrides above",
        ),
        _ratio_option(
            "token_merging_ratio_hr",
            "Token merging ratio for high-res pass",
            "Token merging ratio hr",
            "only applies if non-zero and overrides above",
        ),
        OptionInfo(
            "token_merging_max_downsample",
            1,
            "Token merging: deepest UNet level merged (1 = highest resolution only, as A1111)",
            OPTIMIZATIONS,
            "radio",
            (1, 2, 4, 8),
            comment="SDXL has no attention at level 1: use 2 there for any effect",
        ),
        OptionInfo(
            "batch_cond_uncond",
            True,
            "Batch cond/uncond",
            OPTIMIZATIONS,
            comment="one UNet call for prompt and negative prompt: faster, a bit more memory",
        ),
        OptionInfo(
            "opt_channelslast",
            flag("opt_channelslast"),
            "Channels-last memory format for UNet and VAE",
            OPTIMIZATIONS,
            comment="faster on some GPUs in half precision; slower on CPU (--opt-channelslast)",
        ),
        OptionInfo(
            "vae_tiling",
            False,
            "Tiled VAE: encode/decode large images in tiles",
            OPTIMIZATIONS,
            comment="bounded memory for big images, slightly slower, faint seams possible",
        ),
        OptionInfo(
            "vae_tile_size",
            0,
            "Tiled VAE tile size (pixels, 0 = model default)",
            OPTIMIZATIONS,
            "slider",
            minimum=0,
            maximum=2048,
            step=64,
        ),
        OptionInfo("vae_slicing", False, "Sliced VAE: encode/decode a batch one image at a time", OPTIMIZATIONS),
        OptionInfo(
            "unet_torch_compile",
            False,
            "Compile the UNet with torch.compile (CUDA only)",
            OPTIMIZATIONS,
            comment="first image after a change of size, model or options is slow (compiling)",
        ),
        OptionInfo(
            "cpu_compute_backend",
            str(getattr(args, "cpu_backend", None) or DEFAULT_CPU_BACKEND),
            "Compute backend for the UNet and VAE on the CPU",
            OPTIMIZATIONS,
            "radio",
            CPU_BACKENDS,
            comment="openvino needs the openvino package; the first image per model, size and LoRA set "
            "converts and compiles (minutes for SD1.5), cached on disk; auto = " + AUTO_CPU_BACKEND + " where "
            "installed (--cpu-backend)",
        ),
    )


def _ratio_option(key: str, label: str, infotext: str | None, comment: str) -> OptionInfo:
    return OptionInfo(
        key,
        0.0,
        label,
        OPTIMIZATIONS,
        "slider",
        minimum=0.0,
        maximum=MAX_RATIO,
        step=0.1,
        infotext=infotext,
        comment=comment,
    )


def _attention_default(flag: Any) -> str:
    if flag("xformers") or flag("force_enable_xformers"):
        return "xformers"
    if flag("opt_sdp_no_mem_attention"):
        return "sdp-no-mem"
    if flag("opt_sdp_attention"):
        return "sdp"
    if flag("opt_split_attention") or flag("opt_split_attention_v1") or flag("opt_split_attention_invokeai"):
        return "sliced"
    if flag("opt_sub_quad_attention"):
        return "sliced"
    if flag("disable_opt_split_attention"):
        return "None"
    return "Automatic"


def token_merging_ratio(
    opts: Mapping[str, Any],
    *,
    kind: str,
    hires: bool = False,
    overridden: Mapping[str, Any] | None = None,
    job_ratio: float = 0.0,
    job_ratio_hr: float = 0.0,
) -> float:
    """A1111's get_token_merging_ratio: the ratio for a txt2img/img2img (or hires) pass.

    `job_ratio`/`job_ratio_hr` are p.token_merging_ratio(_hr), which scripts may set;
    `overridden` is the job's override_settings (img2img takes an overridden
    token_merging_ratio over token_merging_ratio_img2img).
    """
    base = float(opts.get("token_merging_ratio", 0.0) or 0.0)
    if kind == "img2img":
        if job_ratio:
            return float(job_ratio)
        if "token_merging_ratio" in (overridden or {}) and base:
            return base
        return float(opts.get("token_merging_ratio_img2img", 0.0) or 0.0) or base
    if hires:
        return float(job_ratio_hr or opts.get("token_merging_ratio_hr", 0.0) or job_ratio or base)
    return float(job_ratio or base)


@dataclass(frozen=True)
class SpeedSettings:
    """What `speed_patches` applies to one pass: all values already resolved for that pass."""

    token_merging_ratio: float = 0.0
    token_merging_max_downsample: int = 1
    attention: str = "Automatic"
    channels_last: bool = False
    vae_tiling: bool = False
    vae_tile_size: int = 0
    vae_slicing: bool = False
    torch_compile: bool = False
    upcast_attn: bool = False  # A1111's "Upcast cross attention layer to float32" (shared_options)
    cpu_backend: str = "torch"  # torch | openvino | openvino-bf16 ("auto" already resolved)

    @classmethod
    def from_options(
        cls,
        opts: Mapping[str, Any],
        *,
        kind: str = "txt2img",
        hires: bool = False,
        overridden: Mapping[str, Any] | None = None,
        job_ratio: float = 0.0,
        job_ratio_hr: float = 0.0,
    ) -> SpeedSettings:
        """Read the settings (a job's OptionsView); options not registered take their defaults."""
        if kind not in ("txt2img", "img2img"):
            raise ValueError(f"kind must be 'txt2img' or 'img2img', got {kind!r}")
        return cls(
            token_merging_ratio=token_merging_ratio(
                opts, kind=kind, hires=hires, overridden=overridden, job_ratio=job_ratio, job_ratio_hr=job_ratio_hr
            ),
            token_merging_max_downsample=int(opts.get("token_merging_max_downsample", 1) or 1),
            attention=str(opts.get("cross_attention_optimization", "Automatic")),
            channels_last=bool(opts.get("opt_channelslast", False)),
            vae_tiling=bool(opts.get("vae_tiling", False)),
            vae_tile_size=int(opts.get("vae_tile_size", 0) or 0),
            vae_slicing=bool(opts.get("vae_slicing", False)),
            torch_compile=bool(opts.get("unet_torch_compile", False)),
            upcast_attn=bool(opts.get("upcast_attn", False)),
            cpu_backend=resolve_cpu_backend(str(opts.get("cpu_compute_backend", DEFAULT_CPU_BACKEND))),
        )

    @classmethod
    def for_job(cls, p: Any, *, hires: bool = False) -> SpeedSettings:
        """Settings for a job `p` (Processing): its options view, kind and override_settings."""
        return cls.from_options(
            p.opts,
            kind=p.kind,
            hires=hires,
            overridden=p.override_settings,
            job_ratio=float(getattr(p, "token_merging_ratio", 0.0) or 0.0),
            job_ratio_hr=float(getattr(p, "token_merging_ratio_hr", 0.0) or 0.0),
        )


def resolve_cpu_backend(choice: str) -> str:
    """The backend a setting value means ("auto" -> the measured choice); unknown values are refused."""
    if choice not in CPU_BACKENDS:
        raise ValueError(f"cpu_compute_backend must be one of {', '.join(CPU_BACKENDS)}, got {choice!r}")
    if choice != "auto":
        return choice
    return AUTO_CPU_BACKEND if openvino_available() else "torch"
