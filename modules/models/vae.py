"""External VAE files: listing, A1111's choice rules, and loading weights into a loaded model's VAE.

Listing (A1111): every .safetensors/.pt/.ckpt under models/VAE, plus *.vae.{safetensors,pt,ckpt}
under the checkpoint folder; named by file name (with extension), natural sort.
Choice: "None" = the checkpoint's own VAE; a name = that file; "Automatic" = a VAE named after
the checkpoint (`<stem>.vae.safetensors` / `.vae.pt` / `.vae.ckpt` beside it first, then any
listed VAE whose file name starts with `<stem>.`), else the checkpoint's own VAE. (A1111 matches
any listed name starting with the stem, so "model" would also pick "model2.vae.pt"; we require
the dot.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.core.naming import natural_key
from modules.models.convert import vae_from_ldm
from modules.models.errors import ModelNotFound, UnsupportedModel, WrongModelKind
from modules.models.identify import classify_shapes
from modules.models.safe_load import load_state_dict

VAE_SUFFIXES = (".safetensors", ".pt", ".ckpt")
AUTOMATIC = "Automatic"
NONE = "None"


class VaeNotFound(ModelNotFound):
    """No VAE file matches the given name."""


@dataclass(frozen=True)
class VaeInfo:
    name: str  # file name with extension, as A1111 shows and writes into infotexts
    filename: Path
    source: str = "file"  # "file" (chosen by name) | "automatic" (found next to the checkpoint)

    @property
    def hash_key(self) -> str:
        return f"vae/{self.name}"


def list_vae_files(vae_dir: Path, ckpt_dir: Path) -> list[VaeInfo]:
    found: dict[str, VaeInfo] = {}
    if Path(ckpt_dir).is_dir():
        for path in sorted(Path(ckpt_dir).rglob("*.vae.*")):
            if path.is_file() and path.suffix.lower() in VAE_SUFFIXES:
                found.setdefault(path.name, VaeInfo(path.name, path))
    if Path(vae_dir).is_dir():
        for path in sorted(Path(vae_dir).rglob("*")):
            if path.is_file() and path.suffix.lower() in VAE_SUFFIXES:
                found.setdefault(path.name, VaeInfo(path.name, path))
    return sorted(found.values(), key=lambda v: natural_key(v.name))


def find_vae_near_checkpoint(checkpoint_file: Path, listed: list[VaeInfo]) -> VaeInfo | None:
    checkpoint_file = Path(checkpoint_file)
    stem = checkpoint_file.name[: -len(checkpoint_file.suffix)] if checkpoint_file.suffix else checkpoint_file.name
    for suffix in (".vae.safetensors", ".vae.pt", ".vae.ckpt"):
        beside = checkpoint_file.with_name(stem + suffix)
        if beside.is_file():
            return VaeInfo(beside.name, beside, source="automatic")
    for info in listed:
        if info.name.startswith(stem + "."):
            return VaeInfo(info.name, info.filename, source="automatic")
    return None


def resolve_vae_choice(choice: str, checkpoint_file: Path | None, listed: list[VaeInfo]) -> VaeInfo | None:
    """The VAE file a setting value means; None = the checkpoint's own VAE. Only listed files."""
    if choice in (NONE, "", None):
        return None
    if choice in (AUTOMATIC, "auto"):
        return find_vae_near_checkpoint(checkpoint_file, listed) if checkpoint_file is not None else None
    for info in listed:
        if choice in (info.name, Path(info.name).stem, str(info.filename)):
            return info
    # a path to a file that is not listed is "not found" (same message whether it exists or not)
    names = ", ".join(v.name for v in listed) or "none"
    raise VaeNotFound(f"VAE {choice!r} not found. Available: {AUTOMATIC}, {NONE}, {names}")


def load_vae_weights(path: Path, vae_config: Mapping[str, Any], *, safe: bool = True) -> dict[str, torch.Tensor]:
    """diffusers-layout VAE weights from a VAE file (A1111/LDM layout, a checkpoint, or diffusers layout)."""
    state = load_state_dict(path, safe=safe)
    for prefix in ("first_stage_model.", "vae."):
        if any(k.startswith(prefix + "encoder.") for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            break
    state = {k: v for k, v in state.items() if not k.startswith(("loss.", "model_ema."))}
    if "encoder.down_blocks.0.resnets.0.conv1.weight" in state:
        return state
    if "encoder.down.0.block.0.conv1.weight" not in state:
        kind = classify_shapes({k: tuple(v.shape) for k, v in state.items()}).kind
        raise WrongModelKind(f"{Path(path).name} is not a VAE (looks like: {kind.value})")
    return vae_from_ldm(state, vae_config)


def check_fits(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise before touching any weight if `state` does not match `module` key for key, shape for shape."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or extra or wrong:
        detail = (
            f"missing {missing[:2]}" if missing else f"unexpected {extra[:2]}" if extra else f"shape of {wrong[:2]}"
        )
        raise UnsupportedModel(f"{what} does not fit this model's VAE ({detail})")
