"""Textual-inversion embeddings: reading A1111's file formats, and the per-model lookup the prompt
chunker uses (modules.generation.chunking.EmbeddingLookup).

Formats (A1111 textual_inversion.py load_from_file):
- .pt / .bin: A1111 {"string_to_token": {"*": 265}, "string_to_param": {"*": [n, dim]}, "name", "step",
  "sd_checkpoint", "sd_checkpoint_name"}; diffusers concepts {"<token>": [dim] or [n, dim]} (one key).
- .safetensors: {"emb_params": [n, dim]} (a one-key dict like the diffusers form), SDXL
  {"clip_l": [n, 768], "clip_g": [n, 1280]}.
- .png / .webp / .jxl / .avif: see image_embedding.py; `<name>.preview.<ext>` files are previews.
The name used in prompts is the file stem (images: the name stored in the data, if any).
An embedding whose vector width does not match the model's text encoder(s) is "skipped".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from PIL import Image, UnidentifiedImageError

from modules.models.errors import InvalidModelFile
from modules.models.families import ModelFamily, is_refiner, is_sd2, is_sdxl
from modules.models.safe_load import PICKLE_SUFFIXES, load_pickle
from modules.networks.image_embedding import embedding_from_image
from modules.networks.types import EmbeddingMatch

Tensor = torch.Tensor
IMAGE_SUFFIXES = (".png", ".webp", ".jxl", ".avif")
EMBEDDING_SUFFIXES = (".pt", ".bin", ".safetensors", *IMAGE_SUFFIXES)
_FAMILY_BY_WIDTH = {768: "SD1", 1024: "SD2", 1280: "SDXL refiner"}


@dataclass(frozen=True, eq=False)
class EmbeddingFile:
    """One embedding read from disk."""

    name: str
    path: Path
    vectors: Tensor | dict[str, Tensor]  # [n, dim], or per text encoder (SDXL: clip_l, clip_g)
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    sha256: str | None = None

    @property
    def vector_count(self) -> int:
        first = self.vectors if isinstance(self.vectors, Tensor) else next(iter(self.vectors.values()))
        return int(first.shape[0])

    @property
    def width(self) -> int:
        """A1111's `shape`: the vector width, summed over encoders for SDXL files."""
        if isinstance(self.vectors, Tensor):
            return int(self.vectors.shape[-1])
        return sum(int(v.shape[-1]) for v in self.vectors.values())

    @property
    def shorthash(self) -> str | None:
        return self.sha256[:12] if self.sha256 else None

    @property
    def made_for(self) -> str:
        if not isinstance(self.vectors, Tensor):
            return "SDXL"
        return _FAMILY_BY_WIDTH.get(self.width, "unknown")

    def api_entry(self) -> dict[str, Any]:
        """The entry of /sdapi/v1/embeddings."""
        return {
            "step": self.step,
            "sd_checkpoint": self.sd_checkpoint,
            "sd_checkpoint_name": self.sd_checkpoint_name,
            "shape": self.width,
            "vectors": self.vector_count,
        }


def is_preview_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and Path(path.stem).suffix.lower() == ".preview"


def _as_vectors(tensor: Any, what: str) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise InvalidModelFile(f"{what}: expected a tensor, found {type(tensor).__name__}")
    tensor = tensor.detach().to("cpu", torch.float32)
    if tensor.ndim == 1:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 2 or tensor.shape[0] == 0:
        raise InvalidModelFile(f"{what}: vectors must be [n, dim], found shape {tuple(tensor.shape)}")
    return tensor


def embedding_from_data(data: Any, name: str, path: Path, sha256: str | None = None) -> EmbeddingFile:
    """An EmbeddingFile from the loaded contents of a file (any of the supported layouts)."""
    what = Path(path).name
    if not isinstance(data, dict) or not data:
        raise InvalidModelFile(f"{what}: not a textual-inversion embedding (empty or not a dict)")
    vectors: Tensor | dict[str, Tensor]
    if "string_to_param" in data:
        params = data["string_to_param"]
        if not isinstance(params, dict) or len(params) != 1:
            raise InvalidModelFile(
                f"{what}: embedding file has {len(params) if isinstance(params, dict) else 0} terms; expected one"
            )
        vectors = _as_vectors(next(iter(params.values())), what)
    elif "clip_g" in data and "clip_l" in data:
        vectors = {key: _as_vectors(data[key], what) for key in ("clip_l", "clip_g")}
        if vectors["clip_l"].shape[0] != vectors["clip_g"].shape[0]:
            raise InvalidModelFile(f"{what}: clip_l and clip_g hold different numbers of vectors")
    elif isinstance(next(iter(data.values())), Tensor):
        if len(data) != 1:
            raise InvalidModelFile(f"{what}: embedding file has {len(data)} terms; expected one")
        vectors = _as_vectors(next(iter(data.values())), what)
    else:
        raise InvalidModelFile(f"{what}: neither a textual-inversion embedding nor a diffusers concept")
    return EmbeddingFile(
        name=name,
        path=Path(path),
        vectors=vectors,
        step=_optional_int(data.get("step")),
        sd_checkpoint=_optional_str(data.get("sd_checkpoint")),
        sd_checkpoint_name=_optional_str(data.get("sd_checkpoint_name")),
        sha256=sha256,
    )


def _optional_int(value: Any) -> int | None:
    if isinstance(value, Tensor) and value.numel() == 1:
        return int(value.item())
    return int(value) if isinstance(value, int | float) else None


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def read_embedding(path: Path, *, safe: bool = True, sha256: str | None = None) -> EmbeddingFile | None:
    """Read one embedding file; None for files that are not embeddings (previews, plain images)."""
    path = Path(path)
    suffix = path.suffix.lower()
    name = path.stem
    if suffix in IMAGE_SUFFIXES:
        if is_preview_image(path):
            return None
        try:
            with Image.open(path) as image:
                image.load()
                data = embedding_from_image(image)
        except (UnidentifiedImageError, OSError) as exc:
            raise InvalidModelFile(f"{path.name}: unreadable image ({exc})") from None
        except ValueError as exc:
            raise InvalidModelFile(f"{path.name}: damaged embedding data in image ({exc})") from None
        if data is None:
            return None
        name = str(data.get("name") or name)
    elif suffix == ".safetensors":
        try:
            data = safetensors.torch.load_file(str(path), device="cpu")
        except (safetensors.SafetensorError, OSError, ValueError) as exc:
            raise InvalidModelFile(f"{path.name}: damaged safetensors file ({exc})") from None
    elif suffix in PICKLE_SUFFIXES:
        data = load_pickle(path, safe=safe)
    else:
        return None
    return embedding_from_data(data, name, path, sha256)


# --------------------------------------------------------------------------------------------
# per-model database


def encoder_keys(family: ModelFamily) -> tuple[str, ...]:
    """Textual-inversion vector keys of a family's text encoders (as the conditioner names them)."""
    if is_refiner(family):
        return ("clip_g",)
    if is_sdxl(family):
        return ("clip_l", "clip_g")
    if is_sd2(family):
        return ("clip_h",)
    return ("clip_l",)


def encoder_widths(family: ModelFamily, text_encoders: Sequence[torch.nn.Module]) -> dict[str, int]:
    keys = encoder_keys(family)
    if len(keys) != len(text_encoders):
        raise ValueError(f"a {family.value} model needs {len(keys)} text encoder(s), got {len(text_encoders)}")
    widths = {}
    for key, encoder in zip(keys, text_encoders, strict=True):
        embedding = encoder.get_input_embeddings()  # type: ignore[operator]
        widths[key] = int(embedding.weight.shape[1])
    return widths


def _mismatch(file: EmbeddingFile, widths: Mapping[str, int]) -> str | None:
    needed = " + ".join(f"{k} {w}" for k, w in widths.items())
    if isinstance(file.vectors, Tensor):
        if len(widths) == 1 and file.width == next(iter(widths.values())):
            return None
    elif set(file.vectors) == set(widths) and all(int(file.vectors[k].shape[-1]) == w for k, w in widths.items()):
        return None  # like A1111, which compares the summed width: an SDXL file does not serve SD1 or the refiner
    return f"made for {file.made_for} ({file.width}-wide vectors); this model needs {needed}"


@dataclass(frozen=True)
class SkippedEmbedding:
    file: EmbeddingFile
    reason: str


class EmbeddingDatabase:
    """The embeddings usable with one model; finds them in prompt tokens (A1111 EmbeddingDatabase).

    Names are tokenized with the model's tokenizer; at each prompt position the longest
    registered token sequence wins. A later file with the same name replaces an earlier one.
    """

    def __init__(self, files: Iterable[EmbeddingFile], tokenizer: Any, widths: Mapping[str, int]) -> None:
        self.widths = dict(widths)
        self.loaded: dict[str, EmbeddingFile] = {}
        self.skipped: dict[str, SkippedEmbedding] = {}
        self._matches: dict[str, tuple[tuple[int, ...], EmbeddingMatch]] = {}
        for file in files:
            self._register(file, tokenizer)
        self._by_first_token: dict[int, list[tuple[tuple[int, ...], EmbeddingMatch]]] = {}
        for ids, match in self._matches.values():
            self._by_first_token.setdefault(ids[0], []).append((ids, match))
        for candidates in self._by_first_token.values():
            candidates.sort(key=lambda item: len(item[0]), reverse=True)
        self.loaded = dict(sorted(self.loaded.items(), key=lambda item: item[0].lower()))

    def _register(self, file: EmbeddingFile, tokenizer: Any) -> None:
        reason = _mismatch(file, self.widths)
        ids = tuple(tokenizer(file.name, truncation=False, add_special_tokens=False)["input_ids"])
        if reason is None and not ids:
            reason = "its name gives no tokens"
        match: EmbeddingMatch | None = None
        if reason is None:
            try:
                match = EmbeddingMatch(file.name, len(ids), file.vectors)
            except ValueError as exc:
                reason = str(exc)
        if match is None:  # an earlier usable file of that name stays loaded (A1111)
            self.skipped[file.name] = SkippedEmbedding(file, reason or "unusable")
            return
        self.loaded[file.name] = file
        self._matches[file.name] = (ids, match)

    def find_at(self, token_ids: Sequence[int], position: int) -> EmbeddingMatch | None:
        for ids, match in self._by_first_token.get(token_ids[position], ()):
            if tuple(token_ids[position : position + len(ids)]) == ids:
                return match
        return None

    def hashes_infotext(self, names: Iterable[str]) -> str | None:
        """A1111's "TI hashes" value for the embeddings used ("name: hash, ..."), None if none is hashed."""
        parts = []
        for name in dict.fromkeys(names):
            file = self.loaded.get(name)
            if file is None or not file.shorthash:
                continue
            parts.append(f"{name.replace(':', '').replace(',', '')}: {file.shorthash}")
        return ", ".join(parts) or None

    def api_listing(self) -> dict[str, dict[str, dict[str, Any]]]:
        """/sdapi/v1/embeddings: {"loaded": {name: {...}}, "skipped": {name: {...}}}."""
        return {
            "loaded": {name: file.api_entry() for name, file in self.loaded.items()},
            "skipped": {name: entry.file.api_entry() for name, entry in self.skipped.items()},
        }
