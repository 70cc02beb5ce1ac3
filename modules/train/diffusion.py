"""The denoising loss a training step minimises, on a model whose own weights stay frozen.

As A1111 (LatentDiffusion.forward -> p_losses with the default weights): a timestep t uniform in
[0, 1000), Gaussian noise, x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise; the UNet predicts the noise
(eps models) or v = sqrt(a_t) noise - sqrt(1 - a_t) x0 (v models); loss = mean squared error,
optionally weighted per latent element (alpha-channel weights). SDXL UNets get the pooled text
embedding and size ids (h, w, 0, 0, h, w); inpainting UNets the txt2img conditioning (mask of ones
+ latent of a grey image), as A1111's training does.

`NoiseSource(fixed=True)` draws the same noise and timestep for an image at every step: the loss
is then a smooth function of the trained weights, which is what a convergence check needs (a
tiny random model's loss is otherwise dominated by the random draws). Training uses fixed=False.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from modules.generation.chunking import EmphasisMode, TokenizedPrompt
from modules.generation.conditioning import Conditioning, TextConditioner
from modules.models.fp8 import compute_dtype
from modules.models.manager import LoadedModel

Tensor = torch.Tensor
REFINER_AESTHETIC_SCORE = 6.0


@contextlib.contextmanager
def frozen_model(model: LoadedModel) -> Iterator[None]:
    """No gradients for the model's own weights while training; the flags are restored afterwards."""
    modules: list[Any] = [model.unet, model.vae, *model.text_encoders]
    saved = [(p, p.requires_grad) for module in modules for p in module.parameters()]
    for param, _ in saved:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param, flag in saved:
            param.requires_grad_(flag)


@dataclass(frozen=True)
class NoiseDraw:
    noise: Tensor  # [B, C, h, w]
    timesteps: Tensor  # [B] long


class NoiseSource:
    def __init__(self, generator: torch.Generator, num_timesteps: int, *, fixed: bool = False, seed: int = 0) -> None:
        self.generator = generator
        self.num_timesteps = num_timesteps
        self.fixed = fixed
        self.seed = seed

    def draw(self, indices: Sequence[int], shape: Sequence[int]) -> NoiseDraw:
        """Noise and timesteps for images `indices` (dataset positions) of latent shape [C, h, w]."""
        if not self.fixed:
            noise = torch.randn(len(indices), *shape, generator=self.generator)
            t = torch.randint(0, self.num_timesteps, (len(indices),), generator=self.generator)
            return NoiseDraw(noise, t)
        noises, steps = [], []
        for index in indices:
            g = torch.Generator().manual_seed(self.seed * 100_003 + int(index))
            steps.append(torch.randint(0, self.num_timesteps, (1,), generator=g))
            noises.append(torch.randn(*shape, generator=g))
        return NoiseDraw(torch.stack(noises), torch.cat(steps))


def _without_neutral_emphasis(conditioner: TextConditioner, tokenized: Sequence[TokenizedPrompt]) -> TextConditioner:
    """With every token weight 1, 'Original' emphasis multiplies by mean/mean = 1 exactly, except
    when the mean is exactly 0 (a LayerNorm without bias, as in tiny random models): then it gives
    NaN. 'No norm' is the same computation without that division."""
    if conditioner.emphasis is not EmphasisMode.ORIGINAL:
        return conditioner
    if any(m != 1.0 for prompt in tokenized for chunk in prompt.chunks for m in chunk.multipliers):
        return conditioner
    neutral = copy.copy(conditioner)
    neutral.emphasis = EmphasisMode.NO_NORM
    return neutral


def encode_texts(conditioner: TextConditioner, texts: Sequence[str], *, grad: bool) -> Conditioning:
    """Prompt conditioning for a batch, as generation encodes it; with `grad`, the graph back to the
    embedding vectors is kept (TextConditioner.encode runs under no_grad; the chunk encoding
    itself is differentiable)."""
    unique = list(dict.fromkeys(texts))
    repeats = torch.tensor([list(texts).count(text) for text in unique], dtype=torch.float32)
    tokenized = [conditioner.chunker.tokenize_prompt(text) for text in unique]
    encoder = _without_neutral_emphasis(conditioner, tokenized)
    with torch.set_grad_enabled(grad):
        encoded = encoder._encode_unique(tokenized, repeats)
    return encoded.rows([unique.index(text) for text in texts])


def inpaint_conditioning(model: LoadedModel, width: int, height: int) -> Tensor | None:
    """[1, 5, h, w] for inpainting UNets (mask of ones + latent of mid grey), None for others."""
    if not model.is_inpaint:
        return None
    vae = model.vae
    param = next(vae.parameters())
    grey = torch.zeros(1, 3, height, width, device=param.device, dtype=param.dtype)
    with torch.no_grad():
        mean = vae.encode(grey).latent_dist.mean.float()
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    latent = ((mean - shift) * float(vae.config.scaling_factor)).cpu()
    mask = torch.ones(1, 1, latent.shape[2], latent.shape[3])
    return torch.cat([mask, latent], dim=1)


def size_ids(model: LoadedModel, batch: int, width: int, height: int) -> Tensor | None:
    if not model.is_sdxl:
        return None
    if model.is_refiner:
        row = torch.tensor([height, width, 0, 0, REFINER_AESTHETIC_SCORE], dtype=torch.float32)
    else:
        row = torch.tensor([height, width, 0, 0, height, width], dtype=torch.float32)
    return row.repeat(batch, 1)


def training_loss(
    model: LoadedModel,
    latents: Tensor,
    cond: Conditioning,
    draw: NoiseDraw,
    *,
    size: tuple[int, int],
    weights: Tensor | None = None,
    image_cond: Tensor | None = None,
) -> Tensor:
    """Mean squared error of the UNet's prediction for one batch (a scalar with a graph)."""
    unet = model.unet
    device, dtype = next(unet.parameters()).device, compute_dtype(unet)  # fp8 storage computes in fp16/fp32
    t = draw.timesteps.to(device)
    alphas = model.alphas_cumprod.to(device, torch.float32)[t].view(-1, 1, 1, 1)
    x0 = latents.to(device, torch.float32)
    noise = draw.noise.to(device, torch.float32)
    noisy = alphas.sqrt() * x0 + (1.0 - alphas).sqrt() * noise
    if model.prediction_type == "v_prediction":
        target = alphas.sqrt() * noise - (1.0 - alphas).sqrt() * x0
    else:
        target = noise
    model_in = noisy
    if image_cond is not None:
        model_in = torch.cat([noisy, image_cond.to(device, torch.float32).expand(noisy.shape[0], -1, -1, -1)], dim=1)
    kwargs: dict[str, Any] = {}
    ids = size_ids(model, noisy.shape[0], *size)
    if ids is not None:
        if cond.pooled is None:
            raise ValueError("an SDXL UNet needs the pooled text embedding")
        kwargs["added_cond_kwargs"] = {"text_embeds": cond.pooled.to(device, dtype), "time_ids": ids.to(device, dtype)}
    prediction = unet(
        model_in.to(dtype), t, encoder_hidden_states=cond.context.to(device, dtype), **kwargs
    ).sample.float()
    error = (prediction - target) ** 2
    if weights is not None:
        error = error * weights.to(device, torch.float32)
    return error.mean()
