"""Patching mechanics: no nesting, restore after errors, functional mode, kept patches reused only
while valid, inpainting conv_in padding."""

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
from modules.networks import lora_patch
from modules.networks.activation import ActiveNetworks, NetworkActivator, NetworksAlreadyActive
from modules.networks.catalogue import NetworkCatalogue
from modules.networks.lora_formats import LoraUpdate, fit_to_shape
from modules.networks.options import NetworkOptions
from modules.networks.testing import Snapshot, TinyModel, save_safetensors, unet_output
from tests.fixtures_models import models_home
from tools.tiny_models import tiny_pipeline

TO_K = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"  # [64, 32] in tiny SD1
TO_K_KOHYA = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
CONV1_LDM = "lora_unet_input_blocks_1_0_in_layers_2"  # down_blocks.0.resnets.0.conv1 [32, 32, 3, 3]


@pytest.fixture(scope="module")
def sd1(tokenizer_cache: Path) -> TinyModel:
    return TinyModel(ModelFamily.SD1, tiny_pipeline(ModelFamily.SD1, tokenizer_cache, seed=12))


@pytest.fixture
def home(tmp_path: Path) -> Paths:
    return models_home(tmp_path)


@pytest.fixture
def activator(home: Paths) -> NetworkActivator:
    return NetworkActivator(NetworkCatalogue(home, HashCache(home.hash_cache_file)))


def apply(
    activator: NetworkActivator, model: TinyModel, prompt: str, **opts: Any
) -> contextlib.AbstractContextManager[ActiveNetworks]:
    return activator.activate(model, parse_extra_network_tags(prompt).networks, opts=NetworkOptions(**opts))


def lora(layer: str, out_f: int, in_f: int, seed: int, kernel: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tail = (1,) * len(kernel)
    return {
        f"{layer}.lora_down.weight": torch.randn(2, in_f, *kernel, generator=g) * 0.1,
        f"{layer}.lora_up.weight": torch.randn(out_f, 2, *tail, generator=g) * 0.1,
        f"{layer}.alpha": torch.tensor(2.0),
    }


def weight_of(model: TinyModel, name: str) -> torch.Tensor:
    return model.unet.get_submodule(name).weight


def test_activation_cannot_nest_on_one_model(sd1: TinyModel, home: Paths, activator: NetworkActivator) -> None:
    save_safetensors(home.lora_dir / "n.safetensors", lora(TO_K_KOHYA, 64, 32, seed=5))
    before = Snapshot.of(sd1)
    with apply(activator, sd1, "<lora:n:1>"), pytest.raises(NetworksAlreadyActive), apply(activator, sd1, "<lora:n:1>"):
        pass
    before.assert_restored(sd1)
    with contextlib.suppress(RuntimeError), apply(activator, sd1, "<lora:n:1>"):
        raise RuntimeError("job failed")
    before.assert_restored(sd1)


def test_functional_mode_gives_the_same_output_without_touching_weights(
    sd1: TinyModel, home: Paths, activator: NetworkActivator
) -> None:
    save_safetensors(
        home.lora_dir / "f.safetensors", {**lora(TO_K_KOHYA, 64, 32, 111), **lora(CONV1_LDM, 32, 32, 112, (3, 3))}
    )
    base = unet_output(sd1)
    with apply(activator, sd1, "<lora:f:1>"):
        patched = unet_output(sd1)
    before = Snapshot.of(sd1)
    with apply(activator, sd1, "<lora:f:1>", functional=True) as active:
        assert active.functional
        assert before.changed(sd1) == set()
        torch.testing.assert_close(unet_output(sd1), patched, rtol=1e-4, atol=1e-5)
    assert torch.equal(unet_output(sd1), base)


def test_inpainting_conv_in_gets_zero_padded_delta() -> None:
    down, up = torch.randn(2, 4, 3, 3), torch.randn(32, 2, 1, 1)
    update = LoraUpdate(up=up, down=down)
    weight9 = torch.randn(32, 9, 3, 3)
    assert update.fits(weight9.shape)
    delta = update.weight_delta(weight9)
    assert delta.shape == weight9.shape
    assert torch.equal(delta[:, 4:], torch.zeros(32, 5, 3, 3))
    assert fit_to_shape(torch.ones(32 * 4 * 9), torch.Size([32, 9, 3, 3]))[:, :4].sum() == 32 * 4 * 9


def test_the_same_networks_reuse_the_kept_patch(
    sd1: TinyModel, home: Paths, activator: NetworkActivator, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_safetensors(home.lora_dir / "k.safetensors", lora(TO_K_KOHYA, 64, 32, seed=1))
    with apply(activator, sd1, "<lora:k:0.9>"):
        first = weight_of(sd1, TO_K).detach().clone()
        first_ptr = weight_of(sd1, TO_K).data_ptr()
    calls: list[int] = []
    real = lora_patch.compute_patch

    def counting(*args: Any, **kwargs: Any) -> list[lora_patch.PatchedLayer]:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("modules.networks.activation.compute_patch", counting)
    before = Snapshot.of(sd1)
    with apply(activator, sd1, "<lora:k:0.9>"):
        assert weight_of(sd1, TO_K).data_ptr() == first_ptr and torch.equal(weight_of(sd1, TO_K), first)
    assert calls == []
    before.assert_restored(sd1)
    with apply(activator, sd1, "<lora:k:0.5>"):  # another multiplier: computed again
        assert not torch.equal(weight_of(sd1, TO_K), first)
    assert calls == [1]


def test_a_kept_patch_is_not_used_once_the_base_weights_changed(
    sd1: TinyModel, home: Paths, activator: NetworkActivator
) -> None:
    save_safetensors(home.lora_dir / "k2.safetensors", lora(TO_K_KOHYA, 64, 32, seed=2))
    with apply(activator, sd1, "<lora:k2:1>"):
        patched_before = weight_of(sd1, TO_K).detach().clone()
    original = weight_of(sd1, TO_K).detach().clone()
    with torch.no_grad():
        weight_of(sd1, TO_K).add_(1.0)  # e.g. weights reloaded in place
    try:
        with apply(activator, sd1, "<lora:k2:1>"):
            torch.testing.assert_close(weight_of(sd1, TO_K), patched_before + 1.0, rtol=0, atol=1e-6)
    finally:
        with torch.no_grad():
            weight_of(sd1, TO_K).copy_(original)


def test_activator_without_kept_patches(sd1: TinyModel, home: Paths) -> None:
    save_safetensors(home.lora_dir / "k3.safetensors", lora(TO_K_KOHYA, 64, 32, seed=3))
    activator = NetworkActivator(NetworkCatalogue(home, None), keep_last_patch=False)
    with apply(activator, sd1, "<lora:k3:1>"):
        pointer = weight_of(sd1, TO_K).data_ptr()
    assert activator._patches.get(sd1.unet) is None
    before = Snapshot.of(sd1)
    with apply(activator, sd1, "<lora:k3:1>"):
        assert weight_of(sd1, TO_K).data_ptr() != before.pointers[f"unet.{TO_K}.weight"]
    assert pointer != before.pointers[f"unet.{TO_K}.weight"]
    before.assert_restored(sd1)


def test_every_format_at_weight_zero_is_the_base_and_is_restored_after(
    sd1: TinyModel, home: Paths, activator: NetworkActivator
) -> None:
    """One file mixing all layer types (as LyCORIS files may): weight 0 changes nothing, weight 1
    changes exactly the named layers, leaving restores every parameter bit for bit."""
    g = torch.Generator().manual_seed(9)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.1

    attn = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0"
    state = {
        **lora(TO_K_KOHYA, 64, 32, seed=4),  # LoRA
        f"{attn}_attn1_to_q.hada_w1_a": r(32, 2),
        f"{attn}_attn1_to_q.hada_w1_b": r(2, 32),  # LoHa
        f"{attn}_attn1_to_q.hada_w2_a": r(32, 2),
        f"{attn}_attn1_to_q.hada_w2_b": r(2, 32),
        f"{attn}_attn1_to_k.lokr_w1": r(4, 4),
        f"{attn}_attn1_to_k.lokr_w2": r(8, 8),  # LoKr
        f"{attn}_attn1_to_v.weight": r(32),
        f"{attn}_attn1_to_v.on_input": torch.tensor(False),  # IA3
        f"{attn}_attn1_to_out_0.diff": r(32, 32),
        f"{attn}_attn1_to_out_0.diff_b": r(32),  # full
        f"{attn}_norm2.w_norm": r(32),
        f"{attn}_norm2.b_norm": r(32),  # norm
        **lora(f"{attn}_ff_net_2", 32, 128, seed=6),  # LoRA + DoRA
        f"{attn}_ff_net_2.dora_scale": torch.rand(1, 128, generator=g) + 0.5,
        **lora(CONV1_LDM, 32, 32, seed=7, kernel=(3, 3)),  # LoCon
    }
    save_safetensors(home.lora_dir / "mixed.safetensors", state)
    base = unet_output(sd1)
    before = Snapshot.of(sd1)
    with apply(activator, sd1, "<lora:mixed:0>") as active:
        assert before.changed(sd1) == set() and active.layers_patched == 0
        assert torch.equal(unet_output(sd1), base)
    with apply(activator, sd1, "<lora:mixed:1>") as active:
        assert active.warnings == [] and active.layers_patched == 8
        d = "unet.down_blocks.0.attentions.0.transformer_blocks.0"
        assert before.changed(sd1) == {
            f"unet.{TO_K}.weight",
            f"{d}.attn1.to_q.weight",
            f"{d}.attn1.to_k.weight",
            f"{d}.attn1.to_v.weight",
            f"{d}.attn1.to_out.0.weight",
            f"{d}.attn1.to_out.0.bias",
            f"{d}.norm2.weight",
            f"{d}.norm2.bias",
            f"{d}.ff.net.2.weight",
            "unet.down_blocks.0.resnets.0.conv1.weight",
        }
        assert not torch.allclose(unet_output(sd1), base)
    before.assert_restored(sd1)
    assert torch.equal(unet_output(sd1), base)


@pytest.mark.parametrize(
    ("family", "names"),
    [
        (
            ModelFamily.SD2,
            {
                "lora_te_text_model_encoder_layers_1_mlp_fc1": ("text_encoder", "encoder.layers.1.mlp.fc1"),
                "lora_unet_input_blocks_1_1_proj_in": ("unet", "down_blocks.0.attentions.0.proj_in"),
                "lora_unet_output_blocks_7_1_transformer_blocks_0_ff_net_2": (
                    "unet",
                    "up_blocks.3.attentions.1.transformer_blocks.0.ff.net.2",
                ),
            },
        ),
        (
            ModelFamily.SDXL_REFINER,
            {
                "lora_te2_text_model_encoder_layers_0_self_attn_k_proj": (
                    "text_encoder_2",
                    "text_model.encoder.layers.0.self_attn.k_proj",
                ),
                "text_encoder_2.text_model.encoder.layers.0.self_attn.k_proj": (
                    "text_encoder_2",
                    "text_model.encoder.layers.0.self_attn.k_proj",
                ),
                "lora_unet_middle_block_1_proj_out": ("unet", "mid_block.attentions.0.proj_out"),
                "lora_unet_out_2": ("unet", "conv_out"),
            },
        ),
    ],
)
def test_layer_names_of_other_families(family: ModelFamily, names: dict[str, tuple[str, str]]) -> None:
    from modules.networks.keymap import ModelLayers
    from tools.tiny_models import tiny_parts

    parts = tiny_parts(family)
    layers = ModelLayers(parts.unet, parts.text_encoders, family)
    for key, (component, module) in names.items():
        target = layers.find(key)
        assert target is not None, key
        assert (target.component, target.name) == (component, module), key
    te1 = layers.find("lora_te1_text_model_encoder_layers_0_self_attn_k_proj")
    # single-encoder families accept lora_te1_ like lora_te_ (A1111); the refiner has no CLIP-L
    assert (te1 is None) == (family == ModelFamily.SDXL_REFINER)
