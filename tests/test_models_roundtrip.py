"""Round trips through the manager (diffusers folder vs single file), SD2 eps/v, offload modes, fixture CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from modules.core.devices import DevicePolicy, VramMode
from modules.core.paths import Paths
from modules.models.families import ModelFamily
from modules.models.hashes import HashCache
from modules.models.identify import identify_file
from modules.models.loader import is_v_prediction, save_diffusers_folder, save_single_file
from modules.models.manager import LoadedModel, ModelManager
from tests.fixtures_models import TinyModelFiles, link_into, models_home
from tools import tiny_models as generator


def make_manager(paths: Paths, policy: DevicePolicy | None = None) -> ModelManager:
    manager = ModelManager(paths, policy or DevicePolicy.cpu(), HashCache(paths.hash_cache_file), cache_size=lambda: 4)
    manager.refresh()
    return manager


def _outputs(model: LoadedModel) -> dict[str, torch.Tensor]:
    """UNet, VAE and text-encoder outputs on fixed inputs."""
    torch.manual_seed(0)
    tokens = model.tokenizers[0]("a photo of a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        hidden = [enc(tokens, output_hidden_states=True) for enc in model.text_encoders]
        for i, h in enumerate(hidden):
            out[f"text{i}"] = h.hidden_states[-2]
        context = torch.cat([h.hidden_states[-2] for h in hidden], dim=-1)
        latent = torch.randn(1, model.unet.config.in_channels, 8, 8)
        extra: dict[str, Any] = {}
        if model.is_sdxl:
            pooled = hidden[-1].text_embeds
            time_ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])
            extra["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
        out["unet"] = model.unet(latent, torch.tensor([500]), encoder_hidden_states=context, **extra).sample
        out["vae"] = model.vae.decode(latent[:, :4]).sample
    return out


@pytest.mark.parametrize("family", [ModelFamily.SD1, ModelFamily.SDXL])
def test_diffusers_folder_and_single_file_load_to_identical_models(
    family: ModelFamily, tmp_path: Path, tokenizer_cache: Path
) -> None:
    paths = models_home(tmp_path / "data")
    pipe = generator.tiny_pipeline(family, tokenizer_cache, seed=3)
    save_diffusers_folder(pipe, paths.ckpt_dir / "as-folder")
    save_single_file(pipe, family, paths.ckpt_dir / "as-file.safetensors")
    manager = make_manager(paths)
    assert [c.name for c in manager.list_checkpoints()] == ["as-file.safetensors", "as-folder"]
    folder = manager.load("as-folder")
    single = manager.load("as-file")
    assert folder.checkpoint.is_diffusers_folder and not single.checkpoint.is_diffusers_folder
    assert folder.family == single.family == family
    for a, b in [
        (folder.unet, single.unet),
        (folder.vae, single.vae),
        *zip(folder.text_encoders, single.text_encoders, strict=True),
    ]:
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    ours, theirs = _outputs(folder), _outputs(single)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    # and the weights are the generated ones
    original = pipe.unet.state_dict()
    assert all(torch.equal(original[k], v) for k, v in single.unet.state_dict().items())


def test_sd2_yaml_makes_a_v_model(home_sd2: Paths) -> None:
    manager = make_manager(home_sd2)
    model = manager.load("tiny-sd2-v")
    assert (model.family, model.prediction_type) == (ModelFamily.SD2_V, "v_prediction")
    assert model.pipe.scheduler.config.prediction_type == "v_prediction"
    assert len(model.text_encoders) == 1 and model.tokenizers[0].pad_token == "!"
    # the file has 3 OpenCLIP layers; like diffusers and A1111 the model uses the first 2
    assert model.text_encoders[0].config.num_hidden_layers == 2


def test_sd2_without_yaml_follows_the_numeric_check(home_sd2: Paths) -> None:
    manager = make_manager(home_sd2)
    model = manager.load("tiny-sd2")
    expected = ModelFamily.SD2_V if is_v_prediction(model.unet) else ModelFamily.SD2
    assert model.family == expected
    assert model.pipe.scheduler.config.prediction_type == (
        "v_prediction" if expected == ModelFamily.SD2_V else "epsilon"
    )


@pytest.fixture
def home_sd2(tmp_path: Path, tiny_models: TinyModelFiles) -> Paths:
    paths = models_home(tmp_path / "data")
    link_into(paths.ckpt_dir, tiny_models.checkpoint("sd2"))
    link_into(paths.ckpt_dir, tiny_models.checkpoint("sd2-v"))
    link_into(paths.ckpt_dir, tiny_models.checkpoint("sd2-v").with_suffix(".yaml"))
    return paths


class _StubUnet(torch.nn.Module):
    """Answers with a fixed multiple of its input (what A1111's test probes)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = torch.nn.Parameter(torch.tensor(factor))
        self.config = SimpleNamespace(in_channels=4, cross_attention_dim=16)

    def forward(self, x: torch.Tensor, t: torch.Tensor, encoder_hidden_states: torch.Tensor) -> SimpleNamespace:
        assert t.tolist() == [999] and encoder_hidden_states.shape == (1, 2, 16) and x.shape == (1, 4, 8, 8)
        return SimpleNamespace(sample=x * self.factor)


@pytest.mark.parametrize(("factor", "is_v"), [(1.0, False), (0.0, False), (-2.0, True), (-1.5, True)])
def test_numeric_v_check_follows_a1111(factor: float, is_v: bool) -> None:
    # input 0.5: mean(out - x) = 0.5 * (factor - 1); A1111 says v-prediction when that is below -1
    assert is_v_prediction(_StubUnet(factor)) is is_v


@pytest.mark.parametrize(
    ("mode", "sdxl_only", "expected"),
    [
        (VramMode.MEDVRAM, False, "enable_model_cpu_offload"),
        (VramMode.NORMAL, True, "to"),
    ],
)
def test_vram_modes_map_to_diffusers_offload(
    tmp_path: Path,
    tiny_models: TinyModelFiles,
    monkeypatch: pytest.MonkeyPatch,
    mode: VramMode,
    sdxl_only: bool,
    expected: str,
) -> None:
    import diffusers

    calls: list[str] = []
    pipeline = diffusers.StableDiffusionPipeline
    original_to = pipeline.to

    def record(name: str) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return original_to(self, "cpu") if name == "to" else None

        return method

    for name in ("enable_model_cpu_offload", "enable_sequential_cpu_offload", "remove_all_hooks", "to"):
        monkeypatch.setattr(pipeline, name, record(name))
    paths = models_home(tmp_path / "data")
    link_into(paths.ckpt_dir, tiny_models.checkpoint("sd1"))
    cpu = torch.device("cpu")
    policy = DevicePolicy(cpu, torch.float32, torch.float32, torch.float32, vram_mode=mode, medvram_sdxl_only=sdxl_only)
    manager = make_manager(paths, policy)
    manager.load("tiny-sd1")
    assert calls[0] == expected
    manager.unload()
    if expected != "to":
        assert "remove_all_hooks" in calls  # offload hooks come off before the model is parked


def test_fixture_command_writes_deterministic_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert generator.main([str(tmp_path / "one"), "--families", "sd1", "sd2-v", "--seed", "5"]) == 0
    generator.main([str(tmp_path / "two"), "--families", "sd1", "sd2-v", "--seed", "5"])
    printed = capsys.readouterr().out
    assert "tiny-sd1.safetensors" in printed and "tiny.vae.safetensors" in printed
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == ["tiny-sd1.safetensors", "tiny-sd2-v.safetensors", "tiny-sd2-v.yaml", "tiny.vae.safetensors"]
    for name in names:
        one, two = (tmp_path / d / name for d in ("one", "two"))
        assert hashlib.sha256(one.read_bytes()).digest() == hashlib.sha256(two.read_bytes()).digest(), name
    assert identify_file(tmp_path / "one" / "tiny-sd2-v.safetensors").family == ModelFamily.SD2_V
    generator.main([str(tmp_path / "three"), "--families", "sd1", "--seed", "6"])
    assert (tmp_path / "three" / "tiny-sd1.safetensors").read_bytes() != (
        tmp_path / "one" / "tiny-sd1.safetensors"
    ).read_bytes()


def test_fixture_command_rejects_unknown_families(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        generator.main([str(tmp_path), "--families", "sd3"])


@pytest.mark.parametrize("family", [ModelFamily.SD1, ModelFamily.SDXL])
def test_loaded_pipelines_generate_an_image(family: ModelFamily, tiny_models: TinyModelFiles, tmp_path: Path) -> None:
    paths = models_home(tmp_path / "data")
    link_into(paths.ckpt_dir, tiny_models.checkpoint(family))
    model = make_manager(paths).load(f"tiny-{family.value}")
    model.pipe.set_progress_bar_config(disable=True)
    image = model.pipe(
        prompt="a cat",
        num_inference_steps=2,
        height=64,
        width=64,
        output_type="pt",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert image.shape == (1, 3, 64, 64)
    assert torch.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0
