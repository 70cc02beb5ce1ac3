"""Prompt -> 75-token chunks with per-token weights, as A1111's FrozenCLIPEmbedderWithCustomWords does.

Each chunk is BOS + 75 tokens + EOS (77 positions), padded with EOS; a cut moves back to just after
the last comma if that comma is within `comma_padding_backtrack` tokens of the limit; BREAK starts a
new chunk; a textual-inversion embedding is never split across chunks (it moves to the next one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from modules.generation.prompt_parser import (
    BREAK_SPAN_TEXT,
    BREAK_SPAN_WEIGHT,
    AttentionSpan,
    parse_prompt_attention,
)
from modules.networks.types import CHUNK_LENGTH, EmbeddingMatch

if TYPE_CHECKING:  # transformers costs ~1 s at import; the server starts without it
    from transformers import PreTrainedTokenizerBase

EMBEDDING_PLACEHOLDER_ID = 0  # token id written where embedding vectors go (A1111 uses 0 too)


class EmphasisMode(StrEnum):
    """A1111's `emphasis` setting."""

    NONE = "None"  # brackets are literal text: no attention parsing (and no BREAK)
    IGNORE = "Ignore"  # brackets parsed, weights dropped
    ORIGINAL = "Original"  # scale hidden states, then restore the original mean
    NO_NORM = "No norm"  # scale hidden states only

    @classmethod
    def parse(cls, value: str | EmphasisMode) -> EmphasisMode:
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(repr(mode.value) for mode in cls)
            raise ValueError(f"unknown emphasis mode {value!r}; expected one of {names}") from None


class EmbeddingLookup(Protocol):
    """Textual-inversion hook (implemented by the networks code).

    Given the token ids of one prompt piece and a position in it, return the embedding whose name
    starts there, or None.
    """

    def find_at(self, token_ids: Sequence[int], position: int) -> EmbeddingMatch | None: ...


@dataclass(frozen=True)
class EmbeddingFix:
    position: int  # index in the 77-token sequence where the embedding's first vector goes
    embedding: EmbeddingMatch


@dataclass(frozen=True)
class PromptChunk:
    tokens: tuple[int, ...]  # BOS + 75 + EOS, padded with EOS
    multipliers: tuple[float, ...]  # one per token; 1.0 for BOS/EOS/padding
    fixes: tuple[EmbeddingFix, ...] = ()


@dataclass(frozen=True)
class TokenizedPrompt:
    chunks: tuple[PromptChunk, ...]
    token_count: int  # prompt tokens (embedding vectors count one each), as A1111 counts them


@dataclass(frozen=True)
class TokenCount:
    """What the UI's token counter shows: `count`/`limit`, e.g. 76/150."""

    count: int
    limit: int


def token_limit(token_count: int) -> int:
    """The token count at which one more chunk is needed (75, 150, ...)."""
    return math.ceil(max(token_count, 1) / CHUNK_LENGTH) * CHUNK_LENGTH


@dataclass
class _ChunkBuilder:
    """Mutable state of one tokenize pass; produces the finished chunks."""

    bos: int
    eos: int
    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)
    fixes: list[EmbeddingFix] = field(default_factory=list)
    last_comma: int = -1
    chunks: list[PromptChunk] = field(default_factory=list)
    token_count: int = 0

    def finish_chunk(self, *, is_last: bool = False) -> None:
        # The last chunk counts only its real tokens; the others count as full.
        self.token_count += len(self.tokens) if is_last else CHUNK_LENGTH
        padding = CHUNK_LENGTH - len(self.tokens)
        tokens = [self.bos, *self.tokens, *([self.eos] * max(padding, 0)), self.eos]
        multipliers = [1.0, *self.multipliers, *([1.0] * max(padding, 0)), 1.0]
        self.chunks.append(PromptChunk(tuple(tokens), tuple(multipliers), tuple(self.fixes)))
        self.tokens, self.multipliers, self.fixes = [], [], []
        self.last_comma = -1

    def backtrack_to_last_comma(self) -> None:
        """Move the tokens after the last comma into a new chunk."""
        cut = self.last_comma + 1
        moved_tokens, moved_multipliers = self.tokens[cut:], self.multipliers[cut:]
        self.tokens, self.multipliers = self.tokens[:cut], self.multipliers[:cut]
        self.finish_chunk()
        self.tokens, self.multipliers = moved_tokens, moved_multipliers


class PromptChunker:
    """Turns prompt text into PromptChunks for one CLIP tokenizer (A1111's tokenize_line rules)."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        emphasis: str | EmphasisMode = EmphasisMode.ORIGINAL,
        comma_padding_backtrack: int = 20,
        embeddings: EmbeddingLookup | None = None,
    ) -> None:
        if comma_padding_backtrack < 0:
            raise ValueError(f"comma_padding_backtrack must be >= 0, got {comma_padding_backtrack}")
        self.tokenizer = tokenizer
        self.emphasis = EmphasisMode.parse(emphasis)
        self.comma_padding_backtrack = comma_padding_backtrack
        self.embeddings = embeddings
        if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer needs BOS and EOS tokens (a CLIP tokenizer)")
        self.bos_id = int(tokenizer.bos_token_id)
        self.eos_id = int(tokenizer.eos_token_id)
        comma = tokenizer.convert_tokens_to_ids(",</w>")  # cheaper than get_vocab() (49k entries)
        self.comma_id = comma if isinstance(comma, int) and comma != tokenizer.unk_token_id else None

    def empty_chunk(self) -> PromptChunk:
        """The chunk that pads a shorter prompt in a batch: BOS then EOS everywhere."""
        return PromptChunk(
            (self.bos_id, *([self.eos_id] * (CHUNK_LENGTH + 1))),
            tuple([1.0] * (CHUNK_LENGTH + 2)),
        )

    def attention_spans(self, prompt: str) -> list[AttentionSpan]:
        if self.emphasis is EmphasisMode.NONE:
            return [AttentionSpan(prompt, 1.0)]
        return parse_prompt_attention(prompt)

    def tokenize_prompt(self, prompt: str) -> TokenizedPrompt:
        spans = self.attention_spans(prompt)
        token_lists = self.tokenizer(
            [span.text for span in spans], truncation=False, add_special_tokens=False, verbose=False
        )["input_ids"]
        builder = _ChunkBuilder(self.bos_id, self.eos_id)
        for tokens, span in zip(token_lists, spans, strict=True):
            if span.text == BREAK_SPAN_TEXT and span.weight == BREAK_SPAN_WEIGHT:
                builder.finish_chunk()
                continue
            self._add_span_tokens(builder, list(tokens), span.weight)
        if builder.tokens or not builder.chunks:
            builder.finish_chunk(is_last=True)
        return TokenizedPrompt(tuple(builder.chunks), builder.token_count)

    def token_count(self, prompt: str) -> TokenCount:
        count = self.tokenize_prompt(prompt).token_count
        return TokenCount(count, token_limit(count))

    def _add_span_tokens(self, builder: _ChunkBuilder, tokens: list[int], weight: float) -> None:
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == self.comma_id:
                builder.last_comma = len(builder.tokens)
            elif self._should_backtrack(builder):
                builder.backtrack_to_last_comma()
            if len(builder.tokens) == CHUNK_LENGTH:
                builder.finish_chunk()

            match = self.embeddings.find_at(tokens, position) if self.embeddings is not None else None
            if match is None:
                builder.tokens.append(token)
                builder.multipliers.append(weight)
                position += 1
                continue

            count = match.vector_count
            if len(builder.tokens) + count > CHUNK_LENGTH:
                builder.finish_chunk()  # an embedding is never split between chunks
            builder.fixes.append(EmbeddingFix(len(builder.tokens) + 1, match))  # +1: BOS comes first
            builder.tokens.extend([EMBEDDING_PLACEHOLDER_ID] * count)
            builder.multipliers.extend([weight] * count)
            position += match.token_length

    def _should_backtrack(self, builder: _ChunkBuilder) -> bool:
        return (
            self.comma_padding_backtrack != 0
            and len(builder.tokens) == CHUNK_LENGTH
            and builder.last_comma != -1
            and len(builder.tokens) - builder.last_comma <= self.comma_padding_backtrack
        )
