"""Read model weights from disk without running code from the file.

.safetensors needs no care. .ckpt/.pt/.pth/.bin are pickles: we load them with torch's
weights-only unpickler (tensors, containers, numbers, strings), plus the few harmless globals
that real Stable Diffusion checkpoints carry (a PyTorch Lightning callback object, numpy
scalars). Anything else (e.g. os.system) is refused with `UnsafeModelFile`; only an explicit
`safe=False` (the --disable-safe-unpickle flag) falls back to a full pickle load.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from modules.models.errors import InvalidModelFile, UnsafeModelFile
from modules.models.safetensors_header import read_safetensors_header

__all__ = ["UnsafeModelFile", "load_pickle", "load_state_dict", "unwrap_state_dict"]

PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})


class _LightningCallbackStandIn:
    """Takes the place of pytorch_lightning's ModelCheckpoint found in training checkpoints."""


def _allowed_extra_globals() -> list[Any]:
    multiarray = getattr(np, "_core", None) or np.core  # numpy 2 moved it
    multiarray = multiarray.multiarray
    allowed: list[Any] = [
        (_LightningCallbackStandIn, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
        multiarray.scalar,
        multiarray._reconstruct,
        np.ndarray,
        np.dtype,
    ]
    # numpy 2 pickles dtypes as instances of per-type classes (numpy.dtypes.Float64DType, ...)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return allowed


def load_pickle(path: Path, *, safe: bool = True, device: str | torch.device = "cpu") -> Any:
    """The object stored in a torch pickle file (.ckpt/.pt/.pth/.bin)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidModelFile(f"{path}: no such file")
    use_mmap = zipfile.is_zipfile(path)  # mmap works only for torch's zip format
    try:
        if not safe:
            return torch.load(path, map_location=device, weights_only=False, mmap=use_mmap)
        with torch.serialization.safe_globals(_allowed_extra_globals()):
            return torch.load(path, map_location=device, weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if safe and ("GLOBAL" in text or "Unsupported" in text or "Weights only load failed" in text):
            blocked = _blocked_name(text)
            raise UnsafeModelFile(
                f"{path.name}: refused to load: the file asks to run code{blocked} while unpickling. "
                "Use a .safetensors version of this model, or start with --disable-safe-unpickle "
                "if you trust the file's source."
            ) from None
        raise InvalidModelFile(f"{path.name}: not a readable PyTorch file ({_first_line(text)})") from None
    except (RuntimeError, KeyError, EOFError, ValueError, OSError, AttributeError, ImportError) as exc:
        raise InvalidModelFile(f"{path.name}: not a readable PyTorch file ({_first_line(str(exc))})") from None


def _blocked_name(text: str) -> str:
    marker = "GLOBAL "
    at = text.find(marker)
    if at < 0:
        return ""
    name = text[at + len(marker) :].split()[0]
    return f" ({name})"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else "unknown error"


def unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The tensor dict inside a loaded checkpoint: handles the Lightning {"state_dict": ...} wrapper."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise InvalidModelFile(f"expected a dict of tensors, found {type(obj).__name__}")
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def load_state_dict(path: Path, *, safe: bool = True, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a model file, keyed by name, for .safetensors/.ckpt/.pt/.pth/.bin."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        read_safetensors_header(path)  # clear errors for truncated / non-safetensors files
        try:
            return safetensors.torch.load_file(str(path), device=str(device))
        except (safetensors.SafetensorError, OSError, ValueError) as exc:
            raise InvalidModelFile(f"{path.name}: damaged safetensors file ({_first_line(str(exc))})") from None
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return unwrap_state_dict(load_pickle(path, safe=safe, device=device))
    raise InvalidModelFile(f"{path.name}: unsupported model file type {path.suffix!r}")
