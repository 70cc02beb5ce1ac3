"""A1111's `shared.sd_model` as an ldm/sgm model object over a loaded diffusers model.

`sd_model_for(loaded, settings)` gives ldm's LatentDiffusion (sgm's DiffusionEngine for SDXL)
whose `model.diffusion_model` and `first_stage_model` are the views generation runs through
(modules.models.ldm_views), and whose `cond_stage_model` / `conditioner` encode prompts with our
TextConditioner (A1111's FrozenCLIPEmbedderWithCustomWords interface). One object per model: it is
kept on the model's UNet, so what an extension sets on it stays for the next access.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ldm.models.diffusion.ddpm import LatentDiffusion
from modules.generation.conditioning import TextConditioner
from modules.models.families import ModelFamily
from modules.models.ldm_views import attach_sd_model, attached_sd_model, diffusion_model_of, first_stage_of
from sgm.models.diffusion import DiffusionEngine

Settings = Callable[[], Mapping[str, Any]]  # the current settings (clip skip, emphasis, ...)


class Hijack:
    """`cond_stage_model.hijack` (A1111's model_hijack as text encoders see it)."""

    def __init__(self) -> None:
        self.fixes: Any = None
        self.comments: list[str] = []
        self.extra_generation_params: dict[str, Any] = {}


class ClipEmbedder(nn.Module):
    """ldm's FrozenCLIPEmbedder (`wrapped`): the text encoder and its tokenizer."""

    def __init__(self, encoder: nn.Module, tokenizer: Any) -> None:
        super().__init__()
        self.transformer = encoder
        self.tokenizer = tokenizer
        self.max_length = 77


class FrozenCLIPEmbedderWithCustomWords(nn.Module):
    """A1111's text encoder interface: called with a list of prompts it returns the conditioning
    tensor [B, 77*k, D] (chunks, emphasis, clip skip as in generation)."""

    def __init__(self, conditioner: Callable[[], TextConditioner], slot: int, wrapped: ClipEmbedder) -> None:
        super().__init__()
        self.wrapped = wrapped
        self.hijack = Hijack()
        self.chunk_length = 75
        self._conditioner = conditioner
        self._slot = slot

    @property
    def tokenizer(self) -> Any:
        return self.wrapped.tokenizer

    @property
    def transformer(self) -> nn.Module:
        return self.wrapped.transformer

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids without start/end tokens (A1111's tokenize)."""
        return list(self.tokenizer(list(texts), truncation=False, add_special_tokens=False)["input_ids"])

    def tokenize_line(self, line: str) -> tuple[list[Any], int]:
        """A1111's tokenize_line: the prompt's 77-token chunks (`tokens`, `multipliers`, `fixes`)
        and its token count, chunked as generation chunks it (BREAK, commas, emphasis)."""
        tokenized = self._conditioner().chunker.tokenize_prompt(line)
        return list(tokenized.chunks), tokenized.token_count

    def encode_with_transformers(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden states for token ids [B, 77] at the clip-skip layer generation uses."""
        return self._conditioner().encode_ids(tokens, self._slot)

    def get_target_prompt_token_count(self, token_count: int) -> int:
        return max(1, -(-token_count // self.chunk_length)) * self.chunk_length

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self._conditioner().encode(list(texts)).context


class GeneralConditioner(nn.Module):
    """sgm's conditioner for SDXL: `embedders` (CLIP-L, OpenCLIP-G); called with prompts (or sgm's
    batch dict with "txt") it returns {"crossattn": context, "vector": y}."""

    def __init__(self, conditioner: Callable[[], TextConditioner], embedders: list[nn.Module], unet: Any) -> None:
        super().__init__()
        self.embedders = nn.ModuleList(embedders)
        self._conditioner = conditioner
        self.__dict__["_unet"] = unet  # the UNet view (size embedding), outside the tree

    def forward(self, batch: Any, force_zero_embeddings: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        texts = list(batch["txt"]) if isinstance(batch, dict) else list(batch)
        width = int(getattr(batch, "width", None) or 1024)
        height = int(getattr(batch, "height", None) or 1024)
        negative = bool(getattr(batch, "is_negative_prompt", False)) or "txt" in (force_zero_embeddings or ())
        cond = self._conditioner().encode(texts, is_negative_prompt=negative)
        assert cond.pooled is not None, "SDXL text conditioning has a pooled embedding"
        unet = self.__dict__["_unet"]
        count = (int(unet.adm_in_channels) - int(cond.pooled.shape[1])) // int(unet.addition_time_embed_dim)
        # SDXL base: size, crop, target size; the refiner: size, crop, aesthetic score (A1111's 6 / 2.5)
        ids = [height, width, 0, 0, height, width] if count == 6 else [height, width, 0, 0, 2.5 if negative else 6.0]
        time_ids = torch.tensor([ids] * len(texts), dtype=cond.pooled.dtype, device=cond.pooled.device)
        return {"crossattn": cond.context, "vector": unet.size_vector(cond.pooled, time_ids)}


def text_conditioner(loaded: Any, settings: Mapping[str, Any]) -> TextConditioner:
    family = loaded.family
    return TextConditioner(
        loaded.tokenizers,
        loaded.text_encoders,
        family_is_sdxl=loaded.is_sdxl,
        is_refiner=loaded.is_refiner,
        family_is_sd2=family in (ModelFamily.SD2, ModelFamily.SD2_V, ModelFamily.SD2_INPAINT),
        clip_skip=int(settings.get("CLIP_stop_at_last_layers", 1)),
        emphasis=str(settings.get("emphasis", "Original")),
        comma_padding_backtrack=int(settings.get("comma_padding_backtrack", 20)),
    )


def sd_model_for(loaded: Any, settings: Settings) -> LatentDiffusion:
    """The model's A1111 object (the same one on every call for this model)."""
    unet = loaded.unet
    cached = attached_sd_model(unet)
    if cached is not None:
        return cached
    pipe = loaded.pipe

    def conditioner() -> TextConditioner:
        return text_conditioner(loaded, settings())

    diffusion_model = diffusion_model_of(unet)
    embedders: list[nn.Module] = [
        FrozenCLIPEmbedderWithCustomWords(conditioner, i, ClipEmbedder(encoder, tokenizer))
        for i, (encoder, tokenizer) in enumerate(zip(loaded.text_encoders, loaded.tokenizers, strict=True))
    ]
    common: dict[str, Any] = {
        "parameterization": "v" if loaded.prediction_type == "v_prediction" else "eps",
        "alphas_cumprod": loaded.alphas_cumprod,
        "scale_factor": float(pipe.vae.config.scaling_factor),
        "conditioning_key": "hybrid" if loaded.is_inpaint else "crossattn",
    }
    model: LatentDiffusion
    if loaded.is_sdxl:
        model = DiffusionEngine(
            diffusion_model,
            lambda: first_stage_of(pipe.vae),
            cond_stage_model=GeneralConditioner(conditioner, embedders, diffusion_model),
            **common,
        )
    else:
        model = LatentDiffusion(
            diffusion_model, lambda: first_stage_of(pipe.vae), cond_stage_model=embedders[0], **common
        )
    model.is_sdxl = bool(loaded.is_sdxl)
    model.is_sd2 = family_value(loaded).startswith("sd2")
    model.is_sd1 = family_value(loaded).startswith("sd1")
    attach_sd_model(unet, model)
    return model


def family_value(loaded: Any) -> str:
    return str(getattr(loaded.family, "value", ""))
