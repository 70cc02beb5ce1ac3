"""TAESD: a tiny latent decoder for fast live previews, used only when its weights are on disk.

TAESD (madebyollin) is a ~1M-parameter decoder that turns the model's scaled latents into RGB
in [0, 1] about 100x cheaper than the full VAE. Its weights are not shipped and never
downloaded: A1111 keeps them as models/VAE-approx/taesd_decoder.pth (SD1/SD2) and
taesdxl_decoder.pth (SDXL); a .safetensors file of the same name also works. Without the file
the caller falls back to the "Approx cheap" linear preview.

Architecture (from the published model; keys are indices of one nn.Sequential, so the original
files load as they are): tanh clamp, conv 4->64, ReLU, then three times (3 residual blocks,
2x nearest upsample, conv without bias), one more block, conv 64->3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn

SD_DECODER_NAMES = ("taesd_decoder.safetensors", "taesd_decoder.pth")
SDXL_DECODER_NAMES = ("taesdxl_decoder.safetensors", "taesdxl_decoder.pth")
WIDTH = 64


class _Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def _conv(n_in: int, n_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


class _Block(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(n_in, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(), _conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + self.skip(x))


def taesd_decoder(latent_channels: int = 4) -> nn.Sequential:
    """An untrained TAESD decoder (load weights with `load_taesd_decoder`)."""
    layers: list[nn.Module] = [_Clamp(), _conv(latent_channels, WIDTH), nn.ReLU()]
    for _ in range(3):
        layers += [_Block(WIDTH, WIDTH) for _ in range(3)]
        layers += [nn.Upsample(scale_factor=2), _conv(WIDTH, WIDTH, bias=False)]
    layers += [_Block(WIDTH, WIDTH), _conv(WIDTH, 3)]
    return nn.Sequential(*layers)


def find_taesd_decoder(vae_approx_dir: Path, is_sdxl: bool) -> Path | None:
    """The decoder file for the model family in models/VAE-approx, or None."""
    for name in SDXL_DECODER_NAMES if is_sdxl else SD_DECODER_NAMES:
        path = vae_approx_dir / name
        if path.is_file():
            return path
    return None


def load_taesd_decoder(path: Path) -> nn.Sequential:
    """Read a TAESD decoder file (.pth state dict, never unpickling objects; or .safetensors)."""
    if path.suffix == ".safetensors":
        import safetensors.torch

        state = safetensors.torch.load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path.name}: not a TAESD decoder state dict")
    state = {k.removeprefix("decoder.layers.").removeprefix("decoder."): v for k, v in state.items()}
    first = state.get("1.weight")
    if first is None or first.ndim != 4:
        raise ValueError(f"{path.name}: not a TAESD decoder (no '1.weight' conv)")
    decoder = taesd_decoder(int(first.shape[1]))
    result = decoder.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ValueError(f"{path.name}: not a TAESD decoder; missing {', '.join(result.missing_keys[:5])}")
    return decoder.eval().requires_grad_(False)


@torch.inference_mode()
def taesd_preview(decoder: nn.Module, latent: torch.Tensor) -> Image.Image:
    """Preview image of one model-space latent [C, h, w] (8x the latent size)."""
    param = next(decoder.parameters())
    rgb = decoder(latent.unsqueeze(0).to(param.device, param.dtype))[0].float().clamp(0, 1)
    arr = (rgb * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


@dataclass
class TaesdDecoders:
    """Loaded decoders by file (reloaded when the file changes); kept in the service's SpeedCache."""

    loaded: dict[Path, tuple[float, nn.Module]] = field(default_factory=dict)
    missing_logged: bool = False  # "no decoder file" is logged once, not at every preview

    def previewer(
        self, vae_approx_dir: Path, is_sdxl: bool, device: torch.device | str = "cpu"
    ) -> Callable[[torch.Tensor], Image.Image] | None:
        """A latent [C, h, w] -> preview function, or None when no decoder file is present."""
        decoder = self.decoder(vae_approx_dir, is_sdxl, device)
        if decoder is None:
            return None
        return lambda latent: taesd_preview(decoder, latent)

    def decoder(self, vae_approx_dir: Path, is_sdxl: bool, device: torch.device | str = "cpu") -> nn.Module | None:
        """The decoder (latents [B, C, h, w] -> pixels in [0, 1]), or None when no file is present."""
        path = find_taesd_decoder(vae_approx_dir, is_sdxl)
        if path is None:
            return None
        mtime = path.stat().st_mtime
        cached = self.loaded.get(path)
        if cached is None or cached[0] != mtime:
            cached = (mtime, load_taesd_decoder(path).to(device))
            self.loaded[path] = cached
        return cached[1]
