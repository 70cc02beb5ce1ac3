"""Moving between pixels and latents: VAE encode/decode, cheap previews, latent upscaling."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from modules.models.ldm_views import first_stage_of

# Linear latent -> RGB factors ("Approx cheap" preview); needs no weights.
_CHEAP_SD = torch.tensor(
    [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
)
_CHEAP_SDXL = torch.tensor(
    [[0.3448, 0.4168, 0.4395], [-0.1953, -0.0290, 0.0250], [0.1074, 0.0886, -0.0163], [-0.3730, -0.2499, -0.2088]]
)

LATENT_UPSCALE_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}


def pil_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """RGB images -> [B, 3, H, W] in [-1, 1]."""
    arrays = [np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0 for img in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def tensor_to_pil(samples: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in [-1, 1] -> RGB images (rounded like A1111: 255 * x, then to uint8)."""
    x = torch.clamp((torch.nan_to_num(samples.float()) + 1.0) / 2.0, 0.0, 1.0)  # NaN -> mid grey, not garbage
    arr = (255.0 * x.permute(0, 2, 3, 1).cpu().numpy()).astype(np.uint8)
    return [Image.fromarray(a, "RGB") for a in arr]


def _vae_scale_shift(vae: Any) -> tuple[float, float]:
    cfg = vae.config
    return float(cfg.scaling_factor), float(getattr(cfg, "shift_factor", None) or 0.0)


@torch.inference_mode()
def encode(vae: Any, images: torch.Tensor) -> torch.Tensor:
    """Pixels [-1,1] -> scaled latents. Uses the distribution's mean: deterministic (see docs)."""
    param = next(vae.parameters())
    x = images.to(param.device, param.dtype)
    view = _first_stage(vae)  # the ldm-shaped view extensions wrap (first_stage_model.encoder)
    mean = view.encode(x).mean if view is not None else vae.encode(x).latent_dist.mean
    scale, shift = _vae_scale_shift(vae)
    return ((mean - shift) * scale).float()


@torch.inference_mode()
def decode(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> pixels [-1, 1], one image at a time to bound memory."""
    param = next(vae.parameters())
    scale, shift = _vae_scale_shift(vae)
    view = _first_stage(vae)  # the ldm-shaped view extensions wrap (first_stage_model.decoder, Tiled VAE)
    outs = []
    for latent in latents:
        z = latent.unsqueeze(0).to(param.device, param.dtype) / scale + shift
        pixels = view.decode(z) if view is not None else vae.decode(z).sample
        outs.append(pixels.float().cpu())
    return torch.cat(outs)


def _first_stage(vae: Any) -> Any:
    """ldm's AutoencoderKL view of a diffusers AutoencoderKL; None for other decoders."""
    return first_stage_of(vae) if type(vae).__name__ == "AutoencoderKL" else None


def cheap_rgb(latent: torch.Tensor, is_sdxl: bool) -> torch.Tensor:
    """Latent [4, h, w] -> approximate RGB [3, h, w] in about [-1, 1] (A1111's cheap_approximation)."""
    coefs = (_CHEAP_SDXL if is_sdxl else _CHEAP_SD).to(latent.device, latent.dtype)
    return torch.einsum("lxy,lr->rxy", latent, coefs)


def cheap_preview(latent: torch.Tensor, is_sdxl: bool) -> Image.Image:
    """'Approx cheap' live preview of one latent [4, h, w]."""
    rgb = cheap_rgb(latent, is_sdxl)
    arr = (torch.clamp((rgb + 1.0) / 2.0, 0.0, 1.0) * 255).byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def upscale_latent(latent: torch.Tensor, mode: str, height: int, width: int) -> torch.Tensor:
    """Resize latents with one of A1111's 'Latent ...' upscaler modes to the pixel size given."""
    if mode not in LATENT_UPSCALE_MODES:
        raise ValueError(f"unknown latent upscale mode {mode!r}; valid: {list(LATENT_UPSCALE_MODES)}")
    interp, antialias = LATENT_UPSCALE_MODES[mode]
    kwargs: dict[str, object] = {"antialias": antialias} if interp in ("bilinear", "bicubic") else {}
    return F.interpolate(latent, size=(height // 8, width // 8), mode=interp, **kwargs)  # type: ignore[arg-type]
