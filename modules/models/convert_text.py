"""Key mapping for CLIP text encoders: transformers CLIPTextModel(WithProjection) <-> single file.

Canonical form used here: transformers keys with the `text_model.` level, plus
`text_projection.weight` for the projection model (transformers >= 5.6 drops `text_model.` from
CLIPTextModel state dicts; `to_model_keys` / `from_model_keys` bridge that).

Two single-file layouts exist:
- "hf": the transformers layout under a prefix (SD1 `cond_stage_model.transformer.`, SDXL
  `conditioner.embedders.0.transformer.`), identical keys.
- "openclip": OpenCLIP's layout (SD2 `cond_stage_model.model.`, SDXL `conditioner.embedders.1.model.`,
  refiner `conditioner.embedders.0.model.`): fused q/k/v `in_proj_weight`, `text_projection` stored
  as [hidden, projection] (transposed to a Linear weight), and for SD2 one more transformer layer
  than diffusers uses (diffusers' SD2 encoder stops at the penultimate layer, as A1111 does).
  `logit_scale` and `attn_mask` have no place in a text-only model and are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from modules.models.errors import UnsupportedModel

TEXT = "text_model."
PROJECTION = "text_projection.weight"

_LAYER_RENAMES = (
    ("layer_norm1", "ln_1"),
    ("self_attn.out_proj", "attn.out_proj"),
    ("layer_norm2", "ln_2"),
    ("mlp.fc1", "mlp.c_fc"),
    ("mlp.fc2", "mlp.c_proj"),
)


def to_model_keys(state: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Canonical keys -> the keys `model.state_dict()` uses (with or without `text_model.`)."""
    if hasattr(model, "text_model"):
        return dict(state)
    return {k.removeprefix(TEXT): v for k, v in state.items() if k != PROJECTION}


def from_model_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CLIP text model's state dict -> canonical keys."""
    return {k if (k.startswith(TEXT) or k == PROJECTION) else TEXT + k: v for k, v in state.items()}


def count_layers(keys: object, layer_prefix: str) -> int:
    """Number of numbered sub-blocks `layer_prefix{i}.` present among `keys`."""
    found = set()
    for key in keys:  # type: ignore[attr-defined]
        if key.startswith(layer_prefix):
            head = key[len(layer_prefix) :].split(".", 1)[0]
            if head.isdecimal():
                found.add(int(head))
    return max(found) + 1 if found else 0


def openclip_to_canonical(
    state: Mapping[str, torch.Tensor], *, keep_layers: int, with_projection: bool
) -> dict[str, torch.Tensor]:
    """OpenCLIP keys (prefix removed) -> canonical transformers keys, keeping the first `keep_layers` layers."""
    try:
        out = {
            TEXT + "embeddings.token_embedding.weight": state["token_embedding.weight"],
            TEXT + "embeddings.position_embedding.weight": state["positional_embedding"],
            TEXT + "final_layer_norm.weight": state["ln_final.weight"],
            TEXT + "final_layer_norm.bias": state["ln_final.bias"],
        }
        if with_projection:
            out[PROJECTION] = state["text_projection"].T.contiguous()
        for i in range(keep_layers):
            src, dst = f"transformer.resblocks.{i}.", f"{TEXT}encoder.layers.{i}."
            for kind in ("weight", "bias"):
                q, k, v = state[f"{src}attn.in_proj_{kind}"].chunk(3, dim=0)
                out[f"{dst}self_attn.q_proj.{kind}"] = q.contiguous()
                out[f"{dst}self_attn.k_proj.{kind}"] = k.contiguous()
                out[f"{dst}self_attn.v_proj.{kind}"] = v.contiguous()
                for ours, theirs in _LAYER_RENAMES:
                    out[f"{dst}{ours}.{kind}"] = state[f"{src}{theirs}.{kind}"]
    except KeyError as exc:
        raise UnsupportedModel(f"OpenCLIP text encoder is missing {exc.args[0]!r}") from None
    return out


def canonical_to_openclip(
    state: Mapping[str, torch.Tensor],
    *,
    extra_layers: Mapping[str, torch.Tensor] | None = None,
    text_projection: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Canonical transformers keys -> OpenCLIP keys (no prefix).

    `extra_layers` holds OpenCLIP keys appended as-is (SD2's unused last layer); `text_projection`
    is used when the model has none (SD2); otherwise the model's projection is transposed back.
    """
    layers = count_layers(state.keys(), TEXT + "encoder.layers.")
    hidden = state[TEXT + "embeddings.token_embedding.weight"].shape[1]
    out = {
        "token_embedding.weight": state[TEXT + "embeddings.token_embedding.weight"],
        "positional_embedding": state[TEXT + "embeddings.position_embedding.weight"],
        "ln_final.weight": state[TEXT + "final_layer_norm.weight"],
        "ln_final.bias": state[TEXT + "final_layer_norm.bias"],
        "logit_scale": torch.tensor(math.log(1 / 0.07)),
    }
    if PROJECTION in state:
        out["text_projection"] = state[PROJECTION].T.contiguous()
    elif text_projection is not None:
        out["text_projection"] = text_projection
    else:
        out["text_projection"] = torch.eye(hidden, dtype=state[TEXT + "final_layer_norm.weight"].dtype)
    for i in range(layers):
        src, dst = f"{TEXT}encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            parts = [state[f"{src}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")]
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(parts, dim=0)
            for ours, theirs in _LAYER_RENAMES:
                out[f"{dst}{theirs}.{kind}"] = state[f"{src}{ours}.{kind}"]
    if extra_layers:
        out.update(extra_layers)
    return out
