"""Text conditioning the A1111 way, on transformers' CLIP text encoders.

`TextConditioner` encodes prompts chunk by chunk (see chunking.py), applies emphasis and clip
skip per model family, and returns `Conditioning` (cross-attention context and, for SDXL, the
pooled embedding). Which hidden state A1111 uses:

- SD1: clip skip n -> final_layer_norm(hidden_states[-n]); n = 1 is last_hidden_state.
- SD2: OpenCLIP's penultimate layer + final norm, always (A1111 ignores clip skip for SD2).
  diffusers' SD2 text encoder already has 23 of OpenCLIP's 24 layers, so that is its
  last_hidden_state.
- SDXL: both encoders use the penultimate layer without the final norm (hidden_states[-2],
  as diffusers' SDXL pipeline does); with A1111's `sdxl_clip_l_skip` the CLIP-L encoder uses
  hidden_states[-n] instead. Context = concat(CLIP-L, CLIP-G) along features; pooled = CLIP-G's
  text_embeds of the first chunk. The refiner has only CLIP-G.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from modules.generation.chunking import (
    EmbeddingFix,
    EmbeddingLookup,
    EmbeddingMatch,
    EmphasisMode,
    PromptChunk,
    PromptChunker,
    TokenCount,
    TokenizedPrompt,
)
from modules.generation.prompt_parser import (
    get_learned_conditioning_prompt_schedules,
    get_multicond_prompt_list,
    parse_extra_network_tags,
    strip_comments,
)

if TYPE_CHECKING:  # transformers costs ~1 s at import; the server starts without it
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Conditioning:
    context: torch.Tensor  # [B, 77*k, D] float
    pooled: torch.Tensor | None = None  # [B, P] float (SDXL), else None

    @property
    def batch_size(self) -> int:
        return int(self.context.shape[0])

    @property
    def token_length(self) -> int:
        return int(self.context.shape[1])

    def rows(self, index: torch.Tensor | Sequence[int]) -> Conditioning:
        index_tensor = torch.as_tensor(index, dtype=torch.long, device=self.context.device)
        pooled = None if self.pooled is None else self.pooled.index_select(0, index_tensor.to(self.pooled.device))
        return Conditioning(self.context.index_select(0, index_tensor), pooled)


@dataclass(frozen=True)
class _HiddenLayer:
    """Which hidden state an encoder contributes: hidden_states[-from_end], optionally final-normed."""

    from_end: int
    final_norm: bool

    @property
    def is_last_hidden_state(self) -> bool:
        return self.from_end == 1 and self.final_norm


@dataclass(frozen=True)
class _EncoderSlot:
    key: str  # textual-inversion vectors key: clip_l / clip_h / clip_g
    tokenizer: PreTrainedTokenizerBase
    encoder: torch.nn.Module
    layer: _HiddenLayer
    gives_pooled: bool


class TextConditioner:
    """Encodes prompts for one model's text encoder(s). Stateless between calls; never changes the model."""

    def __init__(
        self,
        tokenizers: Sequence[PreTrainedTokenizerBase],
        text_encoders: Sequence[torch.nn.Module],
        *,
        family_is_sdxl: bool = False,
        is_refiner: bool = False,
        family_is_sd2: bool = False,
        clip_skip: int = 1,
        emphasis: str | EmphasisMode = EmphasisMode.ORIGINAL,
        comma_padding_backtrack: int = 20,
        embeddings: EmbeddingLookup | None = None,
        sdxl_clip_l_skip: bool = False,
    ) -> None:
        if clip_skip < 1:
            raise ValueError(f"clip_skip must be >= 1, got {clip_skip}")
        if len(tokenizers) != len(text_encoders):
            raise ValueError(f"got {len(tokenizers)} tokenizers for {len(text_encoders)} text encoders")
        self.is_sdxl = family_is_sdxl or is_refiner
        self.emphasis = EmphasisMode.parse(emphasis)
        self.slots = _encoder_slots(
            list(tokenizers),
            list(text_encoders),
            family_is_sdxl=family_is_sdxl,
            is_refiner=is_refiner,
            family_is_sd2=family_is_sd2,
            clip_skip=clip_skip,
            sdxl_clip_l_skip=sdxl_clip_l_skip,
        )
        # SDXL's two tokenizers share CLIP's BPE, so one chunking serves both (pad ids differ).
        self.chunker = PromptChunker(
            self.slots[0].tokenizer,
            emphasis=self.emphasis,
            comma_padding_backtrack=comma_padding_backtrack,
            embeddings=embeddings,
        )

    @property
    def device(self) -> torch.device:
        return _module_device(self.slots[0].encoder)

    def token_count(self, prompt: str) -> TokenCount:
        """Tokens in the prompt and the current chunk limit, for the UI counter ("n/75")."""
        return self.chunker.token_count(prompt)

    def encode(self, prompts: Sequence[str], *, is_negative_prompt: bool = False) -> Conditioning:
        """Encode prompts as one A1111 batch: shorter prompts are padded with empty chunks.

        'Original' emphasis restores the mean over the whole batch, as A1111 does, so the batch
        (with its repeats) matters; A1111 encodes the schedule texts of one prompt together.
        For SDXL an all-empty negative prompt gives zeros (A1111's force_zero_embeddings).
        """
        if not prompts:
            raise ValueError("encode needs at least one prompt")
        unique = list(dict.fromkeys(prompts))
        repeats = torch.tensor([prompts.count(text) for text in unique], dtype=torch.float32)
        tokenized = [self.chunker.tokenize_prompt(text) for text in unique]
        with torch.no_grad():
            result = self._encode_unique(tokenized, repeats)
        order = [unique.index(text) for text in prompts]
        result = result.rows(order)
        if self.is_sdxl and is_negative_prompt and all(text == "" for text in prompts):
            pooled = None if result.pooled is None else torch.zeros_like(result.pooled)
            result = Conditioning(torch.zeros_like(result.context), pooled)
        return result

    def encode_ids(self, tokens: torch.Tensor, slot: int = 0) -> torch.Tensor:
        """Hidden states of raw token ids [B, 77] from one text encoder at the layer prompts use
        (clip skip): A1111's encode_with_transformers, for extensions."""
        chosen = self.slots[slot]
        device = _module_device(chosen.encoder)
        with torch.no_grad():
            output = chosen.encoder(
                input_ids=tokens.to(device), output_hidden_states=not chosen.layer.is_last_hidden_state
            )
        return _select_hidden(chosen.encoder, output, chosen.layer).float()

    def embeddings_used(self, prompts: Sequence[str]) -> dict[str, EmbeddingMatch]:
        """Textual-inversion embeddings these prompts use, by name (for the infotext's "TI hashes")."""
        used: dict[str, EmbeddingMatch] = {}
        for text in dict.fromkeys(prompts):
            for chunk in self.chunker.tokenize_prompt(text).chunks:
                used.update((fix.embedding.name, fix.embedding) for fix in chunk.fixes)
        return used

    def _encode_unique(self, tokenized: list[TokenizedPrompt], repeats: torch.Tensor) -> Conditioning:
        chunk_count = max(len(t.chunks) for t in tokenized)
        empty = self.chunker.empty_chunk()
        contexts: list[torch.Tensor] = []
        pooled: torch.Tensor | None = None
        for index in range(chunk_count):
            batch = [t.chunks[index] if index < len(t.chunks) else empty for t in tokenized]
            parts: list[torch.Tensor] = []
            for slot in self.slots:
                hidden, slot_pooled = self._encode_chunk(slot, batch)
                parts.append(_apply_emphasis(self.emphasis, hidden, batch, repeats))
                if index == 0 and slot_pooled is not None:
                    pooled = slot_pooled.float()
            device = parts[0].device
            contexts.append(torch.cat([part.to(device) for part in parts], dim=-1))
        context = torch.cat(contexts, dim=1)
        return Conditioning(context, None if pooled is None else pooled.to(context.device))

    def _encode_chunk(self, slot: _EncoderSlot, batch: list[PromptChunk]) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = _module_device(slot.encoder)
        input_ids = _padded_ids(batch, slot.tokenizer).to(device)
        with _embedding_fixes(slot.encoder, [chunk.fixes for chunk in batch], slot.key):
            output = slot.encoder(input_ids=input_ids, output_hidden_states=not slot.layer.is_last_hidden_state)
        hidden = _select_hidden(slot.encoder, output, slot.layer)
        pooled = output.text_embeds if slot.gives_pooled else None
        return hidden.float(), pooled


def _encoder_slots(
    tokenizers: list[PreTrainedTokenizerBase],
    encoders: list[torch.nn.Module],
    *,
    family_is_sdxl: bool,
    is_refiner: bool,
    family_is_sd2: bool,
    clip_skip: int,
    sdxl_clip_l_skip: bool,
) -> list[_EncoderSlot]:
    penultimate = _HiddenLayer(2, final_norm=False)
    if is_refiner:
        _expect_count(encoders, 1, "an SDXL refiner (CLIP-G only)")
        return [_EncoderSlot("clip_g", tokenizers[0], _with_projection(encoders[0], "refiner"), penultimate, True)]
    if family_is_sdxl:
        _expect_count(encoders, 2, "SDXL (CLIP-L and CLIP-G)")
        clip_l_layer = _HiddenLayer(clip_skip, final_norm=False) if sdxl_clip_l_skip else penultimate
        _check_layer_exists(encoders[0], clip_l_layer)
        clip_g = _with_projection(encoders[1], "SDXL's second")
        return [
            _EncoderSlot("clip_l", tokenizers[0], encoders[0], clip_l_layer, False),
            _EncoderSlot("clip_g", tokenizers[1], clip_g, penultimate, True),
        ]
    _expect_count(encoders, 1, "SD1/SD2")
    if family_is_sd2:
        return [_EncoderSlot("clip_h", tokenizers[0], encoders[0], _HiddenLayer(1, final_norm=True), False)]
    layer = _HiddenLayer(clip_skip, final_norm=True)
    _check_layer_exists(encoders[0], layer)
    return [_EncoderSlot("clip_l", tokenizers[0], encoders[0], layer, False)]


def _expect_count(encoders: list[torch.nn.Module], count: int, what: str) -> None:
    if len(encoders) != count:
        raise ValueError(f"{what} needs {count} text encoder(s), got {len(encoders)}")


def _with_projection(encoder: torch.nn.Module, what: str) -> torch.nn.Module:
    if not hasattr(encoder, "text_projection"):
        raise ValueError(f"{what} text encoder must be a CLIPTextModelWithProjection (it gives the pooled output)")
    return encoder


def _check_layer_exists(encoder: torch.nn.Module, layer: _HiddenLayer) -> None:
    layers = int(getattr(getattr(encoder, "config", None), "num_hidden_layers", 0) or 0)
    if layers and layer.from_end > layers:
        raise ValueError(f"clip skip {layer.from_end} is more than the text encoder's {layers} layers")


def _module_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def _padded_ids(batch: list[PromptChunk], tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Token ids; after each row's first EOS the tokenizer's pad id follows (0 for OpenCLIP/SDXL's CLIP-G)."""
    ids = torch.tensor([chunk.tokens for chunk in batch], dtype=torch.long)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if pad is None or pad == eos:
        return ids
    for row, chunk in enumerate(batch):
        first_eos = chunk.tokens.index(eos)
        ids[row, first_eos + 1 :] = pad
    return ids


def _select_hidden(encoder: torch.nn.Module, output: Any, layer: _HiddenLayer) -> torch.Tensor:
    if layer.is_last_hidden_state:
        return output.last_hidden_state
    hidden = output.hidden_states[-layer.from_end]
    if layer.final_norm:
        text_model: Any = getattr(encoder, "text_model", encoder)
        hidden = text_model.final_layer_norm(hidden)
    return hidden


@contextmanager
def _embedding_fixes(encoder: torch.nn.Module, rows: list[tuple[EmbeddingFix, ...]], key: str) -> Iterator[None]:
    """Put textual-inversion vectors into the token embeddings for one forward call.

    A forward hook on the token embedding layer, removed afterwards: the model is never changed.
    """
    if not any(rows):
        yield
        return

    def replace_rows(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        for row, fixes in enumerate(rows):
            for fix in fixes:
                vectors = fix.embedding.vectors_for(key)
                if vectors.shape[-1] != output.shape[-1]:
                    raise ValueError(
                        f"embedding {fix.embedding.name!r} has {vectors.shape[-1]}-wide vectors; "
                        f"this text encoder ({key}) needs {output.shape[-1]}"
                    )
                count = min(output.shape[1] - fix.position, vectors.shape[0])
                output[row, fix.position : fix.position + count] = vectors[:count].to(output.device, output.dtype)
        return output

    token_embedding: torch.nn.Module = encoder.get_input_embeddings()  # type: ignore[operator]
    handle = token_embedding.register_forward_hook(replace_rows)
    try:
        yield
    finally:
        handle.remove()


def _apply_emphasis(
    mode: EmphasisMode, hidden: torch.Tensor, batch: list[PromptChunk], repeats: torch.Tensor
) -> torch.Tensor:
    """Scale each token's hidden state by its weight ('Original' then restores the batch mean)."""
    if mode in (EmphasisMode.NONE, EmphasisMode.IGNORE):
        return hidden
    multipliers = torch.tensor([chunk.multipliers for chunk in batch], dtype=hidden.dtype, device=hidden.device)
    weighted = hidden * multipliers.unsqueeze(-1)
    if mode is EmphasisMode.NO_NORM:
        return weighted
    # Mean over the whole batch as A1111 sees it: each distinct prompt counted as often as it repeats.
    repeats = repeats.to(hidden.device, hidden.dtype).view(-1, 1, 1)
    original_mean = (hidden * repeats).sum() / (repeats.sum() * hidden[0].numel())
    new_mean = (weighted * repeats).sum() / (repeats.sum() * hidden[0].numel())
    if new_mean == 0:  # nothing to restore (and no 0/0 NaN): keep the weighted states
        return weighted
    return weighted * (original_mean / new_mean)


# --------------------------------------------------------------------------------------------
# Prompt-editing schedules and AND (composable diffusion) for sampling


@dataclass(frozen=True)
class ScheduledConditioning:
    """One prompt's conditioning over the sampling steps (from its prompt-editing schedule)."""

    end_at_steps: tuple[int, ...]
    conds: tuple[Conditioning, ...]  # each with batch size 1

    def at_step(self, step: int) -> Conditioning:
        """A1111's rule: the first entry with step <= end_at_step, else the first entry.

        `step` is the sampler's step counter as A1111 passes it (0 for the first step).
        """
        for end_at_step, cond in zip(self.end_at_steps, self.conds, strict=True):
            if step <= end_at_step:
                return cond
        return self.conds[0]


@dataclass(frozen=True)
class WeightedSchedule:
    schedule: ScheduledConditioning
    weight: float


@dataclass(frozen=True)
class StackedConds:
    """Positive conds for one step: all AND parts of all images stacked, and who uses which row."""

    cond: Conditioning  # [N, T, D]; shorter contexts padded by repeating their last token
    weights: tuple[tuple[tuple[int, float], ...], ...]  # per image: (row in cond, weight)


@dataclass(frozen=True)
class MultiCondConditioning:
    per_image: tuple[tuple[WeightedSchedule, ...], ...]

    def at_step(self, step: int) -> StackedConds:
        conds: list[Conditioning] = []
        weights: list[tuple[tuple[int, float], ...]] = []
        for parts in self.per_image:
            image_weights = []
            for part in parts:
                image_weights.append((len(conds), part.weight))
                conds.append(part.schedule.at_step(step))
            weights.append(tuple(image_weights))
        return StackedConds(stack_conditionings(conds), tuple(weights))


@dataclass(frozen=True)
class CfgStepConds:
    """Everything a CFG denoiser needs at one step."""

    cond: Conditioning
    cond_weights: tuple[tuple[tuple[int, float], ...], ...]
    uncond: Conditioning  # [B, T', D]


@dataclass(frozen=True)
class PromptConditioning:
    positive: MultiCondConditioning
    negative: tuple[ScheduledConditioning, ...]

    def at_step(self, step: int) -> CfgStepConds:
        stacked = self.positive.at_step(step)
        uncond = stack_conditionings([schedule.at_step(step) for schedule in self.negative])
        return CfgStepConds(stacked.cond, stacked.weights, uncond)


def stack_conditionings(conds: Sequence[Conditioning]) -> Conditioning:
    """Concatenate along the batch; contexts of different lengths are padded by repeating their last token."""
    if not conds:
        raise ValueError("nothing to stack")
    length = max(cond.token_length for cond in conds)
    contexts = [repeat_last_token(cond.context, length) for cond in conds]
    pooled_parts = [cond.pooled for cond in conds]
    if all(p is not None for p in pooled_parts):
        pooled = torch.cat([p for p in pooled_parts if p is not None], dim=0)
    elif any(p is not None for p in pooled_parts):
        raise ValueError("cannot stack conditionings with and without pooled outputs")
    else:
        pooled = None
    return Conditioning(torch.cat(contexts, dim=0), pooled)


def repeat_last_token(context: torch.Tensor, length: int) -> torch.Tensor:
    """A1111's stack_conds padding: extend [B, T, D] to `length` tokens by repeating the last one."""
    missing = length - context.shape[1]
    if missing <= 0:
        return context
    return torch.cat([context, context[:, -1:].expand(-1, missing, -1)], dim=1)


def pad_with_empty_chunks(context: torch.Tensor, length: int, empty_context: torch.Tensor) -> torch.Tensor:
    """A1111's pad_cond_uncond: append encodings of "" ([1, 77, D]) until `length` tokens."""
    missing = length - context.shape[1]
    if missing <= 0:
        return context
    if missing % empty_context.shape[1]:
        raise ValueError(f"cannot pad {context.shape[1]} tokens to {length} with {empty_context.shape[1]}-token chunks")
    repeats = missing // empty_context.shape[1]
    filler = empty_context.to(context.device, context.dtype).repeat(context.shape[0], repeats, 1)
    return torch.cat([context, filler], dim=1)


def build_scheduled_conditionings(
    conditioner: TextConditioner,
    prompts: Sequence[str],
    *,
    steps: int,
    hires_steps: int | None = None,
    use_old_scheduling: bool = False,
    is_negative_prompt: bool = False,
) -> list[ScheduledConditioning]:
    """Per prompt its scheduled conditioning; equal prompts share one. A prompt's schedule texts are
    encoded together in one batch, as A1111's get_learned_conditioning does."""
    schedules = get_learned_conditioning_prompt_schedules(prompts, steps, hires_steps, use_old_scheduling)
    cache: dict[str, ScheduledConditioning] = {}
    result: list[ScheduledConditioning] = []
    for prompt, schedule in zip(prompts, schedules, strict=True):
        if prompt not in cache:
            encoded = conditioner.encode([entry.text for entry in schedule], is_negative_prompt=is_negative_prompt)
            conds = tuple(encoded.rows([i]) for i in range(len(schedule)))
            cache[prompt] = ScheduledConditioning(tuple(entry.end_at_step for entry in schedule), conds)
        result.append(cache[prompt])
    return result


def build_multicond(
    conditioner: TextConditioner,
    prompts: Sequence[str],
    *,
    steps: int,
    hires_steps: int | None = None,
    use_old_scheduling: bool = False,
) -> MultiCondConditioning:
    """Positive prompts: split on AND (with ':weight'), each part scheduled and encoded once."""
    multicond = get_multicond_prompt_list(prompts)
    flat = build_scheduled_conditionings(
        conditioner,
        multicond.flat_prompts,
        steps=steps,
        hires_steps=hires_steps,
        use_old_scheduling=use_old_scheduling,
    )
    return MultiCondConditioning(
        tuple(
            tuple(WeightedSchedule(flat[ref.flat_index], ref.weight) for ref in refs) for refs in multicond.per_prompt
        )
    )


def build_prompt_conditioning(
    conditioner: TextConditioner,
    prompts: Sequence[str],
    negative_prompts: Sequence[str],
    *,
    steps: int,
    hires_steps: int | None = None,
    use_old_scheduling: bool = False,
) -> PromptConditioning:
    """Positive (with AND) and negative conditioning for one batch of images."""
    if len(prompts) != len(negative_prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(negative_prompts)} negative prompts")
    positive = build_multicond(
        conditioner, prompts, steps=steps, hires_steps=hires_steps, use_old_scheduling=use_old_scheduling
    )
    negative = build_scheduled_conditionings(
        conditioner,
        negative_prompts,
        steps=steps,
        hires_steps=hires_steps,
        use_old_scheduling=use_old_scheduling,
        is_negative_prompt=True,
    )
    return PromptConditioning(positive, tuple(negative))


class CountsTokens(Protocol):
    """A TextConditioner, or a bare PromptChunker (the UI counts before any model is loaded)."""

    def token_count(self, prompt: str) -> TokenCount: ...


def count_prompt_tokens(
    conditioner: CountsTokens,
    prompt: str,
    steps: int,
    *,
    is_positive: bool = True,
    remove_comments: bool = True,
) -> TokenCount:
    """The UI token counter (A1111's update_token_counter): the longest text the prompt can turn into.

    Comments and extra-network tags are removed, positive prompts split on AND, and every text of
    the editing schedule counted. Styles, if they count, must already be applied.
    """
    if remove_comments:
        prompt = strip_comments(prompt)
    text = parse_extra_network_tags(prompt).prompt
    flat = get_multicond_prompt_list([text]).flat_prompts if is_positive else [text]
    schedules = get_learned_conditioning_prompt_schedules(flat, max(1, steps))
    texts = [entry.text for schedule in schedules for entry in schedule]
    counts = [conditioner.token_count(t) for t in texts]
    return max(counts, key=lambda count: count.count)
