"""Writers for network files in the formats real files use, for tests and demos (random tensors).

The callers spell out the key layout (that is what tests check); these helpers only save:
safetensors with metadata, A1111 embedding / hypernetwork pickles, embeddings inside images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from PIL import Image, PngImagePlugin

from modules.models.families import ModelFamily
from modules.models.loader import text_encoders_of, tokenizers_of
from modules.networks.image_embedding import TEXT_CHUNK, embed_in_pixels, embedding_to_text_chunk
from modules.networks.keymap import text_components


def randn(*shape: int, generator: torch.Generator, scale: float = 0.1) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) * scale


def save_safetensors(path: Path, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in state.items()}
    safetensors.torch.save_file(tensors, str(path), metadata=dict(metadata or {}))
    return path


def a1111_embedding(
    vectors: torch.Tensor,
    *,
    name: str = "embedding",
    step: int | None = 100,
    sd_checkpoint: str | None = "0123456789",
    sd_checkpoint_name: str | None = "model",
) -> dict[str, Any]:
    """The dict A1111's Embedding.save writes (torch.save it for a .pt file)."""
    return {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": vectors},
        "name": name,
        "step": step,
        "sd_checkpoint": sd_checkpoint,
        "sd_checkpoint_name": sd_checkpoint_name,
    }


def save_torch(path: Path, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return path


def save_embedding_image(
    path: Path, data: dict[str, Any], *, hidden: bool, size: tuple[int, int] = (48, 40), color: int = 180
) -> Path:
    """An embedding image: data in the `sd-ti-embedding` text chunk (PNG), or hidden in the pixels
    (any lossless format by suffix: .png, .webp)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.new("RGB", size, (color, color // 2 + 40, 200))
    if hidden:
        image = embed_in_pixels(picture, data)
        if path.suffix.lower() == ".webp":
            image.save(path, lossless=True, quality=100)
        else:
            image.save(path)
        return path
    info = PngImagePlugin.PngInfo()
    info.add_text(TEXT_CHUNK, embedding_to_text_chunk(data))
    picture.save(path, pnginfo=info)
    return path


def a1111_hypernetwork(
    modules: Mapping[int, tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]]],
    *,
    layer_structure: tuple[float, ...] = (1, 2, 1),
    activation_func: str | None = "relu",
    is_layer_norm: bool = False,
    use_dropout: bool = False,
    dropout_structure: list[float] | None = None,
    activate_output: bool = False,
    last_layer_dropout: bool = False,
    name: str = "hypernet",
    step: int = 1000,
) -> dict[Any, Any]:
    """The dict A1111's Hypernetwork.save writes: {width: (k state dict, v state dict), ...header}."""
    data: dict[Any, Any] = {width: (dict(k), dict(v)) for width, (k, v) in modules.items()}
    data.update(
        {
            "step": step,
            "name": name,
            "layer_structure": list(layer_structure),
            "activation_func": activation_func,
            "is_layer_norm": is_layer_norm,
            "weight_initialization": "Normal",
            "sd_checkpoint": "0123456789",
            "sd_checkpoint_name": "model",
            "activate_output": activate_output,
            "use_dropout": use_dropout,
            "dropout_structure": dropout_structure,
            "last_layer_dropout": last_layer_dropout,
            "optional_info": None,
        }
    )
    return data


# --------------------------------------------------------------------------------------------
# a tiny model wrapper and parameter snapshots for checking exact changes and restores


@dataclass
class TinyModel:
    """A pipeline with the attributes the networks code reads (like LoadedModel)."""

    family: ModelFamily
    pipe: Any

    @property
    def unet(self) -> Any:
        return self.pipe.unet

    @property
    def text_encoders(self) -> list[Any]:
        return text_encoders_of(self.pipe)

    @property
    def tokenizers(self) -> list[Any]:
        return tokenizers_of(self.pipe)

    def params(self) -> dict[str, torch.Tensor]:
        """Every parameter as "<component>.<name>" (component: unet, text_encoder, text_encoder_2)."""
        out = {f"unet.{k}": v for k, v in self.unet.named_parameters()}
        for component, encoder in zip(text_components(self.family), self.text_encoders, strict=True):
            out.update({f"{component}.{k}": v for k, v in encoder.named_parameters()})
        return out


@dataclass
class Snapshot:
    values: dict[str, torch.Tensor]
    pointers: dict[str, int]

    @classmethod
    def of(cls, model: TinyModel) -> Snapshot:
        params = model.params()
        return cls({k: v.detach().clone() for k, v in params.items()}, {k: v.data_ptr() for k, v in params.items()})

    def changed(self, model: TinyModel) -> set[str]:
        """Parameters whose values differ from the snapshot (new parameters count as changed)."""
        now = model.params()
        differ = {k for k, v in self.values.items() if not torch.equal(v, now[k].detach())}
        return differ | (set(now) - set(self.values))

    def assert_restored(self, model: TinyModel) -> None:
        now = model.params()
        assert set(now) == set(self.values), f"parameters added or removed: {set(now) ^ set(self.values)}"
        for key, value in self.values.items():
            assert torch.equal(value, now[key].detach()), f"{key} not restored bit for bit"
            assert now[key].data_ptr() == self.pointers[key], f"{key} is not the original tensor"


def unet_output(model: TinyModel, seed: int = 7) -> torch.Tensor:
    """One UNet forward on fixed random inputs (SDXL: with pooled text and size ids)."""
    config = model.unet.config
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, int(config.in_channels), 8, 8, generator=generator)
    context = torch.randn(1, 5, int(config.cross_attention_dim), generator=generator)
    extra: dict[str, Any] = {}
    if config.get("addition_embed_type") == "text_time":
        pooled = int(config.projection_class_embeddings_input_dim) - 6 * int(config.addition_time_embed_dim)
        extra["added_cond_kwargs"] = {
            "text_embeds": torch.randn(1, pooled, generator=generator),
            "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]),
        }
    with torch.no_grad():
        return model.unet(x, torch.tensor([500]), encoder_hidden_states=context, **extra).sample
