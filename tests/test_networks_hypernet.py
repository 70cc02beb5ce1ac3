"""A1111 hypernetwork files: structure and state-dict layout, the k/v transform on every UNet
attention, strength 0 vs 1, clear errors for unknown activations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from modules.core.paths import Paths
from modules.generation.prompt_parser import parse_extra_network_tags
from modules.models.families import ModelFamily
from modules.models.hashes import HashCache
from modules.networks.activation import NetworkActivator
from modules.networks.catalogue import NetworkCatalogue
from modules.networks.hypernetworks import UnsupportedHypernetwork, load_hypernetwork
from modules.networks.options import NetworkOptions
from modules.networks.testing import Snapshot, TinyModel, a1111_hypernetwork, save_torch, unet_output
from tests.fixtures_models import models_home
from tools.tiny_models import tiny_pipeline


@pytest.fixture(scope="module")
def sd1(tokenizer_cache: Path) -> TinyModel:
    return TinyModel(ModelFamily.SD1, tiny_pipeline(ModelFamily.SD1, tokenizer_cache, seed=8))


@pytest.fixture
def home(tmp_path: Path) -> Paths:
    return models_home(tmp_path)


@pytest.fixture
def activator(home: Paths) -> NetworkActivator:
    return NetworkActivator(NetworkCatalogue(home, HashCache(home.hash_cache_file)))


def rnd(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.3


def relu_pair(width: int, seed: int) -> dict[str, torch.Tensor]:
    """[1, 2, 1] with relu, no layer norm, no dropout: Linear(0), ReLU(1), Linear(2)."""
    return {
        "linear.0.weight": rnd(2 * width, width, seed=seed),
        "linear.0.bias": rnd(2 * width, seed=seed + 1),
        "linear.2.weight": rnd(width, 2 * width, seed=seed + 2),
        "linear.2.bias": rnd(width, seed=seed + 3),
    }


def relu_reference(x: torch.Tensor, sd: dict[str, torch.Tensor], strength: float) -> torch.Tensor:
    hidden = F.relu(x @ sd["linear.0.weight"].T + sd["linear.0.bias"])
    return x + (hidden @ sd["linear.2.weight"].T + sd["linear.2.bias"]) * strength


@pytest.fixture
def hypernet(home: Paths) -> dict[int, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    # widths of the tiny SD1 UNet: context 32, and hidden states 32 / 64 / 128 for self-attention
    modules = {w: (relu_pair(w, seed=w), relu_pair(w, seed=w + 50)) for w in (32, 64)}
    save_torch(home.hypernetwork_dir / "anime.pt", a1111_hypernetwork(modules, name="anime_3000"))
    save_torch(home.hypernetwork_dir / "None.pt", a1111_hypernetwork(modules))
    return modules


def test_strength_zero_is_the_base_output_and_one_differs(
    sd1: TinyModel, activator: NetworkActivator, hypernet: object
) -> None:
    base = unet_output(sd1)
    before = Snapshot.of(sd1)
    for strength, changes in ((0.0, False), (1.0, True), (0.5, True)):
        networks = parse_extra_network_tags(f"<hypernet:anime:{strength}>").networks
        with activator.activate(sd1, networks, opts=NetworkOptions()) as active:
            out = unet_output(sd1)
            assert before.changed(sd1) == set()  # weights are never touched
            assert [(h.name, h.multiplier, h.widths) for h in active.hypernetworks] == [("anime", strength, [32, 64])]
            assert active.infotext_params() == {}  # A1111 keeps hypernetworks as prompt tags only
        assert torch.equal(out, base) is not changes
    assert torch.equal(unet_output(sd1), base)


def test_keys_and_values_of_every_attention_get_the_transform(
    sd1: TinyModel,
    activator: NetworkActivator,
    hypernet: dict[int, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]],
) -> None:
    block = sd1.unet.get_submodule("down_blocks.1.attentions.0.transformer_blocks.0")
    seen: dict[str, torch.Tensor] = {}

    def record(name: str):
        return lambda _m, args: seen.update({name: args[0].detach().clone()})

    originals: dict[str, torch.Tensor] = {}
    handles = [
        getattr(block, attn).to_q.register_forward_pre_hook(
            lambda _m, args, attn=attn: originals.update({attn: args[0].detach().clone()})
        )
        for attn in ("attn1",)
    ]
    networks = parse_extra_network_tags("<hypernet:anime:0.7>").networks
    with activator.activate(sd1, networks):
        handles += [getattr(block, a).to_k.register_forward_pre_hook(record(f"{a}.k")) for a in ("attn1", "attn2")]
        handles += [getattr(block, a).to_v.register_forward_pre_hook(record(f"{a}.v")) for a in ("attn1", "attn2")]
        context = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(3))
        x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            sd1.unet(x, torch.tensor([10]), encoder_hidden_states=context)
    for handle in handles:
        handle.remove()
    k32, v32 = hypernet[32]
    torch.testing.assert_close(seen["attn2.k"][0], relu_reference(context[0], k32, 0.7), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(seen["attn2.v"][0], relu_reference(context[0], v32, 0.7), rtol=1e-5, atol=1e-6)
    # self-attention: the 64-wide hidden states (what to_q sees) go through the 64-wide pair
    k64, _ = hypernet[64]
    torch.testing.assert_close(seen["attn1.k"], relu_reference(originals["attn1"], k64, 0.7), rtol=1e-5, atol=1e-6)


def test_layer_norm_and_dropout_structures_keep_a1111_state_dict_indices(tmp_path: Path) -> None:
    w = 8
    # [1, 2, 1], relu, layer norm, activate_output False: Linear 0, ReLU 1, LayerNorm 2, Linear 3, LayerNorm 4
    normed = {
        "linear.0.weight": rnd(16, w, seed=1),
        "linear.0.bias": rnd(16, seed=2),
        "linear.2.weight": 1 + rnd(16, seed=3),
        "linear.2.bias": rnd(16, seed=4),
        "linear.3.weight": rnd(w, 16, seed=5),
        "linear.3.bias": rnd(w, seed=6),
        "linear.4.weight": 1 + rnd(w, seed=7),
        "linear.4.bias": rnd(w, seed=8),
    }
    path = save_torch(tmp_path / "n.pt", a1111_hypernetwork({w: (normed, normed)}, is_layer_norm=True))
    module = load_hypernetwork(path).modules[w][0]
    x = rnd(3, w, seed=9)
    hidden = F.layer_norm(
        F.relu(x @ normed["linear.0.weight"].T + normed["linear.0.bias"]),
        (16,),
        normed["linear.2.weight"],
        normed["linear.2.bias"],
    )
    out = F.layer_norm(
        hidden @ normed["linear.3.weight"].T + normed["linear.3.bias"],
        (w,),
        normed["linear.4.weight"],
        normed["linear.4.bias"],
    )
    torch.testing.assert_close(module(x), out, rtol=1e-5, atol=1e-6)

    # [1, 2, 2, 1] with dropout (not after the last layer): Linear 0, act 1, Dropout 2, Linear 3, act 4, Linear 5
    dropped = {
        f"linear.{i}.{p}": rnd(16 if i < 5 else w, (w if i == 0 else 16), seed=i)
        if p == "weight"
        else rnd(16 if i < 5 else w, seed=i + 10)
        for i in (0, 3, 5)
        for p in ("weight", "bias")
    }
    path = save_torch(
        tmp_path / "d.pt",
        a1111_hypernetwork(
            {w: (dropped, dropped)}, layer_structure=(1, 2, 2, 1), activation_func="elu", use_dropout=True
        ),
    )
    net = load_hypernetwork(path)
    assert net.structure.dropout == (0.0, 0.3, 0.0, 0.0)
    assert [type(m).__name__ for m in net.modules[w][0].children()] == [
        "Linear",
        "ELU",
        "Dropout",
        "Linear",
        "ELU",
        "Linear",
    ]


def test_old_linear1_linear2_files_load(tmp_path: Path) -> None:
    old = {
        "linear1.weight": rnd(16, 8, seed=1),
        "linear1.bias": rnd(16, seed=2),
        "linear2.weight": rnd(8, 16, seed=3),
        "linear2.bias": rnd(8, seed=4),
    }
    path = save_torch(tmp_path / "old.pt", {8: (old, old), "step": 5})
    net = load_hypernetwork(path)
    x = rnd(2, 8, seed=5)
    expected = (x @ old["linear1.weight"].T + old["linear1.bias"]) @ old["linear2.weight"].T + old["linear2.bias"]
    torch.testing.assert_close(net.modules[8][0](x), expected, rtol=1e-5, atol=1e-6)
    assert net.name == "old" and net.step == 5


def test_unknown_activation_is_a_clear_error(home: Paths, sd1: TinyModel, activator: NetworkActivator) -> None:
    path = save_torch(
        home.hypernetwork_dir / "weird.pt",
        a1111_hypernetwork({32: (relu_pair(32, 1), relu_pair(32, 2))}, activation_func="wobble"),
    )
    with pytest.raises(UnsupportedHypernetwork, match="unsupported activation function 'wobble'"):
        load_hypernetwork(path)
    base = unet_output(sd1)
    with activator.activate(sd1, parse_extra_network_tags("<hypernet:weird:1><hypernet:ghost>").networks) as active:
        assert torch.equal(unet_output(sd1), base)
    assert any("hypernetwork 'weird' could not be loaded" in w and "'wobble'" in w for w in active.warnings)
    assert "hypernetwork 'ghost' not found" in active.warnings


def test_mismatched_weights_are_a_clear_error(tmp_path: Path) -> None:
    path = save_torch(tmp_path / "bad.pt", a1111_hypernetwork({32: (relu_pair(16, 1), relu_pair(32, 2))}))
    with pytest.raises(UnsupportedHypernetwork, match="weights for width 32 do not fit"):
        load_hypernetwork(path)


def test_catalogue_lists_hypernetworks_but_not_none(home: Paths, hypernet: object) -> None:
    listed = NetworkCatalogue(home, None).hypernetworks()
    assert [h.api_json() for h in listed] == [{"name": "anime", "path": str(home.hypernetwork_dir / "anime.pt")}]
