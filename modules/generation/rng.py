"""Seeds and noise with A1111 semantics (A1111/Forge modules/rng.py, processing.py).

- `get_fixed_seed`: -1, empty or non-numeric -> `random.randrange(4294967294)`.
- `plan_seeds`: per-image seeds (`seed + i` unless a variation strength is set) and subseeds.
- `ImageRNG`: one generator per image, seeded with that image's seed, so an image's noise does not
  depend on its batch. `first()` is the initial latent noise (variation seed via A1111's slerp,
  seed resize by centred paste/crop); `next()` is further per-image noise for the samplers. After
  the initial noise the generators are reseeded with seed + ENSD when ENSD is non-zero (A1111 does
  this for every sampler; `uses_ensd` in the sampler registry only decides the infotext).
- `BrownianTreeNoise`: one torchsde BrownianTree per image, seeded with the image's seed, for the
  SDE samplers (k-diffusion's BrownianTreeNoiseSampler as A1111 builds it).

Noise sources: "GPU" uses torch's generator on the compute device: CUDA's on a CUDA device; on any
other device (CPU-only machines, MPS) A1111 ends up with the CPU generator, so "GPU" and "CPU" give the
same numbers there. "CPU" always draws on the CPU then moves. "NV" is the Philox emulation of CUDA's
randn (`rng_philox`), identical on every device.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import torch

from modules.generation.rng_philox import PhiloxGenerator

SEED_RANGE = 4294967294  # A1111: random.randrange(4294967294)
_TREE_TOL = 1e-6  # torchsde BrownianTree default, which k-diffusion uses
_TREE_DIGITS = 6  # torchsde rounds the interval ends to -log10(tol) digits


class NoiseSource(StrEnum):
    GPU = "GPU"
    CPU = "CPU"
    NV = "NV"


def random_seed(rng: random.Random | None = None) -> int:
    """A fresh seed in [0, 4294967294), as A1111 draws one for -1."""
    return int((rng or random).randrange(SEED_RANGE))


def get_fixed_seed(seed: int | str | None, rng: random.Random | None = None) -> int:
    """A1111's get_fixed_seed: None, "", -1 and non-numeric strings become a random seed."""
    if seed is None or seed == "":
        value = -1
    elif isinstance(seed, str):
        try:
            value = int(seed.strip())
        except ValueError:
            value = -1
    else:
        value = int(seed)
    return random_seed(rng) if value == -1 else value


@dataclass(frozen=True)
class SeedPlan:
    seed: int
    subseed: int
    all_seeds: list[int]
    all_subseeds: list[int]


class FixedSeeds(NamedTuple):
    seed: int
    subseed: int


def fix_seed(seed: int | str | None, subseed: int | str | None, rng: random.Random | None = None) -> FixedSeeds:
    """Resolve -1/empty seed and variation seed to concrete values (A1111 fix_seed)."""
    return FixedSeeds(get_fixed_seed(seed, rng), get_fixed_seed(subseed, rng))


def plan_seeds(
    seed: int | str | None,
    subseed: int | str | None,
    subseed_strength: float,
    image_count: int,
    rng: random.Random | None = None,
) -> SeedPlan:
    """Per-image seeds of a job: seed + i when strength is 0, else every image keeps seed; subseeds + i."""
    if image_count < 0:
        raise ValueError(f"image_count must be >= 0, got {image_count}")
    fixed_seed, fixed_subseed = fix_seed(seed, subseed, rng)
    step = 1 if subseed_strength == 0 else 0
    return SeedPlan(
        seed=fixed_seed,
        subseed=fixed_subseed,
        all_seeds=[fixed_seed + i * step for i in range(image_count)],
        all_subseeds=[fixed_subseed + i for i in range(image_count)],
    )


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's slerp on per-image (C, H, W) noise: normalised along dim 1, and for nearly parallel
    inputs it returns low*val + high*(1-val) (weights reversed relative to slerp) - reproduced as-is."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    low_weight = (torch.sin((1.0 - val) * omega) / sin_omega).unsqueeze(1)
    high_weight = (torch.sin(val * omega) / sin_omega).unsqueeze(1)
    return low_weight * low + high_weight * high


class _TorchNoise:
    """A per-image torch generator on the device the source prescribes."""

    def __init__(self, seed: int, device: torch.device) -> None:
        self.generator = torch.Generator(device).manual_seed(int(seed))
        self.device = device

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)


_Generator = _TorchNoise | PhiloxGenerator


def generator_device(source: NoiseSource, device: torch.device) -> torch.device:
    """Where torch noise is drawn: the CUDA device for "GPU" on CUDA, else the CPU."""
    if source == NoiseSource.GPU and device.type == "cuda":
        return device
    return torch.device("cpu")


def create_generator(seed: int, source: NoiseSource | str, device: torch.device) -> _Generator:
    source = NoiseSource(source)
    if source == NoiseSource.NV:
        return PhiloxGenerator(seed)
    return _TorchNoise(seed, generator_device(source, device))


def randn_for_seed(
    seed: int, shape: tuple[int, ...], source: NoiseSource | str, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The first noise tensor a fresh generator seeded with `seed` gives (A1111 randn / randn_local)."""
    target = torch.device(device)
    return create_generator(seed, source, target).randn(shape).to(target)


def _paste_centred(noise: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
    """Paste `noise` centred into `canvas` (C, H, W), cropping it centred where it is larger."""
    dx = (canvas.shape[2] - noise.shape[2]) // 2
    dy = (canvas.shape[1] - noise.shape[1]) // 2
    w = noise.shape[2] if dx >= 0 else noise.shape[2] + 2 * dx
    h = noise.shape[1] if dy >= 0 else noise.shape[1] + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    sx, sy = max(-dx, 0), max(-dy, 0)
    result = canvas.clone()
    result[:, ty : ty + h, tx : tx + w] = noise[:, sy : sy + h, sx : sx + w]
    return result


class ImageRNG:
    """Per-image noise for one batch, A1111 semantics (see module docstring).

    shape is the latent shape of one image (C, H, W); seed_resize_from_h/w are image pixels
    (the latent is 1/8 of them) and apply only when both are > 0.
    """

    def __init__(
        self,
        shape: Sequence[int],
        seeds: Sequence[int],
        subseeds: Sequence[int] | None = None,
        subseed_strength: float = 0.0,
        seed_resize_from_h: int = 0,
        seed_resize_from_w: int = 0,
        source: NoiseSource | str = NoiseSource.GPU,
        device: torch.device | str = "cpu",
        eta_noise_seed_delta: int = 0,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3 or any(s <= 0 for s in self.shape):
            raise ValueError(f"ImageRNG shape must be (C, H, W) with positive sizes, got {tuple(shape)}")
        if not seeds:
            raise ValueError("ImageRNG needs at least one seed")
        try:
            self.source = NoiseSource(source)
        except ValueError:
            valid = ", ".join(s.value for s in NoiseSource)
            raise ValueError(f"unknown noise source {source!r}; valid: {valid}") from None
        self.seeds = [int(s) for s in seeds]
        self.subseeds = None if subseeds is None else [int(s) for s in subseeds]
        self.subseed_strength = float(subseed_strength)
        self.seed_resize_from_h = int(seed_resize_from_h)
        self.seed_resize_from_w = int(seed_resize_from_w)
        self.device = torch.device(device)
        self.eta_noise_seed_delta = int(eta_noise_seed_delta or 0)
        self.generators: list[_Generator] = [create_generator(s, self.source, self.device) for s in self.seeds]
        self.is_first = True

    def _fresh(self, seed: int, shape: tuple[int, ...]) -> torch.Tensor:
        return randn_for_seed(seed, shape, self.source, self.device)

    def _source_shape(self) -> tuple[int, ...]:
        if self.seed_resize_from_h <= 0 or self.seed_resize_from_w <= 0:
            return self.shape
        return (self.shape[0], self.seed_resize_from_h // 8, self.seed_resize_from_w // 8)

    def first(self) -> torch.Tensor:
        """Initial noise [B, C, H, W]; afterwards the generators are reseeded with seed + ENSD."""
        self.is_first = False
        noise_shape = self._source_shape()
        images = []
        for index, (seed, generator) in enumerate(zip(self.seeds, self.generators, strict=True)):
            subnoise = None
            if self.subseeds is not None and self.subseed_strength != 0:
                subseed = self.subseeds[index] if index < len(self.subseeds) else 0
                subnoise = self._fresh(subseed, noise_shape)
            if noise_shape != self.shape:
                noise = self._fresh(seed, noise_shape)
            else:
                noise = generator.randn(self.shape).to(self.device)
            if subnoise is not None:
                noise = slerp(self.subseed_strength, noise, subnoise)
            if noise_shape != self.shape:
                noise = _paste_centred(noise, generator.randn(self.shape).to(self.device))
            images.append(noise)
        if self.eta_noise_seed_delta:
            self.generators = [
                create_generator(s + self.eta_noise_seed_delta, self.source, self.device) for s in self.seeds
            ]
        return torch.stack(images).to(self.device)

    def next(self) -> torch.Tensor:
        """The first call returns `first()`; later calls the next draw of each image's generator."""
        if self.is_first:
            return self.first()
        return torch.stack([g.randn(self.shape).to(self.device) for g in self.generators])


class BrownianTreeNoise:
    """Unit-variance Brownian increments between two sigmas, one torchsde tree per image seed.

    Calling it with (sigma, sigma_next) gives W(sigma_next) - W(sigma) divided by sqrt(|delta|):
    the same numbers for an image whatever batch it is in.
    """

    def __init__(self, x: torch.Tensor, sigma_min: float, sigma_max: float, seeds: Sequence[int]) -> None:
        import torchsde  # heavy import, only when an SDE sampler runs

        if len(seeds) != x.shape[0]:
            raise ValueError(f"BrownianTreeNoise needs one seed per image: {len(seeds)} seeds for batch {x.shape[0]}")
        if not sigma_min < sigma_max:
            raise ValueError(f"BrownianTreeNoise needs sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        t0 = torch.as_tensor(sigma_min)
        t1 = torch.as_tensor(sigma_max)
        w0 = torch.zeros_like(x[0])
        self.trees = [torchsde.BrownianTree(t0, w0, t1, entropy=int(s), tol=_TREE_TOL) for s in seeds]
        # torchsde clamps queries to its rounded interval (with a warning): clamp first, same numbers
        self._start = round(float(t0), _TREE_DIGITS)
        self._end = round(float(t1), _TREE_DIGITS)

    def __call__(self, sigma: torch.Tensor | float, sigma_next: torch.Tensor | float) -> torch.Tensor:
        a = torch.as_tensor(sigma)
        b = torch.as_tensor(sigma_next)
        low, high, sign = (a, b, 1.0) if a < b else (b, a, -1.0)
        low_t = min(max(float(low), self._start), self._end)
        high_t = min(max(float(high), self._start), self._end)
        increments = torch.stack([tree(low_t, high_t) for tree in self.trees])
        # k-diffusion orders the pair and restores the direction: W(b) - W(a)
        return increments * sign / (b - a).abs().sqrt()
