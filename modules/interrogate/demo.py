"""An interrogator for the built-in demo model that needs no other model: the demo's own text
encoder and UNet act as a classifier ("diffusion classifier"). The image's latent is noised at a
few fixed levels with fixed noise; for every caption of the demo grammar ("a red circle", ...)
the UNet predicts the clean latent under that caption, and the caption whose prediction comes
closest wins. Captions are scored in one batch per noise level, so the cost is a handful of UNet
passes on 16x16 latents (well under a second on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from modules.generation.conditioning import TextConditioner
from modules.generation.latents import encode, pil_to_tensor
from modules.generation.samplers.schedules import ModelSigmas
from modules.models.builtin_checkpoints import DEMO_COLOURS as COLOURS
from modules.models.builtin_checkpoints import DEMO_IMAGE_SIZE as IMAGE_SIZE
from modules.models.builtin_checkpoints import DEMO_SHAPES as SHAPES
from modules.models.manager import LoadedModel

NOISE_LEVELS = (0.6, 1.5, 3.0, 6.0)  # sigmas: low ones judge colour, high ones the shape
DRAWS = 2  # noise draws per level (fixed generator: the same image always gets the same answer)


@dataclass(frozen=True)
class DemoReading:
    colour: str
    shape: str
    scores: dict[str, float]  # caption -> mean squared error (lower is better)

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape}"

    def confidence(self) -> dict[str, float]:
        """Per colour and shape word: the captions' errors as a softmax, summed per word."""
        errors = torch.tensor(list(self.scores.values()))
        scale = max(float(errors.median() - errors.min()), 1e-6) / 3.0
        weights = torch.softmax(-(errors - errors.min()) / scale, dim=0)
        colours: dict[str, float] = {}
        shapes: dict[str, float] = {}
        for caption, weight in zip(self.scores, weights.tolist(), strict=True):
            _, colour, shape = caption.split(" ")
            colours[colour] = colours.get(colour, 0.0) + weight
            shapes[shape] = shapes.get(shape, 0.0) + weight
        # relative to the likeliest word of its kind: the reading's colour and shape score 1
        return {word: p / max(group.values()) for group in (colours, shapes) for word, p in group.items()}


def _captions() -> list[tuple[str, str, str]]:
    return [(colour, shape, f"a {colour} {shape}") for shape in SHAPES for colour in COLOURS]


def read_image(model: LoadedModel, image: Image.Image) -> DemoReading:
    """Which colour and shape the demo model sees in `image`."""
    picture = image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    captions = _captions()
    conditioner = TextConditioner(
        model.tokenizers,
        model.text_encoders,
        family_is_sdxl=False,
        is_refiner=False,
        family_is_sd2=False,
        clip_skip=1,
        emphasis="Original",
        comma_padding_backtrack=20,
    )
    with torch.no_grad():
        context = conditioner.encode([text for _, _, text in captions]).context
        latent = encode(model.vae, pil_to_tensor([picture]))
        sigmas = ModelSigmas.from_alphas_cumprod(model.alphas_cumprod)
        generator = torch.Generator().manual_seed(0)
        errors = torch.zeros(len(captions))
        param = next(model.unet.parameters())
        for sigma in NOISE_LEVELS:
            for _ in range(DRAWS):
                noise = torch.randn(latent.shape, generator=generator)
                noised = (latent.cpu() + noise * sigma).repeat(len(captions), 1, 1, 1)
                s = torch.full((len(captions),), sigma)
                model_in = noised / (sigma**2 + 1.0) ** 0.5
                t = sigmas.sigma_to_t(s)
                eps = (
                    model.unet(
                        model_in.to(param.device, param.dtype),
                        t.to(param.device),
                        encoder_hidden_states=context.to(param.device, param.dtype),
                    )
                    .sample.float()
                    .cpu()
                )
                errors += ((eps - noise) ** 2).mean(dim=(1, 2, 3))
    scores = {text: float(err) for (_, _, text), err in zip(captions, errors, strict=True)}
    best = int(torch.argmin(errors))
    colour, shape, _ = captions[best]
    return DemoReading(colour, shape, scores)
