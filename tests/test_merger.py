"""Checkpoint Merger: formulas, inpainting channels, fp16, discard, VAE bake-in, metadata, files, memory."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from modules.merger import InterpMethod, MergeError, MergeRequest, merge_checkpoints
from modules.merger.safetensors_stream import (
    SafetensorsReader,
    SafetensorsStreamWriter,
    TensorSpec,
    read_header,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
UNET_OUT = "model.diffusion_model.out.2.weight"
UNET_BIAS = "model.diffusion_model.input_blocks.0.0.bias"
VAE_DEC = "first_stage_model.decoder.conv_in.weight"
VAE_ENC = "first_stage_model.encoder.conv_in.weight"
TOKENS = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
POS_IDS = "cond_stage_model.transformer.text_model.embeddings.position_ids"
SCHEDULE = "alphas_cumprod"  # no "model" in the name: never merged


def sd_like(
    seed: int, in_channels: int = 4, width: int = 8, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(dtype)

    return {
        UNET_IN: rnd(width, in_channels, 3, 3),
        UNET_BIAS: rnd(width),
        UNET_OUT: rnd(4, width, 3, 3),
        VAE_DEC: rnd(width, 4, 3, 3),
        VAE_ENC: rnd(width, 3, 3, 3),
        TOKENS: rnd(16, width),
        POS_IDS: torch.arange(77, dtype=torch.int64).unsqueeze(0) + seed,
        SCHEDULE: torch.rand(10, generator=g),
    }


def write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    a = sd_like(1)
    a["model.diffusion_model.only_in_a.weight"] = torch.ones(3)
    b = sd_like(2)
    b["model.diffusion_model.only_in_b.weight"] = torch.ones(3)
    c = sd_like(3)
    del c[UNET_OUT]  # Add difference: a key missing from C adds nothing
    return {
        "a": write(tmp_path / "a.safetensors", a, {"modelspec.title": "model A", "shared": "from A"}),
        "b": write(tmp_path / "b.safetensors", b, {"shared": "from B"}),
        "c": write(tmp_path / "c.safetensors", c),
    }


def request(models: dict[str, Path], **kw: object) -> MergeRequest:
    fields: dict[str, object] = {
        "primary_model_name": models["a"],
        "secondary_model_name": models["b"],
        "tertiary_model_name": models.get("c"),
        "output_dir": models["a"].parent,
        "multiplier": 0.3,
    }
    fields.update(kw)
    return MergeRequest.model_validate(fields)


def test_weighted_sum_matches_formula_and_a1111_key_rules(models: dict[str, Path]) -> None:
    result = merge_checkpoints(request(models, interp_method="Weighted sum"))
    assert result.path.name == "0.7(a) + 0.3(b).safetensors"
    out, a, b = load_file(result.path), load_file(models["a"]), load_file(models["b"])
    for key in (UNET_IN, UNET_BIAS, UNET_OUT, VAE_DEC, VAE_ENC, TOKENS):
        torch.testing.assert_close(out[key], a[key] * 0.7 + b[key] * 0.3, rtol=0, atol=1e-6)
        assert not torch.equal(out[key], a[key])
    assert torch.equal(out[SCHEDULE], a[SCHEDULE])  # not a "model" key
    assert torch.equal(out[POS_IDS], a[POS_IDS])  # never merged
    assert torch.equal(out["model.diffusion_model.only_in_a.weight"], torch.ones(3))
    assert "model.diffusion_model.only_in_b.weight" not in out
    assert result.tensor_count == len(out) == 9


def test_add_difference_matches_formula(models: dict[str, Path]) -> None:
    result = merge_checkpoints(request(models, interp_method="Add difference", multiplier=0.5))
    assert result.path.name == "a + 0.5(b - c).safetensors"
    a, b, c = (load_file(models[k]) for k in "abc")
    out = load_file(result.path)
    for key in (UNET_IN, UNET_BIAS, VAE_DEC, TOKENS):
        torch.testing.assert_close(out[key], a[key] + (b[key] - c[key]) * 0.5, rtol=0, atol=1e-6)
    torch.testing.assert_close(out[UNET_OUT], a[UNET_OUT])  # missing from C


def test_no_interpolation_copies_a_and_needs_no_b(models: dict[str, Path]) -> None:
    req = request(
        models, interp_method=InterpMethod.NONE, secondary_model_name=None, tertiary_model_name=None, custom_name="copy"
    )
    result = merge_checkpoints(req)
    assert result.path.name == "copy.safetensors"
    out, a = load_file(result.path), load_file(models["a"])
    assert out.keys() == a.keys()
    assert all(torch.equal(out[k], a[k]) for k in a)


def test_no_interpolation_default_name_is_a(tmp_path: Path, models: dict[str, Path]) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = merge_checkpoints(request(models, interp_method="No interpolation", output_dir=out_dir))
    assert result.path == out_dir / "a.safetensors"


def test_inpainting_a_merges_first_four_channels(tmp_path: Path) -> None:
    a = write(tmp_path / "inp.safetensors", sd_like(1, in_channels=9))
    b = write(tmp_path / "b.safetensors", sd_like(2))
    c = write(tmp_path / "c.safetensors", sd_like(3))
    models = {"a": a, "b": b, "c": c}
    ws = merge_checkpoints(request(models, interp_method="Weighted sum"))
    assert ws.is_inpainting and ws.path.name == "0.7(inp) + 0.3(b).inpainting.safetensors"
    out, ta, tb, tc = load_file(ws.path), load_file(a), load_file(b), load_file(c)
    assert out[UNET_IN].shape == (8, 9, 3, 3)
    torch.testing.assert_close(out[UNET_IN][:, :4], ta[UNET_IN][:, :4] * 0.7 + tb[UNET_IN] * 0.3, rtol=0, atol=1e-6)
    assert torch.equal(out[UNET_IN][:, 4:], ta[UNET_IN][:, 4:])
    assert json.loads(ws.metadata["sd_merge_recipe"])["is_inpainting"] is True

    ad = merge_checkpoints(request(models, interp_method="Add difference", multiplier=1.0))
    assert ad.path.name == "inp + 1.0(b - c).inpainting.safetensors"
    out = load_file(ad.path)
    expected = ta[UNET_IN][:, :4] + (tb[UNET_IN] - tc[UNET_IN]) * 1.0
    torch.testing.assert_close(out[UNET_IN][:, :4], expected, rtol=0, atol=1e-6)
    assert torch.equal(out[UNET_IN][:, 4:], ta[UNET_IN][:, 4:])


def test_normal_a_with_inpainting_b_is_refused(tmp_path: Path) -> None:
    models = {"a": write(tmp_path / "a.safetensors", sd_like(1)), "b": write(tmp_path / "b.safetensors", sd_like(2, 9))}
    with pytest.raises(MergeError, match="A must be the inpainting model"):
        merge_checkpoints(request(models))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "b.safetensors"]


def test_different_architectures_are_refused_before_writing(tmp_path: Path) -> None:
    models = {
        "a": write(tmp_path / "a.safetensors", sd_like(1)),
        "b": write(tmp_path / "b.safetensors", sd_like(2, width=16)),
    }
    with pytest.raises(
        MergeError, match=r"not compatible: .*token_embedding.weight has shape \[16, 8\] in A and \[16, 16\]"
    ):
        merge_checkpoints(request(models))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "b.safetensors"]


def test_save_as_half_halves_the_file(tmp_path: Path) -> None:
    big = {f"model.diffusion_model.layer{i}.weight": torch.randn(64, 64) for i in range(8)}
    models = {"a": write(tmp_path / "a.safetensors", big), "b": write(tmp_path / "b.safetensors", big)}
    full = merge_checkpoints(request(models, custom_name="full"))
    half = merge_checkpoints(request(models, custom_name="half", save_as_half=True))
    ratio = half.path.stat().st_size / full.path.stat().st_size
    assert 0.49 < ratio < 0.52
    out = load_file(half.path)
    assert {t.dtype for t in out.values()} == {torch.float16}
    torch.testing.assert_close(
        out["model.diffusion_model.layer0.weight"], big["model.diffusion_model.layer0.weight"].half()
    )


def test_discard_weights_removes_matching_keys(models: dict[str, Path]) -> None:
    result = merge_checkpoints(request(models, discard_weights=r"^first_stage_model\.|position_ids"))
    keys = set(load_file(result.path))
    assert not any(k.startswith("first_stage_model.") for k in keys)
    assert POS_IDS not in keys and UNET_IN in keys


def test_bad_discard_regex_is_a_clear_error(models: dict[str, Path]) -> None:
    with pytest.raises(MergeError, match="not a valid regular expression"):
        merge_checkpoints(request(models, discard_weights="(unclosed"))


def test_bake_in_vae_replaces_first_stage_keys(tmp_path: Path, models: dict[str, Path]) -> None:
    vae = {
        "decoder.conv_in.weight": torch.full((8, 4, 3, 3), 7.0),
        "encoder.conv_in.weight": torch.full((8, 3, 3, 3), -7.0),
        "loss.discriminator.weight": torch.ones(2),
        "not_in_checkpoint.weight": torch.ones(2),
    }
    vae_path = write(tmp_path / "my-vae.safetensors", vae)
    result = merge_checkpoints(request(models, bake_in_vae=vae_path, save_as_half=True))
    out = load_file(result.path)
    assert torch.equal(out[VAE_DEC], torch.full((8, 4, 3, 3), 7.0, dtype=torch.float16))
    assert torch.equal(out[VAE_ENC], torch.full((8, 3, 3, 3), -7.0, dtype=torch.float16))
    assert not any("loss" in k or "not_in_checkpoint" in k for k in out)
    assert json.loads(result.metadata["sd_merge_recipe"])["bake_in_vae"] == "my-vae.safetensors"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_metadata_recipe_models_and_copied_fields(models: dict[str, Path]) -> None:
    result = merge_checkpoints(request(models, metadata_json='{"author": "me", "n": 3}', save_as_half=True))
    with safe_open(str(result.path), framework="pt") as f:
        stored = f.metadata()
    assert stored == result.metadata
    assert stored["format"] == "pt"
    assert stored["modelspec.title"] == "model A" and stored["shared"] == "from B"  # A, then B, then C
    assert stored["author"] == "me" and stored["n"] == "3"
    recipe = json.loads(stored["sd_merge_recipe"])
    assert recipe == {
        "type": "webui",
        "primary_model_hash": sha256_of(models["a"]),
        "secondary_model_hash": sha256_of(models["b"]),
        "tertiary_model_hash": None,
        "interp_method": "Weighted sum",
        "multiplier": 0.3,
        "save_as_half": True,
        "custom_name": "",
        "config_source": 0,
        "bake_in_vae": "None",
        "discard_weights": "",
        "is_inpainting": False,
        "is_instruct_pix2pix": False,
    }
    merged_models = json.loads(stored["sd_merge_models"])
    assert merged_models[sha256_of(models["a"])] == {
        "name": "a.safetensors",
        "legacy_hash": hashlib.sha256(b"").hexdigest()[:8],  # file shorter than the 1 MiB offset
        "sd_merge_recipe": None,
    }
    assert set(merged_models) == {sha256_of(models["a"]), sha256_of(models["b"])}


def test_merge_of_a_merge_carries_the_history(models: dict[str, Path]) -> None:
    first = merge_checkpoints(request(models, custom_name="first"))
    second = merge_checkpoints(request({"a": first.path, "b": models["b"]}, custom_name="second"))
    history = json.loads(second.metadata["sd_merge_models"])
    assert json.loads(first.metadata["sd_merge_recipe"]) == history[sha256_of(first.path)]["sd_merge_recipe"]
    assert sha256_of(models["a"]) in history  # inherited from the first merge


def test_metadata_off_and_bad_json(models: dict[str, Path]) -> None:
    plain = merge_checkpoints(request(models, save_metadata=False, custom_name="plain"))
    assert plain.metadata == {} and read_header(plain.path).metadata == {}
    with pytest.raises(MergeError, match="Metadata JSON is not valid"):
        merge_checkpoints(request(models, metadata_json="{oops", custom_name="bad"))


def test_refuses_to_overwrite_unless_asked(models: dict[str, Path]) -> None:
    first = merge_checkpoints(request(models))
    before = first.path.read_bytes()
    with pytest.raises(MergeError, match="already exists"):
        merge_checkpoints(request(models, multiplier=0.3, save_as_half=True))
    assert first.path.read_bytes() == before
    again = merge_checkpoints(request(models, save_as_half=True, overwrite=True))
    assert again.path == first.path and again.path.read_bytes() != before
    assert not [p for p in first.path.parent.iterdir() if p.name.endswith(".partial")]


def test_clear_errors_for_bad_requests(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MergeError, match="Primary model file not found"):
        merge_checkpoints(request(models, primary_model_name=tmp_path / "missing.safetensors"))
    with pytest.raises(MergeError, match="requires a secondary model"):
        merge_checkpoints(request(models, secondary_model_name=None))
    with pytest.raises(MergeError, match=r"\(Add difference\) requires a tertiary model"):
        merge_checkpoints(request(models, interp_method="Add difference", tertiary_model_name=None))
    with pytest.raises(MergeError, match="plain file name"):
        merge_checkpoints(request(models, custom_name="../escape"))
    with pytest.raises(MergeError, match="Output folder does not exist"):
        merge_checkpoints(request(models, output_dir=tmp_path / "nowhere"))
    (tmp_path / "junk.ckpt").write_bytes(b"not a pickle")
    with pytest.raises(MergeError, match="Secondary model junk.ckpt"):
        merge_checkpoints(request(models, secondary_model_name=tmp_path / "junk.ckpt"))


def test_ckpt_input_is_loaded_safely_and_ckpt_output_matches(models: dict[str, Path], tmp_path: Path) -> None:
    a_ckpt = tmp_path / "a_old.ckpt"
    torch.save({"state_dict": load_file(models["a"]), "global_step": 10}, a_ckpt)
    st = merge_checkpoints(request({**models, "a": a_ckpt}, custom_name="st"))
    ck = merge_checkpoints(request({**models, "a": a_ckpt}, custom_name="ck", checkpoint_format="ckpt"))
    assert ck.path.name == "ck.ckpt" and ck.metadata == {}
    from_ckpt = torch.load(ck.path, weights_only=True)
    from_st = load_file(st.path)
    assert from_ckpt.keys() == from_st.keys()
    assert all(torch.equal(from_ckpt[k], from_st[k]) for k in from_st)

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {UNET_IN: torch.ones(1)}, "x": Evil()}, evil)
    with pytest.raises(MergeError, match="cannot be"):
        merge_checkpoints(request({**models, "a": evil}, custom_name="evil"))


def test_config_yaml_is_copied(models: dict[str, Path]) -> None:
    models["b"].with_suffix(".yaml").write_text("model: {target: b}\n")
    result = merge_checkpoints(request(models))
    assert result.config_path == result.path.with_suffix(".yaml")
    assert result.config_path.read_text() == "model: {target: b}\n"
    none = merge_checkpoints(request(models, config_source=3, custom_name="noconfig"))
    assert none.config_path is None and not none.path.with_suffix(".yaml").exists()


def test_progress_is_reported_and_abort_leaves_nothing(models: dict[str, Path]) -> None:
    seen: list[tuple[int, int]] = []
    result = merge_checkpoints(request(models), progress=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 9) for i in range(1, 10)] and result.tensor_count == 9

    def stop(i: int, n: int) -> None:
        if i == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        merge_checkpoints(request(models, custom_name="aborted"), progress=stop)
    assert sorted(p.name for p in models["a"].parent.iterdir()) == sorted(
        ["a.safetensors", "b.safetensors", "c.safetensors", result.path.name]
    )


def test_stream_writer_layout_and_checks(tmp_path: Path) -> None:
    specs = [
        TensorSpec("w", torch.bfloat16, (3, 5)),
        TensorSpec("scalar", torch.float32, ()),
        TensorSpec("ids", torch.int64, (1, 7)),
        TensorSpec("empty", torch.float16, (0, 4)),
    ]
    values = {
        "w": torch.randn(3, 5).bfloat16(),
        "scalar": torch.tensor(2.5),
        "ids": torch.arange(7).unsqueeze(0),
        "empty": torch.zeros(0, 4, dtype=torch.float16),
    }
    path = tmp_path / "s.safetensors"
    with SafetensorsStreamWriter(path, specs, {"k": "v"}) as w:
        for spec in specs:
            w.write(spec.name, values[spec.name])
    (header_len,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert (8 + header_len) % 8 == 0
    loaded = load_file(path)
    assert all(torch.equal(loaded[k], values[k]) for k in values)
    with SafetensorsReader(path) as r:
        assert r.metadata == {"k": "v"} and r.tensor_names() == ["w", "scalar", "ids", "empty"]
        assert torch.equal(r.read("w"), values["w"]) and r.read("scalar").shape == ()

    with pytest.raises(FileExistsError):
        SafetensorsStreamWriter(path, specs)
    bad = SafetensorsStreamWriter(tmp_path / "bad.safetensors", specs)
    with pytest.raises(ValueError, match="expected tensor 'w' next"):
        bad.write("ids", values["ids"])
    with pytest.raises(ValueError, match="header declares"):
        bad.write("w", torch.zeros(3, 5))
    with pytest.raises(ValueError, match="not written"):
        bad.finish()
    bad.abort()


def test_reader_rejects_corrupt_files(tmp_path: Path) -> None:
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x00")
    with pytest.raises(ValueError, match="too short"):
        read_header(tmp_path / "short.safetensors")
    (tmp_path / "huge.safetensors").write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(ValueError, match="header length"):
        read_header(tmp_path / "huge.safetensors")
    good = write(tmp_path / "t.safetensors", {"x": torch.ones(1000)})
    (tmp_path / "trunc.safetensors").write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        read_header(tmp_path / "trunc.safetensors")


PEAK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(2)
    from modules.merger import MergeRequest, merge_checkpoints

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    a, b, out = (Path(p) for p in sys.argv[1:4])
    request = dict(primary_model_name=a, secondary_model_name=b, output_dir=out, save_metadata=False)
    # Warm-up on one tensor: torch pages in kernels and thread pools on first use (~150 MB, once).
    merge_checkpoints(MergeRequest(**request, discard_weights=r"t[1-9]", custom_name="warm-up"))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak to the current resident size
    base = status("VmRSS")
    merge_checkpoints(MergeRequest(**request))
    print(json.dumps({"base": base, "peak": status("VmHWM")}))
    """
)


@pytest.mark.slow
def test_streaming_merge_peak_memory_is_far_below_inputs(tmp_path: Path) -> None:
    tensors_per_file, numel = 50, 1_000_000  # 50 x 4 MB = 200 MB per file
    for name, seed in (("a", 1), ("b", 2)):
        g = torch.Generator().manual_seed(seed)
        specs = [
            TensorSpec(f"model.diffusion_model.t{i}.weight", torch.float32, (numel,)) for i in range(tensors_per_file)
        ]
        with SafetensorsStreamWriter(tmp_path / f"{name}.safetensors", specs) as w:
            for spec in specs:
                w.write(spec.name, torch.rand(numel, generator=g))
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = [str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), str(out)]
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    growth = measured["peak"] - measured["base"]
    inputs = 2 * tensors_per_file * numel * 4
    assert growth < inputs / 4, f"peak grew by {growth / 2**20:.0f} MiB while merging {inputs / 2**20:.0f} MiB"
    merged = load_file(out / "0.7(a) + 0.3(b).safetensors")
    assert len(merged) == tensors_per_file
