"""A1111's `modules.sd_hijack` for extensions: `model_hijack`.

Offered: `model_hijack.embedding_db` (the embeddings folder: word_embeddings by name with
A1111's Embedding attributes, skipped_embeddings, load_textual_inversion_embeddings),
`get_prompt_lengths(text)` (token count, limit), `layers` (every module of the loaded model's ldm
tree), and the optimizations extensions register (on_list_optimizers): `apply_optimizations(name)`
applies one (its apply() patches the ldm classes generation runs through), `undo_optimizations()`
takes it back. hijack()/undo_hijack() do nothing: the ldm-shaped model needs no hijack.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch

from modules.extension_host.facade import Lazy, current

__all__ = ["Embedding", "EmbeddingDatabase", "model_hijack"]


class Embedding:
    """A1111's textual_inversion.Embedding view of one of our embedding files."""

    def __init__(self, file: Any):
        self.name = file.name
        self.filename = str(file.path)
        self.vec = file.vectors
        self.step = file.step
        self.sd_checkpoint = file.sd_checkpoint
        self.sd_checkpoint_name = file.sd_checkpoint_name
        self.hash = file.sha256
        self.shorthash = file.sha256[:10] if file.sha256 else None
        self.vectors = file.vector_count
        # A1111: the width of one vector; SDXL (two encoders) adds them up: 768 / 1024 / 2048
        if isinstance(file.vectors, dict):
            self.shape = sum(int(v.shape[-1]) for v in file.vectors.values())
        else:
            self.shape = int(file.vectors.shape[-1])
        self.cached_checksum = None


class EmbeddingDatabase:
    """The embeddings folder as A1111's EmbeddingDatabase shows it (all files readable here
    are in word_embeddings; the ones that fail to load are in skipped_embeddings)."""

    def __init__(self, services: Any):
        self._services = services

    def _scan(self) -> Any:
        return self._services.networks.embeddings()

    @property
    def word_embeddings(self) -> dict[str, Embedding]:
        scan = self._scan()
        return {f.name: Embedding(f) for f in scan.files} if scan is not None else {}

    @property
    def skipped_embeddings(self) -> dict[str, str]:
        scan = self._scan()
        return {Path(p).stem: reason for p, reason in scan.errors.items()} if scan is not None else {}

    @property
    def embedding_dirs(self) -> dict[str, Any]:
        return {str(self._services.paths.embeddings_dir): None}

    def load_textual_inversion_embeddings(self, force_reload: bool = False, sync_with_sd_model: bool = True) -> None:
        """The folder is re-read whenever it is looked at; nothing to do."""


class _TokenCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chunker: Any = None

    def chunker(self, cache_dir: Path) -> Any:
        from modules.generation.chunking import PromptChunker
        from modules.models.tokenizer import load_clip_tokenizer

        with self._lock:
            if self._chunker is None:
                self._chunker = PromptChunker(load_clip_tokenizer(cache_dir / "tokenizers"))
            return self._chunker


class ModelHijack:
    """A1111's `sd_hijack.model_hijack` (StableDiffusionModelHijack), read-only parts."""

    fixes: Any = None
    circular_enabled = False
    clip: Any = None

    def __init__(self, host: Any):
        self._host = host
        self.comments: list[str] = []

    @property
    def embedding_db(self) -> EmbeddingDatabase:
        return EmbeddingDatabase(self._host.services)

    @property
    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = self._host.__dict__.setdefault("_a1111_hijack_state", {})
        return state

    @property
    def optimization_method(self) -> str | None:  # type: ignore[override]
        current = self._state.get("optimization")
        return None if current is None else str(current.name)

    @property
    def layers(self) -> list[Any] | None:  # type: ignore[override]
        loaded = self._host.services.models.active
        if loaded is None:
            return None
        model = self._host.sd_model()
        root = getattr(model, "model", None)
        return list(root.modules()) if isinstance(root, torch.nn.Module) else None

    def hijack(self, m: Any = None) -> None:
        """Nothing to do: the model is ldm-shaped already."""

    def undo_hijack(self, m: Any = None) -> None:
        """See hijack()."""

    def apply_optimizations(self, option: str | None = None) -> str | None:
        """Apply the extension optimization named `option` (its name or title); without a match the
        built-in attention setting stays in force. Returns the name applied."""
        self.undo_optimizations()
        found = [o for o in self._host.callbacks.list_optimizers() if o.is_available()]
        found.sort(key=lambda o: -o.priority)
        wanted = option if option is not None else str(self._host.opts.cross_attention_optimization)
        chosen = next((o for o in found if wanted in (o.name, o.title())), None)
        if chosen is None:
            return None
        chosen.apply()
        self._state["optimization"] = chosen
        return str(chosen.name)

    def undo_optimizations(self) -> None:
        current = self._state.pop("optimization", None)
        if current is not None:
            current.undo()

    def get_prompt_lengths(self, text: str, cond_stage_model: Any = None) -> tuple[int, int]:
        """(tokens used, the limit they fill: 75, 150, ...) on the offline CLIP tokenizer."""
        counter = self._host.__dict__.setdefault("_a1111_token_counter", _TokenCounter())
        count = counter.chunker(self._host.services.paths.cache_dir).token_count(text)
        return count.count, count.limit


model_hijack = Lazy(lambda: ModelHijack(current()))
