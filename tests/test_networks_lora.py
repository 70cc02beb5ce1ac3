"""LoRA / LyCORIS files in their real key layouts, applied to tiny models: exact layers, exact amounts,
weight 0 = base, and the base model restored bit for bit afterwards."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import torch

from modules.core.paths import Paths
from modules.generation.prompt_parser import parse_extra_network_tags
from modules.models.families import ModelFamily
from modules.models.hashes import HashCache
from modules.networks.activation import ActiveNetworks, NetworkActivator
from modules.networks.catalogue import NetworkCatalogue
from modules.networks.lora_formats import parse_network
from modules.networks.options import NetworkOptions
from modules.networks.testing import Snapshot, TinyModel, randn, save_safetensors, unet_output
from tests.fixtures_models import models_home
from tools.tiny_models import tiny_pipeline


@pytest.fixture(scope="module")
def sd1(tokenizer_cache: Path) -> TinyModel:
    return TinyModel(ModelFamily.SD1, tiny_pipeline(ModelFamily.SD1, tokenizer_cache, seed=3))


@pytest.fixture(scope="module")
def sdxl(tokenizer_cache: Path) -> TinyModel:
    return TinyModel(ModelFamily.SDXL, tiny_pipeline(ModelFamily.SDXL, tokenizer_cache, seed=4))


@pytest.fixture
def home(tmp_path: Path) -> Paths:
    return models_home(tmp_path)


@pytest.fixture
def activator(home: Paths) -> NetworkActivator:
    return NetworkActivator(NetworkCatalogue(home, HashCache(home.hash_cache_file)))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def apply(
    activator: NetworkActivator, model: TinyModel, prompt: str, **opts: Any
) -> contextlib.AbstractContextManager[ActiveNetworks]:
    return activator.activate(model, parse_extra_network_tags(prompt).networks, opts=NetworkOptions(**opts))


unet_out = unet_output


TO_K = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"  # [64, 32] in tiny SD1
TO_K_KOHYA = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
FF = "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj"  # [256, 32]
FF_KOHYA = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_ff_net_0_proj"
TE_Q = "encoder.layers.0.self_attn.q_proj"  # [32, 32]
TE_Q_KOHYA = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
CONV1 = "down_blocks.0.resnets.0.conv1"  # [32, 32, 3, 3]
CONV1_LDM = "lora_unet_input_blocks_1_0_in_layers_2"
CONV2_64 = "down_blocks.1.resnets.0.conv1"  # [64, 32, 3, 3]


def weight(model: TinyModel, key: str) -> torch.Tensor:
    return model.params()[key].detach().clone()


def lora_pair(
    out_f: int, in_f: int, rank: int, seed: int, kernel: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    if kernel is None:
        return randn(rank, in_f, generator=g), randn(out_f, rank, generator=g)
    return randn(rank, in_f, *kernel, generator=g), randn(out_f, rank, 1, 1, generator=g)


def kohya(layer: str, down: torch.Tensor, up: torch.Tensor, alpha: float | None) -> dict[str, torch.Tensor]:
    state = {f"{layer}.lora_down.weight": down, f"{layer}.lora_up.weight": up}
    if alpha is not None:
        state[f"{layer}.alpha"] = torch.tensor(alpha)
    return state


# --- kohya LoRA --------------------------------------------------------------------------------


def test_kohya_lora_changes_exactly_its_layers_by_the_expected_amount(
    sd1: TinyModel, home: Any, activator: NetworkActivator
) -> None:
    down_k, up_k = lora_pair(64, 32, 4, seed=1)
    down_f, up_f = lora_pair(256, 32, 8, seed=2)
    down_t, up_t = lora_pair(32, 32, 4, seed=3)
    state = {
        **kohya(TO_K_KOHYA, down_k, up_k, 2.0),
        **kohya(FF_KOHYA, down_f, up_f, 4.0),
        **kohya(TE_Q_KOHYA, down_t, up_t, None),
    }
    save_safetensors(home.lora_dir / "style.safetensors", state)
    before = Snapshot.of(sd1)
    w_k, w_f, w_t = (
        weight(sd1, f"unet.{TO_K}.weight"),
        weight(sd1, f"unet.{FF}.weight"),
        weight(sd1, f"text_encoder.{TE_Q}.weight"),
    )

    with apply(activator, sd1, "<lora:style:0.5:0.8>") as active:
        assert before.changed(sd1) == {f"unet.{TO_K}.weight", f"unet.{FF}.weight", f"text_encoder.{TE_Q}.weight"}
        torch.testing.assert_close(
            weight(sd1, f"unet.{TO_K}.weight"), w_k + 0.8 * (2.0 / 4) * up_k @ down_k, rtol=0, atol=1e-6
        )
        torch.testing.assert_close(
            weight(sd1, f"unet.{FF}.weight"), w_f + 0.8 * (4.0 / 8) * up_f @ down_f, rtol=0, atol=1e-6
        )
        torch.testing.assert_close(
            weight(sd1, f"text_encoder.{TE_Q}.weight"), w_t + 0.5 * up_t @ down_t, rtol=0, atol=1e-6
        )
        assert active.warnings == []
        assert active.layers_patched == 3
        assert [(x.name, x.te_multiplier, x.unet_multiplier, x.layers_applied) for x in active.loras] == [
            ("style", 0.5, 0.8, 3)
        ]
    before.assert_restored(sd1)


def test_weight_zero_gives_the_base_output_and_leaving_restores_it(
    sd1: TinyModel, home: Any, activator: NetworkActivator
) -> None:
    down, up = lora_pair(64, 32, 4, seed=5)
    save_safetensors(home.lora_dir / "x.safetensors", kohya(TO_K_KOHYA, down, up, 4.0))
    base = unet_out(sd1)
    before = Snapshot.of(sd1)
    with apply(activator, sd1, "<lora:x:0>"):
        assert before.changed(sd1) == set()
        assert torch.equal(unet_out(sd1), base)
    with apply(activator, sd1, "<lora:x:1>"):
        assert not torch.allclose(unet_out(sd1), base)
    assert torch.equal(unet_out(sd1), base)
    before.assert_restored(sd1)


def test_unet_only_weight_leaves_text_encoder_alone(sd1: TinyModel, home: Any, activator: NetworkActivator) -> None:
    down_k, up_k = lora_pair(64, 32, 4, seed=1)
    down_t, up_t = lora_pair(32, 32, 4, seed=3)
    save_safetensors(
        home.lora_dir / "y.safetensors",
        {**kohya(TO_K_KOHYA, down_k, up_k, 4.0), **kohya(TE_Q_KOHYA, down_t, up_t, 4.0)},
    )
    before = Snapshot.of(sd1)
    with apply(activator, sd1, "<lora:y:te=0:unet=1.5>"):
        assert before.changed(sd1) == {f"unet.{TO_K}.weight"}
    with apply(activator, sd1, "<lyco:y:1:0>"):  # <lyco:> is the same network kind
        assert before.changed(sd1) == {f"text_encoder.{TE_Q}.weight"}
    before.assert_restored(sd1)


# --- conv LoRA (LoCon), Tucker, LDM names ------------------------------------------------------


def test_locon_3x3_with_original_ldm_names(sd1: TinyModel, home: Any, activator: NetworkActivator) -> None:
    down, up = lora_pair(32, 32, 4, seed=11, kernel=(3, 3))
    proj_down, proj_up = lora_pair(32, 32, 2, seed=12, kernel=(1, 1))
    state = {**kohya(CONV1_LDM, down, up, 2.0), **kohya("lora_unet_input_blocks_1_1_proj_in", proj_down, proj_up, 2.0)}
    save_safetensors(home.lora_dir / "locon.safetensors", state)
    before = Snapshot.of(sd1)
    w_conv, w_proj = weight(sd1, f"unet.{CONV1}.weight"), weight(sd1, "unet.down_blocks.0.attentions.0.proj_in.weight")
    with apply(activator, sd1, "<lora:locon:1>"):
        assert before.changed(sd1) == {f"unet.{CONV1}.weight", "unet.down_blocks.0.attentions.0.proj_in.weight"}
        expected = w_conv + 0.5 * (up.reshape(32, 4) @ down.reshape(4, -1)).reshape(32, 32, 3, 3)
        torch.testing.assert_close(weight(sd1, f"unet.{CONV1}.weight"), expected, rtol=0, atol=1e-6)
        expected_proj = w_proj + (proj_up.reshape(32, 2) @ proj_down.reshape(2, 32)).reshape(32, 32, 1, 1)
        torch.testing.assert_close(
            weight(sd1, "unet.down_blocks.0.attentions.0.proj_in.weight"), expected_proj, rtol=0, atol=1e-6
        )
    before.assert_restored(sd1)


def test_tucker_lora_mid(sd1: TinyModel, home: Any, activator: NetworkActivator) -> None:
    g = gen(13)
    down, mid, up = randn(3, 32, 1, 1, generator=g), randn(3, 3, 3, 3, generator=g), randn(32, 3, 1, 1, generator=g)
    layer = "lora_unet_down_blocks_0_resnets_0_conv1"
    save_safetensors(
        home.lora_dir / "tucker.safetensors", {**kohya(layer, down, up, 3.0), f"{layer}.lora_mid.weight": mid}
    )
    w0 = weight(sd1, f"unet.{CONV1}.weight")
    with apply(activator, sd1, "<lora:tucker:0.7>"):
        # sum over n, m: up[o, n] * mid[n, m, k, l] * down[m, i]
        inner = torch.tensordot(mid, down.reshape(3, 32), dims=([1], [0]))  # [n, k, l, i]
        full = torch.tensordot(up.reshape(32, 3), inner, dims=([1], [0])).permute(0, 3, 1, 2)
        torch.testing.assert_close(weight(sd1, f"unet.{CONV1}.weight"), w0 + 0.7 * full, rtol=0, atol=1e-6)


def test_dyn_dim_uses_the_first_ranks(sd1: TinyModel, home: Any, activator: NetworkActivator) -> None:
    down, up = lora_pair(64, 32, 4, seed=14)
    save_safetensors(home.lora_dir / "dyn.safetensors", kohya(TO_K_KOHYA, down, up, 4.0))
    w0 = weight(sd1, f"unet.{TO_K}.weight")
    with apply(activator, sd1, "<lora:dyn:1:1:2>"):
        torch.testing.assert_close(weight(sd1, f"unet.{TO_K}.weight"), w0 + up[:, :2] @ down[:2], rtol=0, atol=1e-6)


# --- diffusers / PEFT ----------------------------------------------------------------------------


def test_peft_format(sd1: TinyModel, home: Any, activator: NetworkActivator) -> None:
    down_k, up_k = lora_pair(64, 32, 4, seed=21)
    down_t, up_t = lora_pair(32, 32, 4, seed=22)
    state = {
        f"unet.{TO_K}.lora_A.weight": down_k,
        f"unet.{TO_K}.lora_B.weight": up_k,
        f"text_encoder.text_model.{TE_Q}.lora_A.weight": down_t,
        f"text_encoder.text_model.{TE_Q}.lora_B.weight": up_t,
    }
    save_safetensors(home.lora_dir / "peft.safetensors", state)
    before = Snapshot.of(sd1)
    w_k, w_t = weight(sd1, f"unet.{TO_K}.weight"), weight(sd1, f"text_encoder.{TE_Q}.weight")
    with apply(activator, sd1, "<lora:peft:0.6>"):
        assert before.changed(sd1) == {f"unet.{TO_K}.weight", f"text_encoder.{TE_Q}.weight"}
        torch.testing.assert_close(weight(sd1, f"unet.{TO_K}.weight"), w_k + 0.6 * up_k @ down_k, rtol=0, atol=1e-6)
        torch.testing.assert_close(
            weight(sd1, f"text_encoder.{TE_Q}.weight"), w_t + 0.6 * up_t @ down_t, rtol=0, atol=1e-6
        )
    before.assert_restored(sd1)


def test_old_diffusers_attention_processor_keys() -> None:
    down, up = torch.ones(2, 32), torch.ones(64, 2)
    parsed = parse_network(
        {
            f"unet.{TO_K.rsplit('.', 1)[0]}.processor.to_k_lora.down.weight": down,
            f"unet.{TO_K.rsplit('.', 1)[0]}.processor.to_k_lora.up.weight": up,
            "unet.mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.down.weight": down,
            "unet.mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight": up,
        }
    )
    assert set(parsed.updates) == {f"unet.{TO_K}", "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0"}
    assert parsed.unknown_keys == []


# --- LyCORIS: LoHa, LoKr, IA3, full, norm -------------------------------------------------------


def test_loha_linear(sd1: TinyModel, home: Any, activator: NetworkActivator) -> None:
    g = gen(31)
    layer = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    w1a, w1b, w2a, w2b = (
        randn(32, 4, generator=g),
        randn(4, 32, generator=g),
        randn(32, 4, generator=g),
        randn(4, 32, generator=g),
    )
    save_safetensors(
        home.lora_dir / "loha.safetensors",
        {
            f"{layer}.hada_w1_a": w1a,
            f"{layer}.hada_w1_b": w1b,
            f"{layer}.hada_w2_a": w2a,
            f"{layer}.hada_w2_b": w2b,
            f"{layer}.alpha": torch.tensor(2.0),
        },
    )
    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    before = Snapshot.of(sd1)
    w0 = weight(sd1, key)
    with apply(activator, sd1, "<lyco:loha:1.5>"):
        assert before.changed(sd1) == {key}
        torch.testing.assert_close(weight(sd1, key), w0 + 1.5 * 0.5 * (w1a @ w1b) * (w2a @ w2b), rtol=0, atol=1e-6)
    before.assert_restored(sd1)


def _cp(core: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """Reference Tucker rebuild: out[p, r, k, l] = sum_ij core[i, j, k, l] wa[i, p] wb[j, r]."""
    out = torch.zeros(wa.shape[1], wb.shape[1], *core.shape[2:])
    for i in range(core.shape[0]):
        for j in range(core.shape[1]):
            out += core[i, j][None, None] * torch.outer(wa[i], wb[j])[:, :, None, None]
    return out


def test_loha_conv_with_tucker_cores(sd1: TinyModel, home: Any, activator: NetworkActivator) -> None:
    g = gen(32)
    layer = "lora_unet_down_blocks_0_resnets_0_conv1"
    parts = {
        "hada_t1": randn(2, 2, 3, 3, generator=g),
        "hada_w1_a": randn(2, 32, generator=g),
        "hada_w1_b": randn(2, 32, generator=g),
        "hada_t2": randn(2, 2, 3, 3, generator=g),
        "hada_w2_a": randn(2, 32, generator=g),
        "hada_w2_b": randn(2, 32, generator=g),
    }
    save_safetensors(home.lora_dir / "lohacp.safetensors", {f"{layer}.{k}": v for k, v in parts.items()})
    w0 = weight(sd1, f"unet.{CONV1}.weight")
    with apply(activator, sd1, "<lora:lohacp:1>"):
        expected = _cp(parts["hada_t1"], parts["hada_w1_a"], parts["hada_w1_b"]) * _cp(
            parts["hada_t2"], parts["hada_w2_a"], parts["hada_w2_b"]
        )
        torch.testing.assert_close(weight(sd1, f"unet.{CONV1}.weight"), w0 + expected, rtol=0, atol=1e-6)


def test_lokr_linear_and_conv(sd1: TinyModel, home: Any, activator: NetworkActivator) -> None:
    g = gen(41)
    lin = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"  # [64, 32] = kron([8, 4], [8, 8])
    conv = "lora_unet_down_blocks_1_resnets_0_conv1"  # [64, 32, 3, 3] = kron([4, 2], [16, 16, 3, 3])
    p = {
        f"{lin}.lokr_w1": randn(8, 4, generator=g),
        f"{lin}.lokr_w2_a": randn(8, 2, generator=g),
        f"{lin}.lokr_w2_b": randn(2, 8, generator=g),
        f"{lin}.alpha": torch.tensor(1.0),
        f"{conv}.lokr_w1_a": randn(4, 2, generator=g),
        f"{conv}.lokr_w1_b": randn(2, 2, generator=g),
        f"{conv}.lokr_t2": randn(2, 2, 3, 3, generator=g),
        f"{conv}.lokr_w2_a": randn(2, 16, generator=g),
        f"{conv}.lokr_w2_b": randn(2, 16, generator=g),
        f"{conv}.alpha": torch.tensor(4.0),
    }
    save_safetensors(home.lora_dir / "lokr.safetensors", p)
    before = Snapshot.of(sd1)
    w_lin, w_conv = weight(sd1, f"unet.{TO_K}.weight"), weight(sd1, f"unet.{CONV2_64}.weight")
    with apply(activator, sd1, "<lora:lokr:1>"):
        assert before.changed(sd1) == {f"unet.{TO_K}.weight", f"unet.{CONV2_64}.weight"}
        expected_lin = torch.kron(p[f"{lin}.lokr_w1"], p[f"{lin}.lokr_w2_a"] @ p[f"{lin}.lokr_w2_b"]) * (1.0 / 2)
        torch.testing.assert_close(weight(sd1, f"unet.{TO_K}.weight"), w_lin + expected_lin, rtol=0, atol=1e-6)
        w1 = p[f"{conv}.lokr_w1_a"] @ p[f"{conv}.lokr_w1_b"]
        w2 = _cp(p[f"{conv}.lokr_t2"], p[f"{conv}.lokr_w2_a"], p[f"{conv}.lokr_w2_b"])
        expected_conv = torch.kron(w1[:, :, None, None], w2) * (4.0 / 2)
        torch.testing.assert_close(weight(sd1, f"unet.{CONV2_64}.weight"), w_conv + expected_conv, rtol=0, atol=1e-6)
    before.assert_restored(sd1)


def test_ia3_scales_rows_or_input_columns(sd1: TinyModel, home: Any, activator: NetworkActivator) -> None:
    g = gen(51)
    to_v = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v"
    w_out, w_in = randn(64, generator=g), randn(32, generator=g)
    save_safetensors(
        home.lora_dir / "ia3.safetensors",
        {
            f"{TO_K_KOHYA}.weight": w_out,
            f"{TO_K_KOHYA}.on_input": torch.tensor(False),
            f"{TO_K_KOHYA.replace('to_k', 'to_v')}.weight": w_in,
            f"{TO_K_KOHYA.replace('to_k', 'to_v')}.on_input": torch.tensor(True),
        },
    )
    k0, v0 = weight(sd1, f"unet.{TO_K}.weight"), weight(sd1, f"unet.{to_v}.weight")
    with apply(activator, sd1, "<lora:ia3:0.5>"):
        torch.testing.assert_close(
            weight(sd1, f"unet.{TO_K}.weight"), k0 * (1 + 0.5 * w_out[:, None]), rtol=0, atol=1e-6
        )
        torch.testing.assert_close(
            weight(sd1, f"unet.{to_v}.weight"), v0 * (1 + 0.5 * w_in[None, :]), rtol=0, atol=1e-6
        )


def test_full_diff_with_bias_diff_even_where_the_layer_has_no_bias(
    sd1: TinyModel, home: Any, activator: NetworkActivator
) -> None:
    g = gen(61)
    out0 = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0"
    diff, diff_b = randn(32, 32, generator=g), randn(32, generator=g)
    k_diff, k_diff_b = randn(64, 32, generator=g), randn(64, generator=g)
    save_safetensors(
        home.lora_dir / "full.safetensors",
        {
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.diff": diff,
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.diff_b": diff_b,
            f"{TO_K_KOHYA}.diff": k_diff,
            f"{TO_K_KOHYA}.diff_b": k_diff_b,
        },
    )
    before = Snapshot.of(sd1)
    w0, b0, k0 = (
        weight(sd1, f"unet.{out0}.weight"),
        weight(sd1, f"unet.{out0}.bias"),
        weight(sd1, f"unet.{TO_K}.weight"),
    )
    assert sd1.unet.get_submodule(TO_K).bias is None
    with apply(activator, sd1, "<lora:full:0.25>"):
        torch.testing.assert_close(weight(sd1, f"unet.{out0}.weight"), w0 + 0.25 * diff, rtol=0, atol=1e-6)
        torch.testing.assert_close(weight(sd1, f"unet.{out0}.bias"), b0 + 0.25 * diff_b, rtol=0, atol=1e-6)
        torch.testing.assert_close(weight(sd1, f"unet.{TO_K}.weight"), k0 + 0.25 * k_diff, rtol=0, atol=1e-6)
        torch.testing.assert_close(weight(sd1, f"unet.{TO_K}.bias"), 0.25 * k_diff_b, rtol=0, atol=1e-6)
    assert sd1.unet.get_submodule(TO_K).bias is None
    before.assert_restored(sd1)


def test_norm_layers(sd1: TinyModel, home: Any, activator: NetworkActivator) -> None:
    g = gen(71)
    ln = "down_blocks.0.attentions.0.transformer_blocks.0.norm1"
    gn = "down_blocks.0.resnets.0.norm1"
    parts = {n: randn(32, generator=g) for n in ("lw", "lb", "gw", "gb")}
    save_safetensors(
        home.lora_dir / "norm.safetensors",
        {
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_norm1.w_norm": parts["lw"],
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_norm1.b_norm": parts["lb"],
            "lora_unet_down_blocks_0_resnets_0_norm1.w_norm": parts["gw"],
            "lora_unet_down_blocks_0_resnets_0_norm1.b_norm": parts["gb"],
        },
    )
    before = Snapshot.of(sd1)
    with apply(activator, sd1, "<lora:norm:2>"):
        assert before.changed(sd1) == {f"unet.{ln}.weight", f"unet.{ln}.bias", f"unet.{gn}.weight", f"unet.{gn}.bias"}
        torch.testing.assert_close(
            weight(sd1, f"unet.{gn}.bias"), before.values[f"unet.{gn}.bias"] + 2 * parts["gb"], rtol=0, atol=1e-6
        )
        torch.testing.assert_close(
            weight(sd1, f"unet.{ln}.weight"), before.values[f"unet.{ln}.weight"] + 2 * parts["lw"], rtol=0, atol=1e-6
        )
    before.assert_restored(sd1)


# --- DoRA -------------------------------------------------------------------------------------


def test_dora_kohya_layout_normalises_input_columns(sd1: TinyModel, home: Any, activator: NetworkActivator) -> None:
    down, up = lora_pair(256, 32, 4, seed=81)
    magnitude = torch.rand(1, 32, generator=gen(82)) + 0.5
    save_safetensors(
        home.lora_dir / "dora.safetensors", {**kohya(FF_KOHYA, down, up, 2.0), f"{FF_KOHYA}.dora_scale": magnitude}
    )
    w0 = weight(sd1, f"unet.{FF}.weight")
    with apply(activator, sd1, "<lora:dora:0.5>"):
        merged = w0 + 0.5 * up @ down
        decomposed = merged * (magnitude / merged.norm(dim=0, keepdim=True))
        torch.testing.assert_close(weight(sd1, f"unet.{FF}.weight"), w0 + 0.5 * (decomposed - w0), rtol=0, atol=1e-5)


def test_dora_peft_magnitude_normalises_output_rows(sd1: TinyModel, home: Any, activator: NetworkActivator) -> None:
    down, up = lora_pair(256, 32, 4, seed=83)
    magnitude = torch.rand(256, generator=gen(84)) + 0.5
    save_safetensors(
        home.lora_dir / "pdora.safetensors",
        {
            f"unet.{FF}.lora_A.weight": down,
            f"unet.{FF}.lora_B.weight": up,
            f"unet.{FF}.lora_magnitude_vector": magnitude,
        },
    )
    w0 = weight(sd1, f"unet.{FF}.weight")
    with apply(activator, sd1, "<lora:pdora:1>"):
        merged = w0 + up @ down
        expected = merged * (magnitude[:, None] / merged.norm(dim=1, keepdim=True))
        torch.testing.assert_close(weight(sd1, f"unet.{FF}.weight"), expected, rtol=0, atol=1e-5)


# --- SDXL -----------------------------------------------------------------------------------------


def test_sdxl_kohya_names_te1_te2_and_sgm_unet(sdxl: TinyModel, home: Any, activator: NetworkActivator) -> None:
    down1, up1 = lora_pair(32, 32, 2, seed=91)  # CLIP-L q_proj
    down2, up2 = lora_pair(128, 64, 2, seed=92)  # OpenCLIP-G fc1 [128, 64]
    down3, up3 = lora_pair(64, 96, 2, seed=93)  # down_blocks.1...attn2.to_k [64, 96] = input_blocks.3.1
    down4, up4 = lora_pair(128, 128, 2, seed=94)  # mid_block attn1.to_q = middle_block.1
    state = {
        **kohya("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", down1, up1, 2.0),
        **kohya("lora_te2_text_model_encoder_layers_1_mlp_fc1", down2, up2, 2.0),
        **kohya("lora_unet_input_blocks_3_1_transformer_blocks_0_attn2_to_k", down3, up3, 2.0),
        **kohya("lora_unet_middle_block_1_transformer_blocks_0_attn1_to_q", down4, up4, 2.0),
    }
    save_safetensors(home.lora_dir / "xl.safetensors", state)
    keys = {
        "te1": "text_encoder.encoder.layers.0.self_attn.q_proj.weight",
        "te2": "text_encoder_2.text_model.encoder.layers.1.mlp.fc1.weight",
        "k": "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight",
        "mid": "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight",
    }
    before = Snapshot.of(sdxl)
    with apply(activator, sdxl, "<lora:xl:1:0.5>") as active:
        assert before.changed(sdxl) == set(keys.values())
        assert active.warnings == []
        torch.testing.assert_close(
            weight(sdxl, keys["te2"]), before.values[keys["te2"]] + up2 @ down2, rtol=0, atol=1e-6
        )
        torch.testing.assert_close(
            weight(sdxl, keys["k"]), before.values[keys["k"]] + 0.5 * up3 @ down3, rtol=0, atol=1e-6
        )
    before.assert_restored(sdxl)


def test_sd1_lora_on_sdxl_warns_and_applies_only_fitting_layers(
    sdxl: TinyModel, home: Any, activator: NetworkActivator
) -> None:
    fits_down, fits_up = lora_pair(64, 64, 2, seed=95)  # attn1.to_q exists in both with 64 channels
    state = {
        **kohya(TE_Q_KOHYA, *lora_pair(32, 32, 2, seed=96), 2.0),  # SDXL has lora_te1_/lora_te2_ only
        **kohya(TO_K_KOHYA, *lora_pair(64, 32, 2, seed=97), 2.0),  # SDXL's to_k is [64, 96]
        **kohya(
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", *lora_pair(32, 32, 2, seed=98), 2.0
        ),
        **kohya("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q", fits_down, fits_up, 2.0),
    }
    save_safetensors(
        home.lora_dir / "sd1style.safetensors", state, metadata={"ss_output_name": "sd1style", "ss_v2": "False"}
    )
    before = Snapshot.of(sdxl)
    with apply(activator, sdxl, "<lora:sd1style:1>") as active:
        assert before.changed(sdxl) == {"unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"}
        assert len(active.warnings) == 1
        assert "3 of 4 layers do not fit this sdxl model" in active.warnings[0]
        assert "made for sd1" in active.warnings[0]
        assert torch.isfinite(unet_out(sdxl)).all()
    before.assert_restored(sdxl)


# --- several networks, errors ---------------------------------------------------------------


def test_two_loras_on_one_layer_add_up_and_alias_resolves(
    sd1: TinyModel, home: Any, activator: NetworkActivator
) -> None:
    d1, u1 = lora_pair(64, 32, 4, seed=101)
    d2, u2 = lora_pair(64, 32, 4, seed=102)
    save_safetensors(
        home.lora_dir / "sub" / "first_v1.safetensors", kohya(TO_K_KOHYA, d1, u1, 4.0), {"ss_output_name": "first"}
    )
    save_safetensors(home.lyco_dir / "second.safetensors", kohya(TO_K_KOHYA, d2, u2, 4.0))
    w0 = weight(sd1, f"unet.{TO_K}.weight")
    with apply(activator, sd1, "<lora:first:0.5> and <lyco:second:2>") as active:
        torch.testing.assert_close(
            weight(sd1, f"unet.{TO_K}.weight"), w0 + 0.5 * u1 @ d1 + 2 * u2 @ d2, rtol=0, atol=1e-6
        )
        assert [x.name for x in active.loras] == ["first", "second"]


def test_missing_network_bad_arguments_and_unsupported_layers_warn(
    sd1: TinyModel, home: Any, activator: NetworkActivator
) -> None:
    save_safetensors(
        home.lora_dir / "oft.safetensors",
        {f"{TO_K_KOHYA}.oft_blocks": torch.zeros(4, 16, 16), f"{TO_K_KOHYA}.alpha": torch.tensor(1.0)},
    )
    before = Snapshot.of(sd1)
    with apply(activator, sd1, "<lora:nope:1><lora:oft:abc><lora:oft:1><foo:bar>") as active:
        assert before.changed(sd1) == set()
    text = "\n".join(active.warnings)
    assert "Failed to find networks: nope" in text
    assert "<lora:oft:abc> ignored" in text
    assert "OFT layers are not supported" in text
    assert "unknown extra network <foo:...>" in text
