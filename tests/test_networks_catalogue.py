"""The catalogue (names, aliases, family, hashes, cards, metadata), infotext hashes and pasting by hash,
and the network settings."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from modules.core.options import Options
from modules.core.paths import Paths
from modules.core.shared_options import core_registry
from modules.models.hashes import HashCache, addnet_hash_safetensors
from modules.networks.catalogue import NetworkCatalogue, family_from_shapes
from modules.networks.infotext import format_hashes, parse_hashes, rewrite_tags_by_hash
from modules.networks.options import NETWORK_OPTIONS, NetworkOptions
from modules.networks.testing import save_safetensors, save_torch
from tests.fixtures_models import models_home

LAYER = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"


@pytest.fixture
def home(tmp_path: Path) -> Paths:
    return models_home(tmp_path)


def lora_state(width: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        f"{LAYER}.lora_down.weight": torch.randn(4, width, generator=g),
        f"{LAYER}.lora_up.weight": torch.randn(64, 4, generator=g),
        f"{LAYER}.alpha": torch.tensor(4.0),
    }


def test_lists_loras_from_both_folders_with_alias_metadata_and_family(home: Paths) -> None:
    metadata = {
        "ss_output_name": "inkstyle",
        "ss_base_model_version": "sdxl_base_v1-0",
        "ss_tag_frequency": json.dumps({"ink": {"ink": 3}}),
        "ss_resolution": "(1024, 1024)",
    }
    save_safetensors(home.lora_dir / "styles" / "ink_v2.safetensors", lora_state(), metadata)
    save_safetensors(home.lyco_dir / "plain.safetensors", lora_state())
    save_torch(home.lora_dir / "old.pt", lora_state())
    catalogue = NetworkCatalogue(home, HashCache(home.hash_cache_file))
    listed = {info.name: info for info in catalogue.loras()}
    assert set(listed) == {"ink_v2", "plain", "old"}
    ink = listed["ink_v2"]
    assert (ink.alias, ink.family, ink.sd_version) == ("inkstyle", "sdxl", "SDXL")
    assert ink.metadata["ss_tag_frequency"] == {"ink": {"ink": 3}}  # JSON values decoded
    assert list(ink.metadata)[:2] == ["ss_resolution", "ss_tag_frequency"]  # A1111's display order first
    assert ink.api_json() == {"name": "ink_v2", "alias": "inkstyle", "path": str(ink.path), "metadata": ink.metadata}
    assert (listed["plain"].alias, listed["plain"].family, listed["plain"].sd_version) == ("plain", None, "Unknown")
    assert catalogue.find_lora("inkstyle") is ink and catalogue.find_lora("ink_v2") is ink
    assert catalogue.find_lora("nothing") is None
    assert catalogue.display_name(ink) == "inkstyle"
    assert catalogue.display_name(ink, "Filename") == "ink_v2"


@pytest.mark.parametrize(
    ("shapes", "family"),
    [
        ({"lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (8, 768)}, "sd1"),
        ({"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": (8, 1024)}, "sd2"),
        ({"unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": (8, 2048)}, "sdxl"),
        ({"lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (8, 1280)}, "sdxl"),
        ({"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (8, 1024)}, "sd2"),
        ({"lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_a": (320, 8)}, None),
    ],
)
def test_family_from_key_shapes(shapes: dict[str, tuple[int, ...]], family: str | None) -> None:
    assert family_from_shapes(shapes) == family


def test_cards_preview_description_user_metadata(home: Paths) -> None:
    path = save_safetensors(home.lora_dir / "card.safetensors", lora_state())
    Image.new("RGB", (8, 8)).save(home.lora_dir / "card.preview.png")
    (home.lora_dir / "card.description.txt").write_text("from the file", encoding="utf-8")
    info = NetworkCatalogue(home, None).find_lora("card")
    assert info is not None
    assert info.card.preview == home.lora_dir / "card.preview.png"
    assert info.card.description == "from the file"
    Image.new("RGB", (8, 8)).save(home.lora_dir / "card.png")  # <name>.png comes before <name>.preview.png
    (home.lora_dir / "card.txt").write_text("plain txt first", encoding="utf-8")
    user = {
        "description": "mine",
        "activation text": "ink style",
        "preferred weight": 0.7,
        "notes": "n",
        "sd version": "SD1",
    }
    (home.lora_dir / "card.json").write_text(json.dumps(user, indent=4), encoding="utf-8")
    info = NetworkCatalogue(home, None).find_lora("card")
    assert info is not None and info.path == path
    assert info.card.preview == home.lora_dir / "card.png"
    assert info.card.description == "mine"  # user metadata wins
    assert (info.activation_text, info.preferred_weight, info.notes) == ("ink style", 0.7, "n")
    (home.lora_dir / "card.json").write_text("{broken", encoding="utf-8")
    info = NetworkCatalogue(home, None).find_lora("card")
    assert info is not None and info.card.user_metadata == {} and info.card.description == "plain txt first"


def test_hashes_addnet_sha256_and_metadata(home: Paths) -> None:
    st = save_safetensors(home.lora_dir / "st.safetensors", lora_state())
    pt = save_torch(home.lora_dir / "pt.pt", lora_state())
    save_safetensors(home.lora_dir / "given.safetensors", lora_state(), {"sshs_model_hash": "abcdef0123456789" * 4})
    catalogue = NetworkCatalogue(home, HashCache(home.hash_cache_file))
    st_info, pt_info, given = (catalogue.find_lora(n) for n in ("st", "pt", "given"))
    assert st_info is not None and pt_info is not None and given is not None
    assert catalogue.lora_shorthash(st_info) == addnet_hash_safetensors(st)[:12]
    assert addnet_hash_safetensors(st) != hashlib.sha256(st.read_bytes()).hexdigest()
    assert catalogue.lora_shorthash(pt_info) == hashlib.sha256(pt.read_bytes()).hexdigest()[:12]
    assert catalogue.lora_shorthash(given) == "abcdef012345"
    assert NetworkCatalogue(home, None).lora_shorthash(st_info) is None  # --no-hashing


def test_pasting_resolves_loras_by_hash(home: Paths) -> None:
    save_safetensors(home.lora_dir / "local_file.safetensors", lora_state(seed=1), {"ss_output_name": "localalias"})
    catalogue = NetworkCatalogue(home, HashCache(home.hash_cache_file))
    info = catalogue.find_lora("localalias")
    assert info is not None
    prompt = "a cat <lora:their_name:0.8> <lora:unknown:1> <lora:their_name:te=1>"
    hashes = f"their_name: {addnet_hash_safetensors(info.path)[:12]}, unknown: 000000000000"
    # like A1111, only files whose hash is already known resolve, unless asked to hash
    assert catalogue.rewrite_tags_by_hash(prompt, hashes) == prompt
    resolved = catalogue.rewrite_tags_by_hash(prompt, hashes, compute_missing=True)
    assert resolved == "a cat <lora:localalias:0.8> <lora:unknown:1> <lora:localalias:te=1>"
    assert catalogue.rewrite_tags_by_hash(prompt, hashes, preferred_name="Filename") == (
        "a cat <lora:local_file:0.8> <lora:unknown:1> <lora:local_file:te=1>"
    )


def test_ambiguous_alias_falls_back_to_file_names(home: Paths) -> None:
    save_safetensors(home.lora_dir / "a.safetensors", lora_state(seed=1), {"ss_output_name": "same"})
    save_safetensors(home.lora_dir / "b.safetensors", lora_state(seed=2), {"ss_output_name": "same"})
    catalogue = NetworkCatalogue(home, None)
    a = catalogue.find_lora("a")
    assert a is not None and catalogue.display_name(a) == "a"


def test_hash_text_format_and_parse() -> None:
    text = format_hashes({"my:lora,v2": "0123456789ab", "other": "ba9876543210"})
    assert text == "mylorav2: 0123456789ab, other: ba9876543210"
    assert parse_hashes(text) == {"mylorav2": "0123456789ab", "other": "ba9876543210"}
    assert parse_hashes("junk, x: y") == {"x": "y"}
    assert rewrite_tags_by_hash("<lora:x:1>", {"x": "h"}, lambda h: "found" if h == "h" else None) == "<lora:found:1>"


def test_network_options_from_settings(tmp_path: Path) -> None:
    bare = Options(core_registry(), tmp_path / "config.json")
    assert NetworkOptions.from_settings(bare.view()) == NetworkOptions()  # keys not registered: defaults
    registry = core_registry()
    registry.extend(NETWORK_OPTIONS)
    options = Options(registry, tmp_path / "config.json")
    options.set("lora_preferred_name", "Filename")
    options.set("lora_functional", True)
    view = options.view({"textual_inversion_add_hashes_to_infotext": False, "lora_in_memory_limit": 3})
    assert NetworkOptions.from_settings(view) == NetworkOptions("Filename", True, False, True, 3)
