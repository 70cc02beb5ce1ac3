"""Text conditioning with tiny random CLIP text encoders: chunking, emphasis, clip skip, SDXL, embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, PreTrainedTokenizerBase

from modules.generation.chunking import CHUNK_LENGTH, EmbeddingMatch, PromptChunker, TokenCount
from modules.generation.conditioning import (
    Conditioning,
    TextConditioner,
    build_multicond,
    build_prompt_conditioning,
    build_scheduled_conditionings,
    count_prompt_tokens,
    pad_with_empty_chunks,
    stack_conditionings,
)
from modules.models.tokenizer import load_clip_tokenizer

BOS, EOS, COMMA, CAT, DOG, SKS = 49406, 49407, 267, 2368, 1929, 48136
L_WIDTH, G_WIDTH, PROJECTION = 32, 48, 16
ModelT = TypeVar("ModelT", bound=torch.nn.Module)


def _config(hidden: int, layers: int = 3, projection: int = PROJECTION) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=projection,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=1,
    )


def _seeded(model: ModelT, seed: int) -> ModelT:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer(tokenizer_cache: Path) -> PreTrainedTokenizerBase:
    return load_clip_tokenizer(tokenizer_cache)


@pytest.fixture(scope="module")
def bang_tokenizer(tokenizer_cache: Path) -> PreTrainedTokenizerBase:
    return load_clip_tokenizer(tokenizer_cache, pad_token="!")


@pytest.fixture(scope="module")
def clip_l() -> CLIPTextModel:
    return _seeded(CLIPTextModel(_config(L_WIDTH)), 1)


@pytest.fixture(scope="module")
def clip_g() -> CLIPTextModelWithProjection:
    return _seeded(CLIPTextModelWithProjection(_config(G_WIDTH)), 2)


@pytest.fixture(scope="module")
def sd1(tokenizer: PreTrainedTokenizerBase, clip_l: CLIPTextModel) -> TextConditioner:
    return TextConditioner([tokenizer], [clip_l])


def _sd1(tokenizer: PreTrainedTokenizerBase, encoder: torch.nn.Module, **kwargs: Any) -> TextConditioner:
    return TextConditioner([tokenizer], [encoder], **kwargs)


def _sdxl(
    tokenizer: PreTrainedTokenizerBase, bang: PreTrainedTokenizerBase, clip_l: torch.nn.Module, clip_g: torch.nn.Module
) -> TextConditioner:
    return TextConditioner([tokenizer, bang], [clip_l, clip_g], family_is_sdxl=True)


def _ids(*tokens: int, pad: int = EOS) -> torch.Tensor:
    """BOS + tokens + EOS, padded to 77 with `pad`."""
    ids = [BOS, *tokens, EOS]
    return torch.tensor([ids + [pad] * (77 - len(ids))])


def _words(count: int, word: str = "cat") -> str:
    return " ".join([word] * count)


# --- chunking ----------------------------------------------------------------------------------


def test_short_prompt_is_one_padded_chunk(tokenizer: PreTrainedTokenizerBase) -> None:
    chunks = PromptChunker(tokenizer).tokenize_prompt("cat dog").chunks
    assert len(chunks) == 1
    assert chunks[0].tokens == (BOS, CAT, DOG, *[EOS] * 74)
    assert chunks[0].multipliers == tuple([1.0] * 77)


def test_long_prompt_cut_moves_back_to_last_comma(tokenizer: PreTrainedTokenizerBase, sd1: TextConditioner) -> None:
    prompt = _words(70) + ", " + _words(9, "dog")  # 80 tokens, the comma is token 71
    chunks = PromptChunker(tokenizer).tokenize_prompt(prompt).chunks
    assert [len(c.tokens) for c in chunks] == [77, 77]
    assert chunks[0].tokens == (BOS, *[CAT] * 70, COMMA, *[EOS] * 5)  # cut right after the comma
    assert chunks[1].tokens == (BOS, *[DOG] * 9, *[EOS] * 67)
    assert sd1.encode([prompt]).context.shape == (1, 154, L_WIDTH)
    # A1111 counts a full chunk before the cut: 75 + 9
    assert sd1.token_count(prompt) == TokenCount(84, 150)


@pytest.mark.parametrize("backtrack", [0, 4])
def test_no_backtrack_when_disabled_or_comma_too_far(tokenizer: PreTrainedTokenizerBase, backtrack: int) -> None:
    prompt = _words(70) + ", " + _words(9, "dog")  # comma 5 tokens before the limit
    chunks = PromptChunker(tokenizer, comma_padding_backtrack=backtrack).tokenize_prompt(prompt).chunks
    assert chunks[0].tokens == (BOS, *[CAT] * 70, COMMA, *[DOG] * 4, EOS)
    assert chunks[1].tokens[:6] == (BOS, *[DOG] * 5)


def test_break_starts_a_new_chunk(tokenizer: PreTrainedTokenizerBase, sd1: TextConditioner) -> None:
    chunks = PromptChunker(tokenizer).tokenize_prompt("cat BREAK dog").chunks
    assert [c.tokens[:3] for c in chunks] == [(BOS, CAT, EOS), (BOS, DOG, EOS)]
    assert sd1.encode(["cat BREAK dog"]).context.shape == (1, 154, L_WIDTH)
    assert sd1.token_count("cat BREAK dog") == TokenCount(76, 150)
    literal = PromptChunker(tokenizer, emphasis="None").tokenize_prompt("cat BREAK dog").chunks
    assert len(literal) == 1  # emphasis None: BREAK is just a word


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [("", TokenCount(0, 75)), (_words(75), TokenCount(75, 75)), (_words(76), TokenCount(76, 150))],
)
def test_token_counter(sd1: TextConditioner, prompt: str, expected: TokenCount) -> None:
    assert sd1.token_count(prompt) == expected


def test_weights_follow_tokens(tokenizer: PreTrainedTokenizerBase) -> None:
    chunk = PromptChunker(tokenizer).tokenize_prompt("cat (dog:1.5) [sks]").chunks[0]
    assert chunk.tokens[:5] == (BOS, CAT, DOG, SKS, EOS)
    assert chunk.multipliers[:5] == pytest.approx((1.0, 1.0, 1.5, 1 / 1.1, 1.0))


def test_batch_prompts_padded_to_same_chunk_count(sd1: TextConditioner) -> None:
    result = sd1.encode(["cat", _words(80, "dog")])
    assert result.context.shape == (2, 154, L_WIDTH)
    # the short prompt's second chunk is the encoding of an empty chunk (BOS + EOS...)
    assert torch.allclose(result.context[0, 77:], sd1.encode([""]).context[0], atol=1e-6)


# --- emphasis ----------------------------------------------------------------------------------


def test_no_norm_scales_only_the_weighted_token(tokenizer: PreTrainedTokenizerBase, clip_l: CLIPTextModel) -> None:
    conditioner = _sd1(tokenizer, clip_l, emphasis="No norm")
    weighted = conditioner.encode(["(cat:1.5) dog"]).context[0]
    plain = conditioner.encode(["cat dog"]).context[0]
    assert torch.allclose(weighted[1], plain[1] * 1.5, atol=1e-6)  # position 1 = "cat"
    others = [i for i in range(77) if i != 1]
    assert torch.equal(weighted[others], plain[others])


def test_original_scales_then_restores_mean(tokenizer: PreTrainedTokenizerBase, clip_l: CLIPTextModel) -> None:
    weighted = _sd1(tokenizer, clip_l).encode(["(cat:1.5) dog"]).context
    plain = _sd1(tokenizer, clip_l).encode(["cat dog"]).context
    assert weighted.mean().item() == pytest.approx(plain.mean().item(), rel=1e-5)
    scale = torch.ones(77, 1)
    scale[1] = 1.5
    expected = plain * scale * (plain.mean() / (plain * scale).mean())
    assert torch.allclose(weighted, expected, atol=1e-5)
    assert not torch.allclose(weighted, plain, atol=1e-3)


def test_original_mean_is_over_the_batch_with_repeats(
    tokenizer: PreTrainedTokenizerBase, clip_l: CLIPTextModel
) -> None:
    prompts = ["(cat:1.5) dog", "sks", "sks"]
    result = _sd1(tokenizer, clip_l).encode(prompts).context
    raw = _sd1(tokenizer, clip_l, emphasis="Ignore").encode(prompts).context
    scaled = _sd1(tokenizer, clip_l, emphasis="No norm").encode(prompts).context
    assert torch.allclose(result, scaled * (raw.mean() / scaled.mean()), atol=1e-5)
    assert torch.equal(result[1], result[2])
    # a different batch gives a (slightly) different result, as in A1111
    alone = _sd1(tokenizer, clip_l).encode(prompts[:1]).context
    assert not torch.allclose(result[0], alone[0], atol=1e-6)


def test_ignore_drops_weights_and_none_keeps_brackets(
    tokenizer: PreTrainedTokenizerBase, clip_l: CLIPTextModel
) -> None:
    plain = _sd1(tokenizer, clip_l).encode(["cat dog"]).context
    ignored = _sd1(tokenizer, clip_l, emphasis="Ignore").encode(["(cat:1.5) [dog]"]).context
    assert torch.equal(ignored, plain)
    literal = _sd1(tokenizer, clip_l, emphasis="None")
    assert not torch.allclose(literal.encode(["(cat:1.5) dog"]).context, plain, atol=1e-3)
    assert literal.token_count("(cat:1.5) dog").count == 8


def test_unknown_emphasis_is_rejected(tokenizer: PreTrainedTokenizerBase, clip_l: CLIPTextModel) -> None:
    with pytest.raises(ValueError, match="unknown emphasis mode 'Strong'.*'No norm'"):
        _sd1(tokenizer, clip_l, emphasis="Strong")


# --- clip skip ---------------------------------------------------------------------------------


def test_sd1_clip_skip_uses_earlier_layer_with_final_norm(
    tokenizer: PreTrainedTokenizerBase, clip_l: CLIPTextModel
) -> None:
    skip1 = _sd1(tokenizer, clip_l, clip_skip=1).encode(["cat dog"]).context
    skip2 = _sd1(tokenizer, clip_l, clip_skip=2).encode(["cat dog"]).context
    with torch.no_grad():
        output = clip_l(input_ids=_ids(CAT, DOG), output_hidden_states=True)
        expected2 = clip_l.final_layer_norm(output.hidden_states[-2])
    assert torch.allclose(skip1, output.last_hidden_state, atol=1e-6)
    assert torch.allclose(skip2, expected2, atol=1e-6)
    assert not torch.allclose(skip1, skip2, atol=1e-3)


def test_bad_clip_skip_is_rejected(tokenizer: PreTrainedTokenizerBase, clip_l: CLIPTextModel) -> None:
    with pytest.raises(ValueError, match="clip skip 4 is more than the text encoder's 3 layers"):
        _sd1(tokenizer, clip_l, clip_skip=4)
    with pytest.raises(ValueError, match="clip_skip must be >= 1"):
        _sd1(tokenizer, clip_l, clip_skip=0)


def test_sd2_ignores_clip_skip_and_pads_with_zero_id(
    bang_tokenizer: PreTrainedTokenizerBase, clip_l: CLIPTextModel
) -> None:
    skip1 = TextConditioner([bang_tokenizer], [clip_l], family_is_sd2=True, clip_skip=1).encode(["cat"]).context
    skip2 = TextConditioner([bang_tokenizer], [clip_l], family_is_sd2=True, clip_skip=2).encode(["cat"]).context
    with torch.no_grad():
        expected = clip_l(input_ids=_ids(CAT, pad=0)).last_hidden_state
    assert torch.equal(skip1, skip2)
    assert torch.allclose(skip1, expected, atol=1e-6)


# --- SDXL ----------------------------------------------------------------------------------------


def test_sdxl_concatenates_penultimate_layers_and_pools_from_clip_g(
    tokenizer: PreTrainedTokenizerBase,
    bang_tokenizer: PreTrainedTokenizerBase,
    clip_l: CLIPTextModel,
    clip_g: CLIPTextModelWithProjection,
) -> None:
    result = _sdxl(tokenizer, bang_tokenizer, clip_l, clip_g).encode(["cat dog", "sks"])
    assert result.context.shape == (2, 77, L_WIDTH + G_WIDTH)
    assert result.pooled is not None and result.pooled.shape == (2, PROJECTION)
    with torch.no_grad():
        l_out = clip_l(input_ids=_ids(CAT, DOG), output_hidden_states=True)
        g_out = clip_g(input_ids=_ids(CAT, DOG, pad=0), output_hidden_states=True)
    assert torch.allclose(result.context[0, :, :L_WIDTH], l_out.hidden_states[-2][0], atol=1e-6)
    assert torch.allclose(result.context[0, :, L_WIDTH:], g_out.hidden_states[-2][0], atol=1e-6)
    assert torch.allclose(result.pooled[0], g_out.text_embeds[0], atol=1e-6)


def test_sdxl_pooled_comes_from_first_chunk(
    tokenizer: PreTrainedTokenizerBase,
    bang_tokenizer: PreTrainedTokenizerBase,
    clip_l: CLIPTextModel,
    clip_g: CLIPTextModelWithProjection,
) -> None:
    conditioner = _sdxl(tokenizer, bang_tokenizer, clip_l, clip_g)
    long = conditioner.encode(["cat BREAK " + _words(10, "dog")])
    short = conditioner.encode(["cat"])
    assert long.context.shape == (1, 154, L_WIDTH + G_WIDTH)
    assert long.pooled is not None and short.pooled is not None
    assert torch.allclose(long.pooled, short.pooled, atol=1e-6)


def test_sdxl_empty_negative_prompt_is_zeros(
    tokenizer: PreTrainedTokenizerBase,
    bang_tokenizer: PreTrainedTokenizerBase,
    clip_l: CLIPTextModel,
    clip_g: CLIPTextModelWithProjection,
) -> None:
    conditioner = _sdxl(tokenizer, bang_tokenizer, clip_l, clip_g)
    negative = conditioner.encode([""], is_negative_prompt=True)
    assert negative.pooled is not None
    assert not negative.context.any() and not negative.pooled.any()
    assert conditioner.encode([""]).context.abs().sum() > 0  # only negative prompts are zeroed
    assert conditioner.encode(["cat"], is_negative_prompt=True).context.abs().sum() > 0


def test_sdxl_refiner_uses_only_clip_g(
    bang_tokenizer: PreTrainedTokenizerBase, clip_g: CLIPTextModelWithProjection
) -> None:
    result = TextConditioner([bang_tokenizer], [clip_g], family_is_sdxl=True, is_refiner=True).encode(["cat"])
    with torch.no_grad():
        g_out = clip_g(input_ids=_ids(CAT, pad=0), output_hidden_states=True)
    assert result.context.shape == (1, 77, G_WIDTH)
    assert torch.allclose(result.context, g_out.hidden_states[-2], atol=1e-6)
    assert result.pooled is not None and torch.allclose(result.pooled, g_out.text_embeds, atol=1e-6)


def test_sdxl_needs_the_right_encoders(
    tokenizer: PreTrainedTokenizerBase, clip_l: CLIPTextModel, clip_g: CLIPTextModelWithProjection
) -> None:
    with pytest.raises(ValueError, match=r"SDXL \(CLIP-L and CLIP-G\) needs 2 text encoder"):
        TextConditioner([tokenizer], [clip_l], family_is_sdxl=True)
    with pytest.raises(ValueError, match="must be a CLIPTextModelWithProjection"):
        TextConditioner([tokenizer, tokenizer], [clip_l, clip_l], family_is_sdxl=True)
    with pytest.raises(ValueError, match="2 tokenizers for 1 text encoders"):
        TextConditioner([tokenizer, tokenizer], [clip_l])


# --- textual inversion ---------------------------------------------------------------------------


class WordEmbedding:
    """Test lookup: the single token `token_id` stands for `vectors`."""

    def __init__(self, token_id: int, vectors: torch.Tensor | dict[str, torch.Tensor]) -> None:
        self.token_id = token_id
        self.match = EmbeddingMatch("sks-emb", 1, vectors)

    def find_at(self, token_ids: Sequence[int], position: int) -> EmbeddingMatch | None:
        return self.match if token_ids[position] == self.token_id else None


def _layer0_inputs(encoder: torch.nn.Module, run: Any) -> torch.Tensor:
    """Token + position embeddings as the first transformer layer sees them during `run()`."""
    seen: list[torch.Tensor] = []
    text_model: Any = getattr(encoder, "text_model", encoder)
    handle = text_model.encoder.layers[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    try:
        run()
    finally:
        handle.remove()
    return torch.cat(seen, dim=0)


def test_embedding_replaces_exactly_its_positions(tokenizer: PreTrainedTokenizerBase, clip_l: CLIPTextModel) -> None:
    vectors = torch.randn(3, L_WIDTH, generator=torch.Generator().manual_seed(5))
    conditioner = _sd1(tokenizer, clip_l, embeddings=WordEmbedding(SKS, vectors))
    chunk = conditioner.chunker.tokenize_prompt("cat sks dog").chunks[0]
    assert chunk.tokens[:6] == (BOS, CAT, 0, 0, 0, DOG)
    assert [fix.position for fix in chunk.fixes] == [2]

    before = {k: v.clone() for k, v in clip_l.state_dict().items()}
    inputs = _layer0_inputs(clip_l, lambda: conditioner.encode(["cat sks dog"]))[0]
    with torch.no_grad():
        ids = torch.tensor(chunk.tokens)
        token_part = inputs - clip_l.embeddings.position_embedding.weight
        normal = clip_l.embeddings.token_embedding(ids)
    assert torch.allclose(token_part[2:5], vectors, atol=1e-5)
    kept = [i for i in range(77) if i not in (2, 3, 4)]
    assert torch.allclose(token_part[kept], normal[kept], atol=1e-5)
    # the model is unchanged and no hook is left behind
    assert all(torch.equal(before[k], v) for k, v in clip_l.state_dict().items())
    assert len(clip_l.get_input_embeddings()._forward_hooks) == 0
    assert torch.equal(_sd1(tokenizer, clip_l).encode(["cat"]).context, _sd1(tokenizer, clip_l).encode(["cat"]).context)


def test_multi_vector_embedding_moves_to_next_chunk(tokenizer: PreTrainedTokenizerBase, clip_l: CLIPTextModel) -> None:
    vectors = torch.randn(3, L_WIDTH, generator=torch.Generator().manual_seed(6))
    conditioner = _sd1(tokenizer, clip_l, embeddings=WordEmbedding(SKS, vectors))
    tokenized = conditioner.chunker.tokenize_prompt(_words(73) + " sks dog")  # 73 + 3 would straddle 75
    first, second = tokenized.chunks
    assert first.tokens == (BOS, *[CAT] * 73, EOS, EOS, EOS)
    assert second.tokens[:6] == (BOS, 0, 0, 0, DOG, EOS)
    assert first.fixes == () and [fix.position for fix in second.fixes] == [1]
    assert list(conditioner.embeddings_used(["cat", "sks"])) == ["sks-emb"]
    assert conditioner.embeddings_used(["cat"]) == {}
    assert tokenized.token_count == CHUNK_LENGTH + 4
    inputs = _layer0_inputs(clip_l, lambda: conditioner.encode([_words(73) + " sks dog"]))
    token_part = inputs[1] - clip_l.embeddings.position_embedding.weight  # second chunk's forward call
    assert torch.allclose(token_part[1:4], vectors, atol=1e-5)


def test_sdxl_embedding_uses_per_encoder_vectors(
    tokenizer: PreTrainedTokenizerBase,
    bang_tokenizer: PreTrainedTokenizerBase,
    clip_l: CLIPTextModel,
    clip_g: CLIPTextModelWithProjection,
) -> None:
    vectors = {"clip_l": torch.randn(2, L_WIDTH), "clip_g": torch.randn(2, G_WIDTH)}
    conditioner = TextConditioner(
        [tokenizer, bang_tokenizer], [clip_l, clip_g], family_is_sdxl=True, embeddings=WordEmbedding(SKS, vectors)
    )
    inputs = _layer0_inputs(clip_g, lambda: conditioner.encode(["sks"]))[0]
    token_part = inputs - clip_g.text_model.embeddings.position_embedding.weight
    assert torch.allclose(token_part[1:3], vectors["clip_g"], atol=1e-5)


def test_embedding_errors_are_clear(tokenizer: PreTrainedTokenizerBase, clip_l: CLIPTextModel) -> None:
    wide = _sd1(tokenizer, clip_l, embeddings=WordEmbedding(SKS, torch.randn(1, 99)))
    with pytest.raises(ValueError, match="has 99-wide vectors; this text encoder \\(clip_l\\) needs 32"):
        wide.encode(["sks"])
    only_g = _sd1(tokenizer, clip_l, embeddings=WordEmbedding(SKS, {"clip_g": torch.randn(1, G_WIDTH)}))
    with pytest.raises(ValueError, match="no vectors for the clip_l text encoder"):
        only_g.encode(["sks"])
    with pytest.raises(ValueError, match="same, non-zero vector count"):
        EmbeddingMatch("x", 1, {"clip_l": torch.randn(1, 4), "clip_g": torch.randn(2, 4)})
    with pytest.raises(ValueError, match="at most 75 fit"):
        EmbeddingMatch("x", 1, torch.randn(76, 4))


# --- schedules, AND, CFG inputs -----------------------------------------------------------------


def test_scheduled_conditioning_switches_at_the_edit_step(sd1: TextConditioner) -> None:
    (schedule,) = build_scheduled_conditionings(sd1, ["[cat:dog:2] sks"], steps=4)
    cat, dog = sd1.encode(["cat sks"]).context, sd1.encode(["dog sks"]).context
    assert schedule.end_at_steps == (2, 4)
    for step in (0, 1, 2):
        assert torch.allclose(schedule.at_step(step).context, cat, atol=1e-6)
    for step in (3, 4):
        assert torch.allclose(schedule.at_step(step).context, dog, atol=1e-6)
    assert schedule.at_step(9).context is schedule.conds[0].context  # past the end: first entry (A1111)


def test_equal_prompts_share_one_schedule(sd1: TextConditioner) -> None:
    first, second, other = build_scheduled_conditionings(sd1, ["cat", "cat", "dog"], steps=5)
    assert first is second and first is not other


def test_multicond_stacks_and_parts_with_weights(sd1: TextConditioner) -> None:
    multicond = build_multicond(sd1, ["cat AND dog:0.5", "cat"], steps=5)
    stacked = multicond.at_step(0)
    assert stacked.weights == (((0, 1.0), (1, 0.5)), ((2, 1.0),))
    assert stacked.cond.context.shape == (3, 77, L_WIDTH)
    assert torch.allclose(stacked.cond.context[1], sd1.encode([" dog"]).context[0], atol=1e-6)
    assert torch.equal(stacked.cond.context[0], stacked.cond.context[2])


def test_prompt_conditioning_for_cfg(sd1: TextConditioner) -> None:
    conds = build_prompt_conditioning(sd1, ["cat " + _words(80, "dog"), "[sks:cat:1]"], ["", "sks"], steps=3)
    step0, step2 = conds.at_step(0), conds.at_step(2)
    assert step0.cond.context.shape == (2, 154, L_WIDTH)  # the short one padded by repeating its last token
    assert torch.equal(step0.cond.context[1, 77:], step0.cond.context[1, 76:77].expand(77, -1))
    assert step0.uncond.context.shape == (2, 77, L_WIDTH)
    assert step0.cond_weights == (((0, 1.0),), ((1, 1.0),))
    assert not torch.allclose(step0.cond.context[1, :77], step2.cond.context[1, :77], atol=1e-3)
    with pytest.raises(ValueError, match="2 prompts but 1 negative prompts"):
        build_prompt_conditioning(sd1, ["a", "b"], ["c"], steps=3)


def test_padding_helpers() -> None:
    context = torch.arange(2 * 77 * 3, dtype=torch.float32).view(2, 77, 3)
    empty = torch.full((1, 77, 3), -1.0)
    padded = pad_with_empty_chunks(context, 154, empty)
    assert padded.shape == (2, 154, 3) and torch.equal(padded[:, 77:], empty.expand(2, -1, -1))
    with pytest.raises(ValueError, match="cannot pad 77 tokens to 100"):
        pad_with_empty_chunks(context, 100, empty)
    stacked = stack_conditionings([Conditioning(context[:1]), Conditioning(padded[:1])])
    assert stacked.context.shape == (2, 154, 3)
    with pytest.raises(ValueError, match="with and without pooled"):
        stack_conditionings([Conditioning(context[:1], torch.zeros(1, 4)), Conditioning(context[:1])])


def test_ui_token_counter_counts_longest_schedule_text(sd1: TextConditioner) -> None:
    prompt = "[cat:" + _words(80, "dog") + ":3] <lora:x:1> # a long comment " + _words(90)
    assert count_prompt_tokens(sd1, prompt, 20) == TokenCount(80, 150)
    assert count_prompt_tokens(sd1, "cat AND " + _words(76, "dog"), 20) == TokenCount(76, 150)
    assert count_prompt_tokens(sd1, "cat AND dog", 20, is_positive=False).count == 3


def test_half_precision_encoder_returns_float32(tokenizer: PreTrainedTokenizerBase, clip_l: CLIPTextModel) -> None:
    half = CLIPTextModel(_config(L_WIDTH)).eval()
    half.load_state_dict(clip_l.state_dict())
    half = half.to(torch.bfloat16)
    vectors = torch.randn(2, L_WIDTH)  # float32 vectors go into a bf16 model
    result = _sd1(tokenizer, half, embeddings=WordEmbedding(SKS, vectors)).encode(["(cat:1.2) sks"])
    reference = _sd1(tokenizer, clip_l, embeddings=WordEmbedding(SKS, vectors)).encode(["(cat:1.2) sks"])
    assert result.context.dtype == torch.float32 and result.context.device == torch.device("cpu")
    assert torch.allclose(result.context, reference.context, atol=0.1)
