"""The model manager: names and aliases, loading, RAM cache and swaps, failed loads, VAE swaps."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
import safetensors.torch
import torch

from modules.core.devices import DevicePolicy
from modules.core.paths import Paths
from modules.models.errors import (
    InvalidModelFile,
    ModelError,
    ModelNotFound,
    UnsafeModelFile,
    UnsupportedModel,
    WrongModelKind,
)
from modules.models.families import ModelFamily
from modules.models.hashes import HashCache, legacy_model_hash
from modules.models.manager import LoadedModel, ModelManager
from modules.models.vae import VaeNotFound
from tests.fixtures_models import TinyModelFiles, link_into, models_home
from tests.test_models_safe_load import write_malicious_ckpt


def make_manager(paths: Paths, cache_size: int = 0) -> ModelManager:
    manager = ModelManager(paths, DevicePolicy.cpu(), HashCache(paths.hash_cache_file), cache_size=lambda: cache_size)
    manager.refresh()
    return manager


@pytest.fixture
def home(tmp_path: Path, tiny_models: TinyModelFiles) -> Paths:
    """models/Stable-diffusion with sd1 (under sub/), sd1-inpaint, sdxl, refiner; models/VAE with the tiny VAE."""
    paths = models_home(tmp_path / "data")
    link_into(paths.ckpt_dir / "sub", tiny_models.checkpoint("sd1"), "model.safetensors")
    link_into(paths.ckpt_dir, tiny_models.checkpoint("sd1-inpaint"))
    link_into(paths.ckpt_dir, tiny_models.checkpoint("sdxl"))
    link_into(paths.ckpt_dir, tiny_models.checkpoint("sdxl-refiner"))
    link_into(paths.vae_dir, tiny_models.vae, "tiny-vae.safetensors")
    return paths


def decode(model: LoadedModel) -> torch.Tensor:
    latent = torch.linspace(-1, 1, 4 * 8 * 8).reshape(1, 4, 8, 8)
    with torch.no_grad():
        return model.vae.decode(latent).sample


# --- names, titles, aliases ----------------------------------------------------------------------


def test_listing_uses_a1111_names_and_titles(home: Paths) -> None:
    manager = make_manager(home)
    names = [c.name for c in manager.list_checkpoints()]
    assert names == [
        "sub/model.safetensors",
        "tiny-sd1-inpaint.safetensors",
        "tiny-sdxl-refiner.safetensors",
        "tiny-sdxl.safetensors",
    ]
    info = manager.find_checkpoint("sub/model.safetensors")
    assert (info.model_name, info.name_for_extra) == ("sub_model", "model")
    assert info.title == "sub/model.safetensors"  # no hash known yet
    model = manager.load(info)
    sha = hashlib.sha256(info.filename.read_bytes()).hexdigest()
    assert model.checkpoint.sha256 == sha
    assert info.title == f"sub/model.safetensors [{sha[:10]}]"
    assert info.short_title == f"model [{sha[:10]}]"


def test_every_a1111_alias_finds_the_checkpoint(home: Paths) -> None:
    manager = make_manager(home)
    info = manager.find_checkpoint("sub/model.safetensors")
    manager.load(info)
    sha = info.sha256
    assert sha is not None
    legacy = legacy_model_hash(info.filename)
    aliases = [
        "sub_model",
        "sub/model.safetensors",
        "model",
        legacy,
        f"sub/model.safetensors [{legacy}]",
        sha[:10],
        sha,
        f"sub/model.safetensors [{sha[:10]}]",
        f"model [{sha[:10]}]",
        "sub/model.safetensors [0123456789]",  # stale hash: A1111 falls back to the name
    ]
    for alias in aliases:
        assert manager.find_checkpoint(alias) is info, alias


def test_hashes_survive_a_restart_through_the_cache_file(home: Paths) -> None:
    first = make_manager(home)
    first.load("sub/model.safetensors")
    second = make_manager(home)  # new process: titles come from the hash cache without rehashing
    info = second.find_checkpoint("sub/model.safetensors")
    assert info.shorthash is not None and info.title.endswith(f"[{info.shorthash}]")


def test_unknown_checkpoint_lists_what_is_there(home: Paths) -> None:
    manager = make_manager(home)
    with pytest.raises(ModelNotFound, match=r"'nothing-like-this' not found\. Available: sub/model\.safetensors"):
        manager.find_checkpoint("nothing-like-this")


def test_vae_files_in_the_checkpoint_folder_are_not_checkpoints(home: Paths, tiny_models: TinyModelFiles) -> None:
    link_into(home.ckpt_dir / "sub", tiny_models.vae, "model.vae.safetensors")
    manager = make_manager(home)
    assert all(".vae." not in c.name for c in manager.list_checkpoints())
    assert [v.name for v in manager.list_vaes()] == ["model.vae.safetensors", "tiny-vae.safetensors"]


# --- loading -------------------------------------------------------------------------------------


def test_loaded_model_exposes_what_generation_needs(home: Paths) -> None:
    manager = make_manager(home)
    sd1 = manager.load("model")
    assert manager.active is sd1
    assert (sd1.family, sd1.prediction_type, sd1.is_sdxl, sd1.is_inpaint, sd1.is_refiner) == (
        ModelFamily.SD1,
        "epsilon",
        False,
        False,
        False,
    )
    assert len(sd1.text_encoders) == len(sd1.tokenizers) == 1
    assert sd1.tokenizers[0]("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert sd1.latent_scaling_factor == pytest.approx(0.18215) and sd1.latent_channels == 4
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    expected = torch.cumprod(1 - betas, 0).float()
    assert sd1.alphas_cumprod.shape == (1000,) and torch.equal(sd1.alphas_cumprod, expected)
    assert sd1.alphas_cumprod[0].item() == pytest.approx(1 - 0.00085)
    assert sd1.vae_info is None

    xl = manager.load("tiny-sdxl")
    assert (xl.family, xl.is_sdxl, len(xl.text_encoders), len(xl.tokenizers)) == (ModelFamily.SDXL, True, 2, 2)
    assert xl.tokenizers[1].pad_token == "!" and xl.tokenizers[0].pad_token == "<|endoftext|>"
    assert xl.latent_scaling_factor == pytest.approx(0.13025)
    assert type(xl.pipe).__name__ == "StableDiffusionXLPipeline"
    refiner = manager.load("tiny-sdxl-refiner")
    assert (refiner.family, refiner.is_refiner, len(refiner.text_encoders)) == (ModelFamily.SDXL_REFINER, True, 1)
    assert type(refiner.pipe).__name__ == "StableDiffusionXLImg2ImgPipeline"
    inpaint = manager.load("tiny-sd1-inpaint")
    assert (inpaint.family, inpaint.is_inpaint) == (ModelFamily.SD1_INPAINT, True)
    assert type(inpaint.pipe).__name__ == "StableDiffusionInpaintPipeline"


def test_policy_dtypes_are_applied(home: Paths) -> None:
    policy = DevicePolicy(torch.device("cpu"), torch.float16, torch.float32, torch.bfloat16)
    manager = ModelManager(home, policy, None)
    manager.refresh()
    model = manager.load("model")
    assert model.unet.dtype == torch.float16
    assert model.vae.dtype == torch.float32
    assert model.text_encoders[0].dtype == torch.bfloat16
    assert model.checkpoint.sha256 is None  # hash_cache=None is --no-hashing


def test_ckpt_file_loads_the_same_weights(home: Paths, tiny_models: TinyModelFiles) -> None:
    state = safetensors.torch.load_file(str(tiny_models.checkpoint("sd1")))
    torch.save({"state_dict": state, "global_step": 1}, home.ckpt_dir / "pickled.ckpt")
    manager = make_manager(home)
    a = manager.load("pickled").unet.state_dict()
    b = manager.load("model").unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)


def _write_bad_files(home: Paths, tiny_models: TinyModelFiles, marker: Path) -> dict[str, type[ModelError]]:
    """One of each kind of file that must not load as a checkpoint -> the error it must raise."""
    good = tiny_models.checkpoint("sd1")
    safetensors.torch.save_file(
        {
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4),
        },
        str(home.ckpt_dir / "a-lora.safetensors"),
    )
    data = good.read_bytes()
    (home.ckpt_dir / "truncated.safetensors").write_bytes(data[: len(data) - 1000])
    (home.ckpt_dir / "notes.safetensors").write_text("my prompt notes\n")
    full = safetensors.torch.load_file(str(good))
    safetensors.torch.save_file(
        {k: v for k, v in full.items() if k.startswith("model.")}, str(home.ckpt_dir / "unet-only.safetensors")
    )
    write_malicious_ckpt(home.ckpt_dir / "evil.ckpt", marker)
    return {
        "a-lora.safetensors": WrongModelKind,
        "truncated.safetensors": InvalidModelFile,
        "notes.safetensors": InvalidModelFile,
        "unet-only.safetensors": UnsupportedModel,
        "evil.ckpt": UnsafeModelFile,
    }


def test_failed_loads_keep_the_previous_model_active(home: Paths, tiny_models: TinyModelFiles) -> None:
    marker = home.data_dir / "pwned"
    bad_files = _write_bad_files(home, tiny_models, marker)
    manager = make_manager(home)
    good = manager.load("model")
    before = decode(good)
    for name, error in bad_files.items():
        with pytest.raises(error) as info:
            manager.load(name)
        assert name in str(info.value), str(info.value)
        assert manager.active is good, name
        assert manager.cached == [good], name
        assert manager.disk_loads == 1, name
    assert not marker.exists()
    assert torch.equal(decode(good), before)  # still usable, unchanged


# --- RAM cache -----------------------------------------------------------------------------------


@pytest.fixture
def three_models(home: Paths, tiny_models: TinyModelFiles) -> Paths:
    for name in ("a", "b", "c"):
        link_into(home.ckpt_dir, tiny_models.checkpoint("sd1"), f"{name}.safetensors")
    return home


def test_swapping_between_cached_models_does_not_touch_the_disk(three_models: Paths) -> None:
    manager = make_manager(three_models, cache_size=2)
    a = manager.load("a")
    b = manager.load("b")
    assert manager.disk_loads == 2
    assert manager.load("a") is a and manager.active is a
    assert manager.load("b") is b and manager.active is b
    assert manager.disk_loads == 2


def test_cache_limit_evicts_the_least_recently_used(three_models: Paths) -> None:
    manager = make_manager(three_models, cache_size=2)
    a = manager.load("a")
    b = manager.load("b")
    manager.load("a")  # b is now the oldest
    c = manager.load("c")
    assert manager.disk_loads == 3
    assert manager.cached == [a, c]
    assert manager.load("a") is a and manager.disk_loads == 3
    assert manager.load("b") is not b and manager.disk_loads == 4


def test_cache_size_zero_keeps_only_the_active_model(three_models: Paths) -> None:
    manager = make_manager(three_models, cache_size=0)
    manager.load("a")
    b = manager.load("b")
    assert manager.cached == [b]
    manager.load("a")
    assert manager.disk_loads == 3


def test_a_model_in_use_is_never_evicted(three_models: Paths) -> None:
    manager = make_manager(three_models, cache_size=0)
    a = manager.load("a")
    with manager.use() as pinned:
        assert pinned is a
        b = manager.load("b")
        assert manager.active is b
        assert a in manager.cached  # still needed by the running job
    assert manager.cached == [b]


def test_use_can_borrow_a_model_without_activating_it(three_models: Paths) -> None:
    manager = make_manager(three_models, cache_size=0)
    a = manager.load("a")
    with manager.use("b") as refiner:
        assert refiner.checkpoint.name == "b.safetensors"
        assert manager.active is a
    assert manager.active is a and manager.cached == [a]


def test_unload_and_reload(three_models: Paths) -> None:
    manager = make_manager(three_models, cache_size=2)
    a = manager.load("a")
    manager.set_vae(a, "tiny-vae.safetensors")
    fresh = manager.reload()
    assert fresh is not None and fresh is not a and manager.active is fresh
    assert manager.disk_loads == 2
    assert fresh.vae_info is not None and fresh.vae_info.name == "tiny-vae.safetensors"
    manager.unload()
    assert manager.active is None and manager.cached == []
    with pytest.raises(ModelNotFound, match="no checkpoint is loaded"), manager.use():
        pass


def test_concurrent_loads_are_serialised(three_models: Paths) -> None:
    manager = make_manager(three_models, cache_size=3)
    errors: list[BaseException] = []

    def load(name: str) -> None:
        try:
            manager.load(name)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(n,)) for n in ("a", "b", "c", "a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert manager.disk_loads == 3
    assert len(manager.cached) == 3


# --- VAE -----------------------------------------------------------------------------------------


def test_vae_swap_changes_the_image_and_swapping_back_restores_it(home: Paths) -> None:
    manager = make_manager(home)
    model = manager.load("model", vae="None")
    builtin = decode(model)
    chosen = manager.set_vae(model, "tiny-vae.safetensors")
    assert chosen is not None and model.vae_info == chosen
    swapped = decode(model)
    assert not torch.allclose(builtin, swapped)
    assert model.vae_hash == hashlib.sha256(chosen.filename.read_bytes()).hexdigest()[:10]
    assert manager.set_vae(model, "None") is None and model.vae_info is None and model.vae_hash is None
    assert torch.equal(decode(model), builtin)
    manager.set_vae(model, "tiny-vae")  # by stem too
    assert torch.equal(decode(model), swapped)
    assert manager.disk_loads == 1  # the checkpoint was never reloaded


def test_automatic_vae_picks_the_file_named_after_the_checkpoint(home: Paths, tiny_models: TinyModelFiles) -> None:
    link_into(home.ckpt_dir / "sub", tiny_models.vae, "model.vae.safetensors")
    manager = make_manager(home)
    model = manager.load("model")  # vae="Automatic" by default
    assert model.vae_info is not None
    assert (model.vae_info.name, model.vae_info.source) == ("model.vae.safetensors", "automatic")
    other = manager.load("tiny-sd1-inpaint")  # no VAE named after it: its own
    assert other.vae_info is None


def test_bad_vae_choices_are_clear_errors_and_change_nothing(home: Paths, tiny_models: TinyModelFiles) -> None:
    manager = make_manager(home)
    model = manager.load("model", vae="None")
    before = decode(model)
    with pytest.raises(VaeNotFound, match="'missing' not found. Available: Automatic, None, tiny-vae.safetensors"):
        manager.set_vae(model, "missing")
    state = safetensors.torch.load_file(str(tiny_models.vae))
    state["decoder.conv_out.weight"] = torch.zeros(3, 16, 3, 3)
    safetensors.torch.save_file(state, str(home.vae_dir / "wrong-shape.safetensors"))
    with pytest.raises(UnsupportedModel, match="wrong-shape.safetensors does not fit"):
        manager.set_vae(model, "wrong-shape.safetensors")
    link_into(home.vae_dir, tiny_models.checkpoint("sdxl-refiner"), "not-a-vae.safetensors")
    safetensors.torch.save_file(
        {"lora_te_x.lora_down.weight": torch.zeros(2, 2)}, str(home.vae_dir / "lora.safetensors")
    )
    with pytest.raises(WrongModelKind, match="lora.safetensors is not a VAE"):
        manager.set_vae(model, "lora.safetensors")
    assert model.vae_info is None
    assert torch.equal(decode(model), before)


def test_vae_from_a_full_checkpoint_file_can_be_used(home: Paths, tiny_models: TinyModelFiles) -> None:
    link_into(home.vae_dir, tiny_models.checkpoint("sd1-inpaint"), "from-checkpoint.safetensors")
    manager = make_manager(home)
    model = manager.load("model", vae="from-checkpoint.safetensors")
    donor = manager.load("tiny-sd1-inpaint", vae="None")
    mine, theirs = model.vae.state_dict(), donor.vae.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_load_with_an_unknown_vae_changes_nothing(home: Paths) -> None:
    manager = make_manager(home)
    sd1 = manager.load("model")
    with pytest.raises(VaeNotFound):
        manager.load("tiny-sd1-inpaint", vae="no-such-vae")
    assert manager.active is sd1 and manager.cached == [sd1] and manager.disk_loads == 1


def test_borrowing_the_active_model_keeps_it_in_place(three_models: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = make_manager(three_models)
    a = manager.load("a")
    parked: list[LoadedModel] = []
    original = manager._park

    def recording_park(model: LoadedModel) -> None:
        parked.append(model)
        original(model)

    monkeypatch.setattr(manager, "_park", recording_park)
    with manager.use("a") as same:
        assert same is a and manager.active is a
    assert parked == []  # never moved off its device (a round trip through RAM on a GPU)
