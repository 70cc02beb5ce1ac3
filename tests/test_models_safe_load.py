"""Reading weights: pickles are loaded without running code unless safe unpickling is turned off."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest
import safetensors.torch
import torch

from modules.models.errors import InvalidModelFile, UnsafeModelFile
from modules.models.safe_load import load_pickle, load_state_dict
from tests.fixtures_models import TinyModelFiles


class _Payload:
    """Pickles to a call of os.system (what a malicious .ckpt does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def write_malicious_ckpt(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}, "payload": _Payload(marker)}, path)
    return path


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = write_malicious_ckpt(tmp_path / "evil.ckpt", marker)
    with pytest.raises(UnsafeModelFile) as info:
        load_state_dict(evil)
    message = str(info.value)
    assert "evil.ckpt" in message and "--disable-safe-unpickle" in message and "system" in message
    assert not marker.exists()


def test_disabling_safe_unpickle_loads_with_full_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = write_malicious_ckpt(tmp_path / "evil.ckpt", marker)
    state = load_state_dict(evil, safe=False)
    assert list(state) == ["model.diffusion_model.x"]
    assert marker.exists()  # the full unpickler really ran the file's code: that is what the flag allows


def test_ckpt_with_lightning_wrapper_loads_same_tensors_as_safetensors(
    tiny_models: TinyModelFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference = safetensors.torch.load_file(str(tiny_models.checkpoint("sd1")))
    # training checkpoints pickle a pytorch_lightning callback object next to the weights
    fake = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")
    callback_class = type("ModelCheckpoint", (), {"__module__": fake.__name__})
    fake.ModelCheckpoint = callback_class  # type: ignore[attr-defined]
    parents = ("pytorch_lightning", "pytorch_lightning.callbacks")
    for name in parents:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": reference, "global_step": 470000, "callbacks": {"cb": callback_class()}}, path)
    for name in (*parents, fake.__name__):
        monkeypatch.delitem(sys.modules, name)
    loaded = load_state_dict(path)
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_legacy_pickle_format_and_numpy_values_load(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "old.pt"
    with path.open("wb") as handle:
        torch.save({"w": torch.ones(2), "step": np.int64(3)}, handle, _use_new_zipfile_serialization=False)
    obj = load_pickle(path)
    assert torch.equal(obj["w"], torch.ones(2)) and int(obj["step"]) == 3


@pytest.mark.parametrize(
    ("name", "content"),
    [("notes.ckpt", b"just some text, not a pickle\n"), ("zip.pt", b"PK\x03\x04 broken zip"), ("empty.ckpt", b"")],
)
def test_garbage_pickles_are_invalid_files(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidModelFile, match=name.replace(".", r"\.")):
        load_state_dict(path)


def test_unknown_extension_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"x")
    with pytest.raises(InvalidModelFile, match="unsupported model file type"):
        load_state_dict(path)


def test_damaged_safetensors_data_is_an_invalid_file(tiny_models: TinyModelFiles, tmp_path: Path) -> None:
    data = bytearray(tiny_models.vae.read_bytes())
    path = tmp_path / "cut.safetensors"
    path.write_bytes(bytes(data[:-10]))
    with pytest.raises(InvalidModelFile, match="truncated"):
        load_state_dict(path)
