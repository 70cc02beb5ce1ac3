"""The files training writes, in A1111's formats, and reading them back for resuming.

Readers of the networks package (modules.networks.embeddings / hypernetworks) load these files for
generation; the writers live here until the networks package has its own (they can move there).

- SD1 / SD2 embedding: `<name>.pt`, torch pickle {"string_to_token": {"*": 265}, "string_to_param":
  {"*": [n, dim]}, "name", "step", "sd_checkpoint", "sd_checkpoint_name"} (A1111 Embedding.save).
- SDXL embedding: `<name>.safetensors` {"clip_l": [n, 768], "clip_g": [n, 1280]}, the layout
  A1111 loads for SDXL; name/step/checkpoint go into the safetensors metadata (strings).
- Hypernetwork: `<name>.pt` {width: (k state dict, v state dict), "step", "name",
  "layer_structure", "activation_func", "is_layer_norm", "weight_initialization", "sd_checkpoint",
  "sd_checkpoint_name", "activate_output", "use_dropout", "dropout_structure",
  "last_layer_dropout", "optional_info"}; state dict keys "linear.<i>.weight" (A1111 Hypernetwork.save).
- Optimizer state: `<file>.optim` {"hash", "optimizer_state_dict"} (+ "optimizer_name" for
  hypernetworks), used on resume only when the hash matches the file.
Every write goes to a temporary file first and is renamed into place: a reader (or a crash)
never sees half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from modules.models.errors import InvalidModelFile, ModelError
from modules.models.safe_load import load_pickle
from modules.networks.embeddings import EMBEDDING_SUFFIXES, EmbeddingFile, is_preview_image, read_embedding
from modules.networks.hypernetworks import HypernetworkStructure
from modules.train.errors import TrainingError

Tensor = torch.Tensor
NAME_CHARACTERS = "._- "


def sanitize_name(name: str, what: str = "name") -> str:
    """A1111's rule: keep letters, digits and "._- "; a name that is then empty is an error."""
    clean = "".join(ch for ch in str(name) if ch.isalnum() or ch in NAME_CHARACTERS).strip()
    if not clean.strip("."):
        raise TrainingError(f"{what} {name!r} has no usable characters (letters, digits, '.', '_', '-', ' ')")
    return clean


# --------------------------------------------------------------------------------------------
# atomic writes


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    with _atomic_path(path) as tmp:
        write(tmp)
    return path


def _cpu(tensor: Tensor) -> Tensor:
    return tensor.detach().to("cpu", torch.float32).contiguous().clone()


# --------------------------------------------------------------------------------------------
# embeddings


@dataclass(frozen=True)
class EmbeddingMeta:
    name: str
    step: int | None = 0
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None


def embedding_suffix(vectors: Tensor | Mapping[str, Tensor]) -> str:
    return ".pt" if isinstance(vectors, Tensor) else ".safetensors"


def a1111_embedding_data(vectors: Tensor, meta: EmbeddingMeta) -> dict[str, Any]:
    return {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": _cpu(vectors)},
        "name": meta.name,
        "step": meta.step,
        "sd_checkpoint": meta.sd_checkpoint,
        "sd_checkpoint_name": meta.sd_checkpoint_name,
    }


def save_embedding(path: Path, vectors: Tensor | Mapping[str, Tensor], meta: EmbeddingMeta) -> Path:
    """Write an embedding: one tensor -> A1111 .pt; per-encoder tensors (SDXL) -> .safetensors."""
    path = Path(path)
    if isinstance(vectors, Tensor):
        if path.suffix.lower() != ".pt":
            raise ValueError(f"an SD1/SD2 embedding is written as .pt, not {path.name}")
        data = a1111_embedding_data(vectors, meta)
        return atomic_write(path, lambda tmp: torch.save(data, tmp))
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"an SDXL embedding is written as .safetensors, not {path.name}")
    tensors = {key: _cpu(value) for key, value in vectors.items()}
    metadata = {"name": meta.name, "step": str(meta.step if meta.step is not None else 0)}
    if meta.sd_checkpoint:
        metadata["sd_checkpoint"] = meta.sd_checkpoint
    if meta.sd_checkpoint_name:
        metadata["sd_checkpoint_name"] = meta.sd_checkpoint_name
    return atomic_write(path, lambda tmp: safetensors.torch.save_file(tensors, str(tmp), metadata=metadata))


def embedding_checksum(vectors: Tensor | Mapping[str, Tensor]) -> str:
    """A1111's Embedding.checksum (4 hex digits) that ties an .optim file to its vectors."""
    flat = vectors if isinstance(vectors, Tensor) else torch.cat([v.reshape(-1) for v in vectors.values()])
    r = 0
    for value in (flat.detach().reshape(-1).cpu().float() * 100).tolist():  # float32 maths, as A1111
        r = (r * 281 ^ int(value) * 997) & 0xFFFFFFFF
    return f"{r & 0xFFFF:04x}"


@dataclass
class StoredEmbedding:
    """An embedding read for training: its vectors, A1111 step, and where it came from."""

    file: EmbeddingFile
    step: int

    @property
    def path(self) -> Path:
        return self.file.path


def find_embedding_file(embeddings_dir: Path, name: str, prefer: str = ".pt") -> Path | None:
    """The embedding called `name`: `<name><prefer>` first, then other formats, then subfolders."""
    folder = Path(embeddings_dir)
    for suffix in dict.fromkeys((prefer, ".pt", ".safetensors", ".bin")):
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            suffix_ok = path.suffix.lower() in EMBEDDING_SUFFIXES and not is_preview_image(path)
            if suffix_ok and path.is_file() and path.stem == name:
                return path
    return None


def read_embedding_for_training(path: Path, *, safe: bool = True) -> StoredEmbedding:
    file = read_embedding(path, safe=safe)
    if file is None:
        raise TrainingError(f"{Path(path).name} holds no textual-inversion embedding")
    step = file.step
    if step is None and Path(path).suffix.lower() == ".safetensors":
        step = _safetensors_step(Path(path))
    return StoredEmbedding(file, int(step or 0))


def _safetensors_step(path: Path) -> int | None:
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (OSError, safetensors.SafetensorError):
        return None
    try:
        return int(metadata.get("step", ""))
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# hypernetworks


@dataclass
class HypernetworkHeader:
    """Everything in an A1111 hypernetwork file besides the per-width weights."""

    name: str
    layer_structure: list[float] = field(default_factory=lambda: [1.0, 2.0, 1.0])
    activation_func: str | None = "linear"
    is_layer_norm: bool = False
    weight_initialization: str = "Normal"
    use_dropout: bool = False
    dropout_structure: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    activate_output: bool = False
    optional_info: str | None = None
    step: int = 0
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None

    @property
    def last_layer_dropout(self) -> bool:
        return len(self.dropout_structure) >= 2 and self.dropout_structure[-2] != 0

    @classmethod
    def from_file_data(cls, data: Mapping[Any, Any], fallback_name: str) -> HypernetworkHeader:
        structure = HypernetworkStructure.from_file(data)
        return cls(
            name=str(data.get("name") or fallback_name),
            layer_structure=list(structure.layer_structure),
            activation_func=structure.activation_func,
            is_layer_norm=structure.add_layer_norm,
            weight_initialization=str(data.get("weight_initialization") or "Normal"),
            use_dropout=any(structure.dropout),
            dropout_structure=list(structure.dropout),
            activate_output=structure.activate_output,
            optional_info=data.get("optional_info"),
            step=int(data.get("step") or 0),
            sd_checkpoint=data.get("sd_checkpoint"),
            sd_checkpoint_name=data.get("sd_checkpoint_name"),
        )


def hypernetwork_data(
    modules: Mapping[int, tuple[torch.nn.Module, torch.nn.Module]], header: HypernetworkHeader
) -> dict[Any, Any]:
    """The dict A1111's Hypernetwork.save writes (module keys carry A1111's "linear." level)."""

    def state(module: torch.nn.Module) -> dict[str, Tensor]:
        return {f"linear.{key}": _cpu(value) for key, value in module.state_dict().items()}

    data: dict[Any, Any] = {width: (state(k), state(v)) for width, (k, v) in modules.items()}
    data.update(
        {
            "step": header.step,
            "name": header.name,
            "layer_structure": list(header.layer_structure),
            "activation_func": header.activation_func,
            "is_layer_norm": header.is_layer_norm,
            "weight_initialization": header.weight_initialization,
            "sd_checkpoint": header.sd_checkpoint,
            "sd_checkpoint_name": header.sd_checkpoint_name,
            "activate_output": header.activate_output,
            "use_dropout": header.use_dropout,
            "dropout_structure": list(header.dropout_structure),
            "last_layer_dropout": header.last_layer_dropout,
            "optional_info": header.optional_info or None,
        }
    )
    return data


def save_hypernetwork(
    path: Path, modules: Mapping[int, tuple[torch.nn.Module, torch.nn.Module]], header: HypernetworkHeader
) -> Path:
    data = hypernetwork_data(modules, header)
    return atomic_write(Path(path), lambda tmp: torch.save(data, tmp))


def read_hypernetwork_header(path: Path, *, safe: bool = True) -> HypernetworkHeader:
    data = load_pickle(Path(path), safe=safe)
    if not isinstance(data, dict) or not any(isinstance(k, int) for k in data):
        raise InvalidModelFile(f"{Path(path).name}: not an A1111 hypernetwork (no per-width modules)")
    return HypernetworkHeader.from_file_data(data, Path(path).stem)


def file_shorthash(path: Path) -> str:
    """sha256 of a file, first 10 hex digits (A1111 ties hypernetwork .optim files to this)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:10]


# --------------------------------------------------------------------------------------------
# optimizer state


def optim_path(path: Path) -> Path:
    return Path(f"{path}.optim")


def save_optimizer_state(path: Path, file_hash: str, state: dict[str, Any], optimizer_name: str | None = None) -> Path:
    data: dict[str, Any] = {"hash": file_hash, "optimizer_state_dict": state}
    if optimizer_name is not None:
        data["optimizer_name"] = optimizer_name
    return atomic_write(optim_path(path), lambda tmp: torch.save(data, tmp))


def load_optimizer_state(path: Path, file_hash: str, *, safe: bool = True) -> dict[str, Any] | None:
    """The saved optimizer state for `path` if there is one whose hash matches, else None."""
    target = optim_path(path)
    if not target.is_file():
        return None
    try:
        data = load_pickle(target, safe=safe)
    except ModelError:
        return None
    if not isinstance(data, dict) or data.get("hash") != file_hash:
        return None
    state = data.get("optimizer_state_dict")
    return state if isinstance(state, dict) else None
