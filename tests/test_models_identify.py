"""Identification of model files from their headers / key layout, and clear errors for bad files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch

from modules.models.errors import InvalidModelFile, ModelError
from modules.models.families import FileKind, ModelFamily, is_inpaint, is_sdxl
from modules.models.identify import identify_file
from modules.models.safetensors_header import read_safetensors_header
from tests.fixtures_models import TinyModelFiles, link_into


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    safetensors.torch.save_file(tensors, str(path))
    return path


@pytest.fixture(autouse=True)
def _no_tensor_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Identification must use the header only: reading tensor data fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("identification read tensor data")

    monkeypatch.setattr(safetensors.torch, "load_file", refuse)
    monkeypatch.setattr(safetensors, "safe_open", refuse)


@pytest.mark.parametrize(
    ("family", "expected_family", "prediction"),
    [
        ("sd1", ModelFamily.SD1, "epsilon"),
        ("sd1-inpaint", ModelFamily.SD1_INPAINT, "epsilon"),
        ("sd2-v", ModelFamily.SD2_V, "v_prediction"),
        ("sdxl", ModelFamily.SDXL, "epsilon"),
        ("sdxl-refiner", ModelFamily.SDXL_REFINER, "epsilon"),
    ],
)
def test_each_tiny_family_is_identified_from_its_header(
    tiny_models: TinyModelFiles,
    family: str,
    expected_family: ModelFamily,
    prediction: str,
) -> None:
    found = identify_file(tiny_models.checkpoint(family))
    assert found.kind == FileKind.CHECKPOINT
    assert found.family == expected_family
    assert found.prediction_type == prediction
    assert found.file_format == "safetensors"
    assert is_inpaint(found.family) == (family == "sd1-inpaint")
    assert is_sdxl(found.family) == family.startswith("sdxl")


def test_sd2_without_yaml_is_left_to_the_numeric_check(tiny_models: TinyModelFiles) -> None:
    found = identify_file(tiny_models.checkpoint("sd2"))
    assert (found.family, found.prediction_type, found.needs_v_check) == (ModelFamily.SD2, None, True)


@pytest.mark.parametrize(
    ("yaml_text", "family", "prediction"),
    [
        ('model:\n  params:\n    parameterization: "v"\n', ModelFamily.SD2_V, "v_prediction"),
        ("model:\n  params:\n    linear_start: 0.00085\n", ModelFamily.SD2, "epsilon"),
    ],
)
def test_sibling_yaml_decides_sd2_eps_or_v(
    tiny_models: TinyModelFiles,
    tmp_path: Path,
    yaml_text: str,
    family: ModelFamily,
    prediction: str,
) -> None:
    model = link_into(tmp_path, tiny_models.checkpoint("sd2"), "custom.safetensors")
    (tmp_path / "custom.yaml").write_text(yaml_text)
    found = identify_file(model)
    assert (found.family, found.prediction_type, found.needs_v_check) == (family, prediction, False)


def test_standalone_vae_file_is_a_vae(tiny_models: TinyModelFiles) -> None:
    assert identify_file(tiny_models.vae).kind == FileKind.VAE


def test_other_kinds_are_told_apart(tmp_path: Path) -> None:
    lora = _write_safetensors(
        tmp_path / "lora.safetensors",
        {
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4),
            "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0),
        },
    )
    loha = _write_safetensors(tmp_path / "loha.safetensors", {"lora_te_x.hada_w1_a": torch.zeros(2, 2)})
    embedding = _write_safetensors(tmp_path / "emb.safetensors", {"emb_params": torch.zeros(2, 768)})
    sdxl_embedding = _write_safetensors(
        tmp_path / "xl.safetensors", {"clip_l": torch.zeros(1, 768), "clip_g": torch.zeros(1, 1280)}
    )
    upscaler = _write_safetensors(tmp_path / "up.safetensors", {"conv_first.weight": torch.zeros(64, 3, 3, 3)})
    other = _write_safetensors(tmp_path / "other.safetensors", {"foo": torch.zeros(1)})
    assert identify_file(lora).kind == FileKind.LORA
    assert identify_file(loha).kind == FileKind.LORA
    assert identify_file(embedding).kind == FileKind.EMBEDDING
    assert identify_file(sdxl_embedding).kind == FileKind.EMBEDDING
    assert identify_file(upscaler).kind == FileKind.UPSCALER
    assert identify_file(other).kind == FileKind.UNKNOWN


def test_pickled_embedding_and_hypernetwork(tmp_path: Path) -> None:
    emb = tmp_path / "emb.pt"
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": torch.zeros(2, 768)}, "name": "x"}, emb)
    hyper = tmp_path / "hyper.pt"
    torch.save({768: [{"linear.0.weight": torch.zeros(2, 2)}], "layer_structure": [1, 2, 1], "name": "h"}, hyper)
    assert identify_file(emb).kind == FileKind.EMBEDDING
    assert identify_file(hyper).kind == FileKind.HYPERNETWORK


def test_header_parser_returns_shapes_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    safetensors.torch.save_file({"a": torch.zeros(2, 3)}, str(path), metadata={"ss_network_dim": "4"})
    header = read_safetensors_header(path)
    assert header["a"]["shape"] == [2, 3]
    assert header["a"]["dtype"] == "F32"
    assert header["__metadata__"] == {"ss_network_dim": "4"}


def test_truncated_safetensors_is_a_clear_error(tiny_models: TinyModelFiles, tmp_path: Path) -> None:
    data = tiny_models.checkpoint("sd1").read_bytes()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidModelFile, match="truncated"):
        identify_file(broken)


def test_text_file_renamed_safetensors_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "fake.safetensors"
    fake.write_text("this is not a model, just some notes someone renamed\n" * 3)
    with pytest.raises(InvalidModelFile, match="not a safetensors file"):
        identify_file(fake)


@pytest.mark.parametrize(
    "raw",
    [
        b"",  # empty
        b"\x01\x02",  # too short for the length field
        struct.pack("<Q", 10**12) + b"{}",  # absurd header length
        struct.pack("<Q", 4) + b"[1]x",  # JSON but not an object
        struct.pack("<Q", 40) + json.dumps({"a": {"dtype": "F32", "shape": [1]}}).encode().ljust(40),  # no offsets
    ],
)
def test_malformed_headers_are_refused(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(raw)
    with pytest.raises(InvalidModelFile) as info:
        read_safetensors_header(path)
    assert isinstance(info.value, ModelError)
    assert "bad.safetensors" in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="no such file"):
        identify_file(tmp_path / "nope.safetensors")


def test_old_and_sgm_key_layouts_are_normalised() -> None:
    from modules.models.identify import classify_shapes, normalize_key, normalize_keys

    # early SD1 files lack the `text_model.` level that transformers added later
    assert (
        normalize_key("cond_stage_model.transformer.encoder.layers.0.mlp.fc1.weight")
        == "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight"
    )
    # SD2-Turbo ships OpenCLIP-H under the SGM prefix: read as SD2, not as an SDXL refiner
    turbo = {
        "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
        "conditioner.embedders.0.model.ln_final.weight": (1024,),
        "conditioner.embedders.0.model.token_embedding.weight": (49408, 1024),
    }
    assert "cond_stage_model.model.ln_final.weight" in normalize_keys(turbo)
    assert classify_shapes(turbo).family == ModelFamily.SD2
    refiner = {**turbo, "conditioner.embedders.0.model.ln_final.weight": (1280,)}
    assert classify_shapes(refiner).family == ModelFamily.SDXL_REFINER
