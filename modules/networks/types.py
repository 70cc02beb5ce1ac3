"""Types the networks package shares with the generation package above it: a textual-inversion
embedding found in a prompt (made by networks.embeddings, read by generation.chunking) and the
parsed arguments of an extra-network tag (made by generation.prompt_parser, read by
networks.activation). They live here so that generation imports networks and never the reverse."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

CHUNK_LENGTH = 75  # prompt tokens per chunk; the encoder sees BOS + 75 + EOS = 77


@dataclass(frozen=True)
class EmbeddingMatch:
    """A textual-inversion embedding found in the prompt's tokens.

    `vectors` is one [n, dim] tensor used for every encoder, or a mapping from encoder key to
    tensor for models with several encoders (SDXL files hold "clip_l" and "clip_g").
    Encoder keys: SD1 "clip_l", SD2 "clip_h", SDXL "clip_l" + "clip_g", SDXL refiner "clip_g".
    """

    name: str
    token_length: int  # how many prompt tokens spell the embedding's name
    vectors: torch.Tensor | Mapping[str, torch.Tensor]

    def __post_init__(self) -> None:
        if self.token_length < 1:
            raise ValueError(f"embedding {self.name!r}: token_length must be >= 1, got {self.token_length}")
        tensors = [self.vectors] if isinstance(self.vectors, torch.Tensor) else list(self.vectors.values())
        if not tensors or any(t.ndim != 2 for t in tensors):
            raise ValueError(f"embedding {self.name!r}: vectors must be 2-D [n, dim] tensors")
        counts = {t.shape[0] for t in tensors}
        if len(counts) != 1 or 0 in counts:
            raise ValueError(f"embedding {self.name!r}: every encoder needs the same, non-zero vector count")
        if self.vector_count > CHUNK_LENGTH:
            raise ValueError(f"embedding {self.name!r} has {self.vector_count} vectors; at most {CHUNK_LENGTH} fit")

    @property
    def vector_count(self) -> int:
        first = self.vectors if isinstance(self.vectors, torch.Tensor) else next(iter(self.vectors.values()))
        return int(first.shape[0])

    def vectors_for(self, encoder_key: str) -> torch.Tensor:
        if isinstance(self.vectors, torch.Tensor):
            return self.vectors
        if encoder_key not in self.vectors:
            raise ValueError(f"embedding {self.name!r} has no vectors for the {encoder_key} text encoder")
        return self.vectors[encoder_key]


@dataclass(frozen=True)
class ExtraNetworkParams:
    """Arguments of one `<kind:...>` tag: all items, and them split into positional and key=value."""

    items: tuple[str, ...]
    positional: tuple[str, ...]
    named: Mapping[str, str]

    @classmethod
    def from_items(cls, items: Sequence[str]) -> ExtraNetworkParams:
        positional: list[str] = []
        named: dict[str, str] = {}
        for item in items:
            parts = item.split("=", 2)
            if len(parts) == 2:
                named[parts[0]] = parts[1]
            else:
                positional.append(item)
        return cls(tuple(items), tuple(positional), named)
