"""Train the built-in demo model from scratch on procedural shapes (CPU, fixed seeds).

    python -m tools.demo.train --out cache/demo-train-v3 [--threads 2] [--vae-steps N] [--unet-steps N]

Stages, each resumable (a finished stage's file is reused when the command is run again):
1. VAE (`vae.pt`): AutoencoderKL taught a designed latent code (per 8x8 cell: the cell's colour,
   unmixed, and the shape's coverage, see `designed_latents`) on 32 px windows: the encoder
   regresses it, the decoder reconstructs the image from it (plus noise); shape pixels weighted up.
   Afterwards its latent space is re-centred and re-scaled per channel (folded into quant_conv /
   post_quant_conv, exact) so that latents times SD1's fixed scaling factor 0.18215 have unit
   variance, as the diffusion schedule expects.
2. Latents (`latents.pt`): the designed code of the training scenes, normalised likewise.
3. Decoder refinement (`decoder.pt`): the decoder alone, on that fixed code, outline weighted up
   (`DECODER_PASSES`: windows, a polish, whole images).
4. UNet + text encoder (`unet-<step>.pt` every --save-every steps, resumable): eps prediction on the
   SD1 scaled-linear 1000-step schedule, min-SNR-5 loss weighting, the coverage channel weighted up,
   captions sometimes empty (classifier-free guidance), a bare colour word (negative prompts) or
   without the colour; an EMA copy of the weights is what gets exported.
   The UNet learns only the designed code, which does not depend on the VAE's weights: with two or
   more --threads, stages 1-3 run in a child process on one thread beside stage 4, and stage 4
   takes every thread once the child is done.
5. Export: `demo.safetensors` (fp16, A1111 single-file layout) in --out; also written for each
   saved step once the VAE is ready, as `demo-<step>.safetensors`, so a run can be judged as it goes.
Progress goes to stdout and `<out>/train.log` (one JSON object per line).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from modules.models.loader import save_single_file
from modules.models.tokenizer import load_clip_tokenizer
from tools.demo.dataset import Scene, caption, make_samples
from tools.demo.model import FAMILY, IMAGE_SIZE, DemoArchitecture, DemoParts, build_parts, demo_configs

VAE_SCALING = 0.18215  # SD1's fixed factor (the loader keeps the family's value)
EMPTY_CAPTION_RATE = 0.1
BARE_COLOUR_RATE = 0.05
CAPTION_COLOUR_RATE = 0.85
COVERAGE_CHANNEL = 3  # of the designed code
COVERAGE_LOSS_WEIGHT = 3.0
MIN_SNR_GAMMA = 5.0
DECODER_NOISE = 0.05
SHAPE_WEIGHT = 4.0
VAE_CROP_CELLS = 4  # 32 px training windows for the VAE (a quarter of the pixels)
EDGE_WEIGHT = 4.0  # decoder refinement: the shape's outline, where squares and triangles lose their corners
LATENT_NOISE = 0.35  # decoder refinement: noise on the normalised code, about DECODER_NOISE of the raw code


@dataclass(frozen=True)
class TrainSettings:
    out: Path
    seed: int = 0
    threads: int = 2
    images: int = 6000
    vae_steps: int = 2000
    vae_batch: int = 16
    vae_lr: float = 2e-3
    unet_steps: int = 3600
    unet_batch: int = 32
    unet_lr: float = 8e-4
    warmup: int = 100
    ema_decay: float = 0.998
    save_every: int = 300
    decoder_steps: int = 2400
    decoder_lr: float = 1e-3
    stop_after_decoder: bool = False
    cache: Path = Path("cache")


class Log:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = time.monotonic()

    def __call__(self, **fields: Any) -> None:
        fields["elapsed_s"] = round(time.monotonic() - self.start, 1)
        line = json.dumps(fields)
        print(line, flush=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def images_to_tensor(images: Sequence[Any]) -> torch.Tensor:
    arrays = np.stack([np.asarray(img, dtype=np.float32) / 127.5 - 1.0 for img in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()


# --- stage 1: VAE ----------------------------------------------------------------------------------


def designed_latents(pixels: torch.Tensor) -> torch.Tensor:
    """The latent code the VAE is taught: per 8x8 cell, the cell's dominant colour and the shape's coverage.

    Channels 0-2: the shape's colour (one per image: the mean of its strongly saturated pixels)
    where the shape covers a quarter of the cell or more, the cell's background colour (mean of
    its unsaturated pixels) where it covers nothing, blended in between; channel 3: the fraction of
    the cell covered by saturated (shape) pixels, mapped to [-1, 1]. An earlier code held the
    plain cell mean, which mixes shape and background colour: the decoder then had to divide the
    mix back out and returned washed-out, wrong hues (pink as red, cyan as blue). With a fixed
    target the encoder is a quick regression and the decoder learns from informative inputs from
    the first step; learning both ends jointly from a random start took far more steps than the
    CPU budget allows.
    """
    chroma = pixels.max(dim=1, keepdim=True).values - pixels.min(dim=1, keepdim=True).values
    saturated = (chroma > 0.3).float()
    coverage = F.avg_pool2d(saturated, 8)
    strong = (chroma > 0.5).float()
    shape_colour = (pixels * strong).sum(dim=(2, 3), keepdim=True) / strong.sum(dim=(2, 3), keepdim=True).clamp(min=1.0)
    plain = 1.0 - saturated
    background = F.avg_pool2d(pixels * plain, 8) / F.avg_pool2d(plain, 8).clamp(min=1e-3)
    blend = (coverage * 4).clamp(max=1.0)
    colour = blend * shape_colour + (1 - blend) * background
    return torch.cat([colour, coverage * 2 - 1], dim=1)


def _vae_loss(vae: Any, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # the code is computed on the whole image (the shape's colour is a whole-image figure), then a
    # window of cells is cut out: both halves are convolutional and the code is local, so windows
    # teach them as well as whole images at a fraction of the cost
    target_full = designed_latents(batch)
    cells = VAE_CROP_CELLS
    limit = batch.shape[-1] // 8 - cells
    if limit > 0:
        y, x = (int(v) for v in torch.randint(0, limit + 1, (2,), generator=generator))
        batch = batch[:, :, y * 8 : (y + cells) * 8, x * 8 : (x + cells) * 8]
        target = target_full[:, :, y : y + cells, x : x + cells]
    else:
        target = target_full
    posterior = vae.encode(batch).latent_dist
    encoder_loss = F.mse_loss(posterior.mean, target) + 0.01 * F.mse_loss(
        posterior.logvar, torch.full_like(target, -8.0)
    )
    # the decoder sees the designed code plus noise: the UNet's latents are never exact
    noisy = target + DECODER_NOISE * torch.randn(target.shape, generator=generator)
    recon = vae.decode(noisy).sample
    # the shape is a small part of each image: weight its (saturated) pixels up so it is learnt early
    chroma = batch.max(dim=1, keepdim=True).values - batch.min(dim=1, keepdim=True).values
    weight = 1.0 + SHAPE_WEIGHT * (chroma > 0.3).float()
    error = (recon - batch).abs() + (recon - batch) ** 2
    return (weight * error).mean() / weight.mean() + encoder_loss


def train_vae(vae: Any, pixels: torch.Tensor, settings: TrainSettings, log: Log) -> None:
    """Random 32 px windows of the images (see `_vae_loss`); cosine learning rate after a short warm-up."""
    generator = torch.Generator().manual_seed(settings.seed + 1)
    optimiser = torch.optim.AdamW(vae.parameters(), lr=settings.vae_lr, weight_decay=0.0)
    vae.train()
    for step in range(settings.vae_steps):
        batch = pixels[torch.randint(0, len(pixels), (settings.vae_batch,), generator=generator)]
        warm = min(1.0, (step + 1) / 20)
        for group in optimiser.param_groups:
            group["lr"] = settings.vae_lr * warm * 0.5 * (1 + math.cos(math.pi * step / settings.vae_steps))
        loss = _vae_loss(vae, batch, generator)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimiser.step()
        if step % 25 == 0 or step == settings.vae_steps - 1:
            log(stage="vae", step=step, loss=round(loss.item(), 5))
    vae.eval()


def _pixel_weights(batch: torch.Tensor) -> torch.Tensor:
    """Shape pixels and, more, the shape's outline (where corners are decided) weigh more."""
    chroma = batch.max(dim=1, keepdim=True).values - batch.min(dim=1, keepdim=True).values
    mask = (chroma > 0.3).float()
    outline = F.max_pool2d(mask, 3, 1, 1) + F.max_pool2d(-mask, 3, 1, 1)  # dilation minus erosion
    return 1.0 + SHAPE_WEIGHT * mask + EDGE_WEIGHT * outline


@dataclass(frozen=True)
class DecoderPass:
    name: str
    steps: int | None  # None: --decoder-steps
    lr_factor: float  # of --decoder-lr
    noise_factor: float  # of LATENT_NOISE
    whole_images: bool  # else 32 px windows with the full batch
    seed_offset: int


# 1. the main pass on windows; 2. a short polish, less noise and a lower rate: sharper corners;
# 3. whole images, a quarter of the batch: group norm takes its statistics over the whole picture,
#    and a decoder that had seen only windows drew the black of whole images as dark grey (+25 of 255)
DECODER_PASSES = (
    DecoderPass("decoder", None, 1.0, 1.0, False, 2),
    DecoderPass("decoder-polish", 600, 0.3, 0.3, False, 3),
    DecoderPass("decoder-whole", 300, 0.3, 0.3, True, 3),
)


def refine_decoder(
    vae: Any,
    pixels: torch.Tensor,
    latents: torch.Tensor,
    settings: TrainSettings,
    log: Log,
    stage: DecoderPass = DECODER_PASSES[0],
) -> None:
    """More steps for the decoder alone on the fixed (normalised) code, the outline weighted up.

    After the joint stage the decoder still rounds squares and blunts triangles. The code does not
    change here, so this stage is independent of the UNet stage (which learns only the code) and
    runs beside it on the second core.
    """
    steps = settings.decoder_steps if stage.steps is None else stage.steps
    lr, noise = settings.decoder_lr * stage.lr_factor, LATENT_NOISE * stage.noise_factor
    cells, batch_size = VAE_CROP_CELLS, settings.vae_batch
    if stage.whole_images:
        cells, batch_size = pixels.shape[-1] // 8, max(1, settings.vae_batch // 4)
    generator = torch.Generator().manual_seed(settings.seed + stage.seed_offset)
    params = [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    vae.train()
    limit = pixels.shape[-1] // 8 - cells
    for step in range(steps):
        index = torch.randint(0, len(pixels), (batch_size,), generator=generator)
        y, x = (int(v) for v in torch.randint(0, limit + 1, (2,), generator=generator))
        batch = pixels[index][:, :, y * 8 : (y + cells) * 8, x * 8 : (x + cells) * 8]
        code = latents[index][:, :, y : y + cells, x : x + cells]
        recon = vae.decode(code + noise * torch.randn(code.shape, generator=generator)).sample
        weight = _pixel_weights(batch)
        error = (recon - batch).abs() + (recon - batch) ** 2
        loss = (weight * error).mean() / weight.mean()
        warm = min(1.0, (step + 1) / 20)
        for group in optimiser.param_groups:
            group["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * step / steps))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        if step % 25 == 0 or step == steps - 1:
            log(stage=stage.name, step=step, loss=round(loss.item(), 5))
    vae.eval()


@torch.no_grad()
def encode_means(vae: Any, pixels: torch.Tensor, batch: int = 64) -> torch.Tensor:
    return torch.cat([vae.encode(pixels[i : i + batch]).latent_dist.mean for i in range(0, len(pixels), batch)])


@torch.no_grad()
def normalise_latent_space(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Re-centre/re-scale each latent channel inside the VAE so latents * 0.18215 are ~N(0, 1).

    Encoder: mean' = k (mean - m) and logvar' = logvar + 2 ln k (rows of quant_conv). Decoder:
    post_quant_conv(z) = W z + b with z = z'/k + m, so W' = W / k, b' = b + W m. Returns the
    transformed latents.
    """
    channels = latents.shape[1]
    m = latents.mean(dim=(0, 2, 3))
    k = 1.0 / (VAE_SCALING * latents.std(dim=(0, 2, 3)))
    qw, qb = vae.quant_conv.weight, vae.quant_conv.bias
    qw[:channels] *= k.view(-1, 1, 1, 1)
    qb[:channels] = k * (qb[:channels] - m)
    qb[channels:] += 2 * torch.log(k)
    pw, pb = vae.post_quant_conv.weight, vae.post_quant_conv.bias
    pb += (pw[:, :, 0, 0] * m.view(1, -1)).sum(dim=1)
    pw /= k.view(1, -1, 1, 1)
    return (latents - m.view(1, -1, 1, 1)) * k.view(1, -1, 1, 1)


# --- stage 3: UNet + text encoder -------------------------------------------------------------------


def _token_ids(tokenizer: Any, captions: Sequence[str]) -> torch.Tensor:
    # the engine pads every chunk to 77 tokens with the end token, as SD1 was trained
    out = tokenizer(list(captions), padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    return out.input_ids


def training_caption(scene: Scene, rng: random.Random) -> str:
    """A caption as the UNet sees it: sometimes empty (classifier-free guidance), sometimes the bare
    colour word (what a negative prompt such as "red" names), sometimes without the colour (prompts
    naming only the shape), else the full grammar with optional parts left out."""
    draw = rng.random()
    if draw < EMPTY_CAPTION_RATE:
        return ""
    if draw < EMPTY_CAPTION_RATE + BARE_COLOUR_RATE:
        return scene.colour
    return caption(scene, rng, colour_rate=CAPTION_COLOUR_RATE)


def _channel_weights(channels: int) -> torch.Tensor:
    """Loss weight per latent channel, mean 1: the coverage channel (the shape's outline) counts more.

    Colour and background fill most of each latent, so with equal weights the shape's few edge cells
    are a small part of the loss and the prompt's shape word was learnt far later than its colour.
    """
    weights = torch.ones(channels)
    weights[COVERAGE_CHANNEL] = COVERAGE_LOSS_WEIGHT
    return weights * channels / weights.sum()


def _snr_weights(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    snr = alphas_cumprod[timesteps] / (1 - alphas_cumprod[timesteps])
    return torch.clamp(snr, max=MIN_SNR_GAMMA) / snr


@dataclass
class UNetState:
    step: int
    parts: DemoParts
    ema_unet: Any
    ema_text: Any
    optimiser: torch.optim.Optimizer


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.lerp_(p, 1 - decay)


def unet_step(
    state: UNetState, latents: torch.Tensor, scenes: Sequence[Scene], tokenizer: Any, settings: TrainSettings
) -> float:
    rng = random.Random(settings.seed * 1_000_003 + state.step)
    generator = torch.Generator().manual_seed(settings.seed * 7919 + state.step)
    index = torch.randint(0, len(latents), (settings.unet_batch,), generator=generator)
    captions = [training_caption(scenes[i], rng) for i in index.tolist()]
    x0 = latents[index] * VAE_SCALING
    noise = torch.randn(x0.shape, generator=generator)
    timesteps = torch.randint(0, 1000, (len(x0),), generator=generator)
    scheduler, unet, text = state.parts.scheduler, state.parts.unet, state.parts.text_encoder
    noisy = scheduler.add_noise(x0, noise, timesteps)
    context = text(_token_ids(tokenizer, captions)).last_hidden_state
    prediction = unet(noisy, timesteps, encoder_hidden_states=context).sample
    per_sample = (((prediction - noise) ** 2).mean(dim=(2, 3)) * _channel_weights(x0.shape[1])).mean(dim=1)
    loss = (per_sample * _snr_weights(scheduler.alphas_cumprod, timesteps)).mean()
    lr = settings.unet_lr * min(1.0, (state.step + 1) / settings.warmup)
    lr *= 0.5 * (1 + math.cos(math.pi * state.step / settings.unet_steps)) * 0.9 + 0.1
    for group in state.optimiser.param_groups:
        group["lr"] = lr
    state.optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([*unet.parameters(), *text.parameters()], 1.0)
    state.optimiser.step()
    decay = min(settings.ema_decay, (1 + state.step) / (10 + state.step))
    _ema_update(state.ema_unet, unet, decay)
    _ema_update(state.ema_text, text, decay)
    state.step += 1
    return loss.item()


def _save_unet_state(state: UNetState, path: Path) -> None:
    torch.save(
        {
            "step": state.step,
            "unet": state.parts.unet.state_dict(),
            "text": state.parts.text_encoder.state_dict(),
            "ema_unet": state.ema_unet.state_dict(),
            "ema_text": state.ema_text.state_dict(),
            "optimiser": state.optimiser.state_dict(),
        },
        path,
    )


def _latest_unet_state(out: Path) -> Path | None:
    found = sorted(out.glob("unet-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    return found[-1] if found else None


def export(parts: DemoParts, ema_unet: Any, ema_text: Any, path: Path, metadata: dict[str, str]) -> Path:
    """The EMA weights with the trained VAE, as an fp16 single-file SD1 checkpoint."""
    exported = DemoParts(parts.configs, ema_unet, parts.vae, ema_text, parts.scheduler)
    return save_single_file(exported, FAMILY, path, dtype=torch.float16, metadata=metadata)


# --- driver -----------------------------------------------------------------------------------------


def _vae_stage(parts: DemoParts, pixels: torch.Tensor, settings: TrainSettings, log: Log) -> torch.Tensor:
    vae_file, latent_file = settings.out / "vae.pt", settings.out / "latents.pt"
    if vae_file.is_file() and latent_file.is_file():
        parts.vae.load_state_dict(torch.load(vae_file))
        log(stage="vae", note="reused vae.pt and latents.pt")
        return torch.load(latent_file)
    train_vae(parts.vae, pixels, settings, log)
    # the UNet learns the exact designed code (what the decoder was taught to draw), not the
    # encoder's approximation of it; the encoder only serves img2img
    code = designed_code(pixels)
    with torch.no_grad():
        encoder_error = F.mse_loss(encode_means(parts.vae, pixels[:64]), code[:64]).item()
    latents = normalise_latent_space(parts.vae, code)
    with torch.no_grad():
        recon = parts.vae.decode(encode_means(parts.vae, pixels[:64])).sample
    log(
        stage="vae",
        recon_l1=round(F.l1_loss(recon, pixels[:64]).item(), 5),
        encoder_mse=round(encoder_error, 5),
        latent_std=latents.std().item(),
    )
    torch.save(parts.vae.state_dict(), vae_file)
    torch.save(latents, latent_file)
    return latents


def designed_code(pixels: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    return torch.cat([designed_latents(pixels[i : i + chunk]) for i in range(0, len(pixels), chunk)])


def normalised_code(code: torch.Tensor) -> torch.Tensor:
    """The code in the normalised latent space, the same map `normalise_latent_space` folds into the VAE."""
    m = code.mean(dim=(0, 2, 3)).view(1, -1, 1, 1)
    k = 1.0 / (VAE_SCALING * code.std(dim=(0, 2, 3)).view(1, -1, 1, 1))
    return (code - m) * k


def _decoder_stage(
    parts: DemoParts, pixels: torch.Tensor, latents: torch.Tensor, settings: TrainSettings, log: Log
) -> None:
    decoder_file = settings.out / "decoder.pt"
    if decoder_file.is_file():
        parts.vae.load_state_dict(torch.load(decoder_file))
        log(stage="decoder", note="reused decoder.pt")
        return
    if settings.decoder_steps <= 0:
        return
    for stage in DECODER_PASSES:
        refine_decoder(parts.vae, pixels, latents, settings, log, stage)
    torch.save(parts.vae.state_dict(), decoder_file)


def _start_vae_beside(settings: TrainSettings, argv: Sequence[str]) -> subprocess.Popen[bytes] | None:
    """Stages 1-3 in a child process on one thread while this one trains the UNet on the others.

    The UNet learns only the designed code, which does not depend on the VAE's weights, so the two
    need not wait for each other; the VAE is needed again only to export.
    """
    if (settings.out / "decoder.pt").is_file() or settings.threads < 2 or settings.decoder_steps <= 0:
        return None
    command = [sys.executable, "-m", "tools.demo.train", *argv, "--stop-after-decoder", "--threads", "1"]
    log_file = (settings.out / "stdout-vae.log").open("ab")
    return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)


def _vae_ready(parts: DemoParts, settings: TrainSettings, child: subprocess.Popen[bytes] | None, wait: bool) -> bool:
    """Load the finished VAE (the child's decoder.pt) into `parts`; False while it is still training."""
    if child is not None and wait and child.wait() != 0:
        raise RuntimeError(f"the VAE stage failed (exit {child.returncode}); see {settings.out / 'stdout-vae.log'}")
    if child is None:
        return True  # trained in this process, before the UNet
    decoder_file = settings.out / "decoder.pt"
    if child.poll() is None or not decoder_file.is_file():
        return False
    parts.vae.load_state_dict(torch.load(decoder_file))
    return True


def run(settings: TrainSettings, argv: Sequence[str] = ()) -> Path:
    settings.out.mkdir(parents=True, exist_ok=True)
    log = Log(settings.out / "train.log")
    log(stage="start", settings={k: str(v) for k, v in asdict(settings).items()})
    child = None if settings.stop_after_decoder else _start_vae_beside(settings, argv)
    torch.set_num_threads(max(1, settings.threads - (child is not None)))
    torch.manual_seed(settings.seed)
    parts = build_parts(demo_configs(DemoArchitecture()), settings.seed)
    samples = make_samples(settings.images, IMAGE_SIZE, settings.seed)
    scenes = [s.scene for s in samples]
    pixels = images_to_tensor([s.image for s in samples])
    del samples
    if child is None:
        latents = _vae_stage(parts, pixels, settings, log)
        _decoder_stage(parts, pixels, latents, settings, log)
        if settings.stop_after_decoder:
            return settings.out / "decoder.pt"
    else:
        latents = normalised_code(designed_code(pixels))
        log(stage="vae", note=f"VAE and decoder stages run beside, pid {child.pid}")
    del pixels
    parts.vae.requires_grad_(False)
    state = _train_unet(parts, latents, scenes, settings, log, lambda wait: _vae_ready(parts, settings, child, wait))
    _vae_ready(parts, settings, child, wait=True)
    final = export(
        parts, state.ema_unet, state.ema_text, settings.out / "demo.safetensors", _meta(settings, state.step)
    )
    log(stage="done", file=str(final), bytes=final.stat().st_size)
    return final


def _train_unet(
    parts: DemoParts,
    latents: torch.Tensor,
    scenes: Sequence[Scene],
    settings: TrainSettings,
    log: Log,
    vae_ready: Callable[[bool], bool],
) -> UNetState:
    tokenizer = load_clip_tokenizer(settings.cache.resolve() / "tokenizers")
    params = [*parts.unet.parameters(), *parts.text_encoder.parameters()]
    state = UNetState(
        0,
        parts,
        copy.deepcopy(parts.unet).requires_grad_(False),
        copy.deepcopy(parts.text_encoder).requires_grad_(False),
        torch.optim.AdamW(params, lr=settings.unet_lr, weight_decay=0.01),
    )
    _resume(state, settings.out, log)
    parts.unet.train()
    parts.text_encoder.train()
    losses: list[float] = []
    while state.step < settings.unet_steps:
        losses.append(unet_step(state, latents, scenes, tokenizer, settings))
        if state.step % 25 == 0:
            log(stage="unet", step=state.step, loss=round(sum(losses) / len(losses), 5))
            losses = []
        if state.step % settings.save_every == 0 or state.step == settings.unet_steps:
            previous = _latest_unet_state(settings.out)
            _save_unet_state(state, settings.out / f"unet-{state.step}.pt")
            if previous is not None and previous.name != f"unet-{state.step}.pt":
                previous.unlink()  # only the newest training state is kept (~120 MB each)
            if vae_ready(False):  # a checkpoint to judge while the run goes on
                torch.set_num_threads(settings.threads)  # the VAE's core is free again
                path = settings.out / f"demo-{state.step}.safetensors"
                export(parts, state.ema_unet, state.ema_text, path, _meta(settings, state.step))
    return state


def _resume(state: UNetState, out: Path, log: Log) -> None:
    latest = _latest_unet_state(out)
    if latest is None:
        return
    saved = torch.load(latest)
    state.step = int(saved["step"])
    state.parts.unet.load_state_dict(saved["unet"])
    state.parts.text_encoder.load_state_dict(saved["text"])
    state.ema_unet.load_state_dict(saved["ema_unet"])
    state.ema_text.load_state_dict(saved["ema_text"])
    state.optimiser.load_state_dict(saved["optimiser"])
    log(stage="unet", note=f"resumed from {latest.name}")


def _meta(settings: TrainSettings, step: int) -> dict[str, str]:
    return {
        "modelspec.title": "demo-shapes",
        "modelspec.description": "Built-in demo model: coloured shapes (trained by python -m tools.demo.train)",
        "demo.seed": str(settings.seed),
        "demo.unet_steps": str(step),
        "demo.images": str(settings.images),
    }


def parse_args(argv: Sequence[str] | None) -> TrainSettings:
    defaults = TrainSettings(out=Path("."))
    parser = argparse.ArgumentParser(prog="python -m tools.demo.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="work folder: logs, stage files, checkpoints")
    for name in ("seed", "threads", "images", "vae_steps", "vae_batch", "unet_steps", "unet_batch", "save_every"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    parser.add_argument("--decoder-steps", type=int, default=defaults.decoder_steps)
    parser.add_argument(
        "--stop-after-decoder",
        action="store_true",
        help="stop after the decoder stage (to run it beside the UNet stage on a second core)",
    )
    for name in ("vae_lr", "unet_lr", "ema_decay", "decoder_lr"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    parser.add_argument("--cache", type=Path, default=defaults.cache, help="cache root (tokenizer files)")
    args = parser.parse_args(argv)
    values = vars(args)
    if values["unet_steps"] < 1 or values["images"] < 1:
        parser.error("--unet-steps and --images must be positive")
    return TrainSettings(**values)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    run(parse_args(arguments), arguments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
