"""The ldm-shaped model (issue 19): A1111's module tree over our diffusers weights.

Identity: the ldm view gives the diffusers UNet's / VAE's output (shared parameters, no copies).
Hooking: generation runs through the view, so a replaced forward on diffusion_model, a patched
CrossAttention (instance or class), or a wrapped VAE decoder changes the image; undoing restores it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch

import ldm.modules.attention
import sgm.modules.attention
from ldm.models.diffusion.ddpm import LatentDiffusion
from ldm.modules.diffusionmodules.openaimodel import ResBlock, SpatialTransformer, TimestepEmbedSequential, UNetModel
from modules import prompt_parser
from modules.extension_host.compat_runtime import SdModelView
from modules.models.families import ModelFamily
from modules.models.ldm_views import diffusion_model_of, first_stage_of
from tests.gen_env import SD1, SDXL, GenEnv, pixels
from tools.tiny_models import tiny_parts

FAMILIES = [ModelFamily.SD1, ModelFamily.SD2_V, ModelFamily.SDXL]


def _unet_inputs(unet: Any, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, unet.config.in_channels, *hw, generator=gen)
    t = torch.tensor([999.0, 3.5])
    context = torch.randn(2, 7, unet.config.cross_attention_dim, generator=gen)
    added: dict[str, Any] = {}
    if getattr(unet, "add_embedding", None) is not None:
        pooled = torch.randn(2, unet.add_embedding.linear_1.in_features - 6 * 8, generator=gen)
        added = {"text_embeds": pooled, "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)}
    return x, t, context, added


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.value)
@pytest.mark.parametrize("hw", [(8, 8), (9, 13), (1, 1)], ids=["even", "odd", "one"])  # 1x1: an 8px image
def test_ldm_unet_equals_the_diffusers_unet(family: ModelFamily, hw: tuple[int, int]) -> None:
    unet = tiny_parts(family).unet
    view = diffusion_model_of(unet)
    x, t, context, added = _unet_inputs(unet, hw)
    y = view.size_vector(added["text_embeds"], added["time_ids"]) if added else None
    with torch.no_grad():
        expected = unet(x, t, encoder_hidden_states=context, added_cond_kwargs=added or None).sample
        got = view(x, t, context, y=y)
    assert (got - expected).abs().max().item() <= 1e-5
    # the same parameter objects: no copy, no extra memory
    assert {id(p) for p in view.parameters()} == {id(p) for p in unet.parameters()}
    assert diffusion_model_of(unet) is view


def test_ldm_tree_names_and_classes() -> None:
    sd1 = diffusion_model_of(tiny_parts(ModelFamily.SD1).unet)
    assert isinstance(sd1, UNetModel) and not hasattr(sd1, "label_emb")
    assert isinstance(sd1.input_blocks[1], TimestepEmbedSequential)
    assert isinstance(sd1.input_blocks[1][0], ResBlock) and isinstance(sd1.input_blocks[1][1], SpatialTransformer)
    block = sd1.middle_block[1].transformer_blocks[0]
    assert isinstance(block, ldm.modules.attention.BasicTransformerBlock)
    assert isinstance(block.attn2, ldm.modules.attention.CrossAttention)
    assert not isinstance(block.attn2, sgm.modules.attention.CrossAttention)
    names = {name for name, _ in sd1.named_parameters()}
    assert "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight" in names
    assert "middle_block.0.in_layers.0.weight" in names and "out.2.weight" in names
    assert "time_embed.0.weight" in names and "output_blocks.1.1.conv.weight" in names
    sdxl = diffusion_model_of(tiny_parts(ModelFamily.SDXL).unet)
    assert "label_emb.0.0.weight" in {name for name, _ in sdxl.named_parameters()}
    attn = sdxl.middle_block[1].transformer_blocks[0].attn1
    assert isinstance(attn, sgm.modules.attention.CrossAttention)


def test_ldm_vae_equals_the_diffusers_vae() -> None:
    vae = tiny_parts(ModelFamily.SD1).vae
    view = first_stage_of(vae)
    assert {id(p) for p in view.parameters()} == {id(p) for p in vae.parameters()}
    names = {name for name, _ in view.named_parameters()}
    for name in (
        "encoder.down.0.block.0.conv1.weight",
        "encoder.mid.attn_1.q.linear.weight",
        "decoder.up.3.block.0.norm1.weight",
        "decoder.up.1.upsample.conv.weight",
        "decoder.mid.block_2.conv2.weight",
        "quant_conv.weight",
        "post_quant_conv.weight",
    ):
        assert name in names, name
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 64, 48, generator=gen) * 2 - 1
    z = torch.randn(1, 4, 8, 7, generator=gen)
    with torch.no_grad():
        assert (view.encode(x).mean - vae.encode(x).latent_dist.mean).abs().max().item() <= 1e-5
        assert (view.decode(z) - vae.decode(z).sample).abs().max().item() <= 1e-5


# --- generation runs through the view ------------------------------------------------------------


def _image(env: GenEnv, model: str = SD1) -> np.ndarray:
    result = env.txt2img(prompt="a red boat", seed=11, steps=2, override_settings={"sd_model_checkpoint": model})
    return pixels(result.images[0])


@contextmanager
def _instance_forward(module: torch.nn.Module, forward: Any) -> Iterator[None]:
    module.forward = forward  # what extensions do
    try:
        yield
    finally:
        del module.forward


def _differs(a: np.ndarray, b: np.ndarray) -> bool:
    return int(np.abs(a - b).max()) > 2


def test_no_hook_image_is_the_old_diffusers_path(env: GenEnv) -> None:
    """The old path (the diffusers UNet called directly) put back as diffusion_model.forward gives
    the same image (within 1/255) as the ldm forward; and a different forward changes it."""
    model = env.models.load(SD1)
    view = diffusion_model_of(model.unet)
    new = _image(env)

    def old_path(x: torch.Tensor, timesteps: torch.Tensor, context: Any = None, y: Any = None, **kw: Any) -> Any:
        return model.unet(x, timesteps, encoder_hidden_states=context).sample

    with _instance_forward(view, old_path):
        old = _image(env)
    assert int(np.abs(new - old).max()) <= 1

    def doubled(x: torch.Tensor, timesteps: torch.Tensor, context: Any = None, y: Any = None, **kw: Any) -> Any:
        return 2.0 * old_path(x, timesteps, context)

    with _instance_forward(view, doubled):
        assert _differs(_image(env), new)
    assert np.array_equal(_image(env), new)  # undone: the image is back


def test_patched_cross_attention_instance_and_class_change_the_image(env: GenEnv) -> None:
    model = env.models.load(SD1)
    view = diffusion_model_of(model.unet)
    base = _image(env)
    attn2 = view.middle_block[1].transformer_blocks[0].attn2
    calls: list[int] = []

    def ldm_style(x: torch.Tensor, context: Any = None, mask: Any = None, **kw: Any) -> torch.Tensor:
        # what regional-prompter-like extensions do: their own attention on the shared layers
        calls.append(1)
        q, k, v = attn2.to_q(x), attn2.to_k(context), attn2.to_v(context)
        b, n, _ = q.shape
        q, k, v = (t.reshape(b, -1, attn2.heads, t.shape[-1] // attn2.heads).transpose(1, 2) for t in (q, k, v))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v * 3.0)
        return attn2.to_out(out.transpose(1, 2).reshape(b, n, -1))

    with _instance_forward(attn2, ldm_style):
        patched = _image(env)
    assert calls and _differs(patched, base)
    assert np.array_equal(_image(env), base)

    cls = ldm.modules.attention.CrossAttention
    original = cls.forward

    def scaled(self: Any, x: torch.Tensor, context: Any = None, mask: Any = None, **kw: Any) -> Any:
        return original(self, x, context, mask) * 0.5

    cls.forward = scaled  # type: ignore[method-assign]
    try:
        class_patched = _image(env)
    finally:
        cls.forward = original  # type: ignore[method-assign]
    assert _differs(class_patched, base)
    assert np.array_equal(_image(env), base)


def test_sdxl_runs_through_the_sgm_view_and_its_class_patch(env: GenEnv) -> None:
    model = env.models.load(SDXL)
    view = diffusion_model_of(model.unet)
    seen: list[tuple[int, ...]] = []
    handle = view.register_forward_pre_hook(lambda _m, args, kw: seen.append(tuple(kw["y"].shape)), with_kwargs=True)
    try:
        base = _image(env, SDXL)
    finally:
        handle.remove()
    assert seen and all(shape[1] == view.adm_in_channels for shape in seen)  # the vector conditioning y
    cls = sgm.modules.attention.CrossAttention
    cls.forward = lambda self, x, context=None, mask=None, **kw: (
        ldm.modules.attention.CrossAttention.forward(  # type: ignore[method-assign]
            self, x, context, mask
        )
        * 0.0
    )
    try:
        patched = _image(env, SDXL)
    finally:
        del cls.forward
    assert _differs(patched, base)
    assert np.array_equal(_image(env, SDXL), base)


def test_wrapped_vae_decoder_changes_the_image(env: GenEnv) -> None:
    """Tiled VAE's pattern: replace first_stage_model.decoder.forward with its own."""
    model = env.models.load(SD1)
    decoder = first_stage_of(model.vae).decoder
    base = _image(env)
    original = decoder.forward
    calls: list[tuple[int, ...]] = []

    def tiled(z: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        calls.append(tuple(z.shape))
        return -original(z)

    with _instance_forward(decoder, tiled):
        wrapped = _image(env)
    assert calls and _differs(wrapped, base)
    assert np.array_equal(_image(env), base)


# --- shared.sd_model: the A1111 model object ----------------------------------------------------


def test_sd_model_exposes_the_ldm_object_generation_uses(env: GenEnv) -> None:
    loaded = env.models.load(SD1)
    sd_model = SdModelView(loaded, env.options.as_dict)
    assert sd_model.model.diffusion_model is diffusion_model_of(loaded.unet)
    assert sd_model.first_stage_model is first_stage_of(loaded.vae)
    assert isinstance(sd_model.ldm, LatentDiffusion) and sd_model.ldm is SdModelView(loaded).ldm
    assert sd_model.parameterization == "eps" and sd_model.is_sd1 and not sd_model.is_sdxl
    assert sd_model.sd_model_hash and sd_model.sd_checkpoint_info.model_name == SD1
    assert torch.equal(sd_model.alphas_cumprod, loaded.alphas_cumprod)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        pixels_ldm = sd_model.decode_first_stage(z)
        expected = loaded.vae.decode(z / loaded.latent_scaling_factor).sample
        assert (pixels_ldm - expected).abs().max().item() <= 1e-5
        latent = sd_model.get_first_stage_encoding(sd_model.encode_first_stage(pixels_ldm))
    assert latent.shape == z.shape


def test_cond_stage_model_encodes_prompts_as_generation_does(env: GenEnv) -> None:
    sd_model = SdModelView(env.models.load(SD1), env.options.as_dict)
    clip = sd_model.cond_stage_model
    cond = clip(["a red boat", "a cat"])
    assert cond.shape[:2] == (2, 77) and not torch.equal(cond[0], cond[1])
    tokenizer = clip.wrapped.tokenizer
    ids = [tokenizer.bos_token_id, *clip.tokenize(["a red boat"])[0], tokenizer.eos_token_id]
    ids += [tokenizer.pad_token_id] * (77 - len(ids))
    direct = clip.encode_with_transformers(torch.tensor([ids]))
    assert (direct[0] - cond[0]).abs().max().item() <= 1e-4  # weights 1: emphasis changes nothing
    assert torch.equal(sd_model.get_learned_conditioning(["a cat"])[0], cond[1])


def test_sdxl_conditioner_gives_crossattn_and_vector(env: GenEnv) -> None:
    sd_model = SdModelView(env.models.load(SDXL), env.options.as_dict)
    assert sd_model.is_sdxl and sd_model.conditioner is sd_model.ldm.cond_stage_model
    assert len(sd_model.conditioner.embedders) == 2
    cond = sd_model.get_learned_conditioning(["a red boat"])
    assert cond["crossattn"].shape[:2] == (1, 77)
    assert cond["vector"].shape == (1, sd_model.model.diffusion_model.adm_in_channels)


def test_prompt_parser_get_learned_conditioning_follows_the_schedule(env: GenEnv) -> None:
    sd_model = SdModelView(env.models.load(SD1), env.options.as_dict)
    (schedule,) = prompt_parser.get_learned_conditioning(sd_model, ["a [cat:dog:2] on a boat"], 4)
    assert [entry.end_at_step for entry in schedule] == [2, 4]
    assert schedule[0].cond.shape[0] == 77 and not torch.equal(schedule[0].cond, schedule[1].cond)
    multi = prompt_parser.get_multicond_learned_conditioning(sd_model, ["a cat AND a dog:0.5"], 4)
    assert [part.weight for part in multi.batch[0]] == [1.0, 0.5]


def test_replaced_apply_model_on_shared_sd_model_is_used(env: GenEnv) -> None:
    """Tiled Diffusion's pattern: `shared.sd_model.apply_model = hijack` (kept across accesses)."""
    loaded = env.models.load(SD1)
    base = _image(env)
    calls: list[str] = []
    original = SdModelView(loaded).apply_model

    def hijack(x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        calls.append(type(cond).__name__)
        return original(x, t, cond) * 1.5

    SdModelView(loaded).apply_model = hijack
    try:
        assert SdModelView(loaded).apply_model is hijack  # a later shared.sd_model sees it
        hijacked = _image(env)
    finally:
        del SdModelView(loaded).apply_model
    assert calls and set(calls) == {"dict"} and _differs(hijacked, base)
    assert np.array_equal(_image(env), base)


def test_sub_quad_attention_is_softmax_attention() -> None:
    """modules.sd_hijack_optimizations.sub_quad_attention (Tiled VAE calls it) in query chunks."""
    from modules.sd_hijack_optimizations import get_xformers_flash_attention_op, sub_quad_attention

    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(3, 50, 16, generator=gen) for _ in range(3))
    expected = torch.softmax(q @ k.transpose(1, 2) / 4.0, dim=-1) @ v
    assert (sub_quad_attention(q, k, v, q_chunk_size=16) - expected).abs().max().item() <= 1e-5
    assert get_xformers_flash_attention_op(q, k, v) is None


def test_cond_stage_model_tokenize_line_counts_chunks_as_regional_prompter_reads_them(env: GenEnv) -> None:
    clip = SdModelView(env.models.load(SD1), env.options.as_dict).cond_stage_model
    chunks, count = clip.tokenize_line("a red circle BREAK a blue square")
    assert len(chunks) == 2 and count == 75 + 3  # BREAK pads the first chunk (A1111 counts it)
    assert len(chunks[0].tokens) == 77 and chunks[0].tokens[1:4] == tuple(clip.tokenize(["a red circle"])[0])
