"""Upscalers: registry listing, tiny ESRGAN / Compact model files through spandrel, tiling, memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from modules.postprocessing import TileSettings, UpscalerError, UpscalerRegistry
from modules.postprocessing.tiling import tile_starts, upscale_tiled
from modules.postprocessing.upscalers import scale_from_name, target_size

REPO_ROOT = Path(__file__).resolve().parents[1]


def tiny_esrgan(seed: int = 0, upsamples: int = 2, nf: int = 8) -> dict[str, torch.Tensor]:
    """RRDBNet weights with BasicSR key names (as in RealESRGAN_x4plus.pth), tiny widths, 1 block."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def conv(name: str, out_c: int, in_c: int, gain: float = 1.0) -> None:
        state[f"{name}.weight"] = torch.randn(out_c, in_c, 3, 3, generator=g) * (gain / (in_c * 9)) ** 0.5
        state[f"{name}.bias"] = torch.zeros(out_c)

    growth = 32  # spandrel's RRDB fixes the growth channels at 32
    conv("conv_first", nf, 3)
    for rdb in (1, 2, 3):
        for i in range(1, 6):
            conv(f"body.0.rdb{rdb}.conv{i}", growth if i < 5 else nf, nf + (i - 1) * growth, 0.1)
    conv("conv_body", nf, nf, 0.1)
    for i in range(1, upsamples + 1):
        conv(f"conv_up{i}", nf, nf)
    conv("conv_hr", nf, nf)
    conv("conv_last", 3, nf)
    state["conv_last.bias"] = torch.full((3,), 0.5)  # centre outputs so few pixels clip
    return state


def tiny_compact_1x(nf: int = 4) -> dict[str, torch.Tensor]:
    """SRVGGNetCompact (Real-ESRGAN General v3 layout), scale 1, one hidden conv."""
    g = torch.Generator().manual_seed(7)
    return {
        "body.0.weight": torch.randn(nf, 3, 3, 3, generator=g) * 0.2,
        "body.0.bias": torch.zeros(nf),
        "body.1.weight": torch.full((nf,), 0.25),
        "body.2.weight": torch.randn(nf, nf, 3, 3, generator=g) * 0.2,
        "body.2.bias": torch.zeros(nf),
        "body.3.weight": torch.full((nf,), 0.25),
        "body.4.weight": torch.randn(3, nf, 3, 3, generator=g) * 0.1,
        "body.4.bias": torch.zeros(3),
    }


def fixture_image(width: int = 96, height: int = 80) -> Image.Image:
    return Image.effect_mandelbrot((width, height), (-2.0, -1.2, 1.0, 1.2), 60).convert("RGB")


@pytest.fixture
def model_dirs(tmp_path: Path) -> list[Path]:
    esrgan, realesrgan, dat = tmp_path / "ESRGAN", tmp_path / "RealESRGAN", tmp_path / "DAT"
    for d in (esrgan, realesrgan):
        d.mkdir()
    weights = tiny_esrgan()
    torch.save(weights, esrgan / "tiny-4x.pth")
    save_file(weights, str(esrgan / "tiny-4x-st.safetensors"))
    torch.save(tiny_esrgan(upsamples=1), realesrgan / "RealESRGAN_x2plus.pth")
    (esrgan / "notes.txt").write_text("not a model")
    return [esrgan, realesrgan, dat]  # DAT does not exist: allowed


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


def test_registry_lists_builtins_then_model_files(model_dirs: list[Path]) -> None:
    registry = UpscalerRegistry(model_dirs)
    assert registry.names() == ["None", "Lanczos", "Nearest", "R-ESRGAN 2x+", "tiny-4x", "tiny-4x-st"]
    entries = {e.name: e for e in registry.entries()}
    assert entries["tiny-4x"].model_path == str(model_dirs[0] / "tiny-4x.pth")
    assert entries["tiny-4x"].model_name == "ESRGAN" and entries["tiny-4x"].model_url is None
    assert entries["tiny-4x"].scale == 4 and entries["R-ESRGAN 2x+"].scale == 2
    assert entries["Lanczos"].model_path is None


def test_esrgan_file_upscales_to_a1111_size_and_differs_from_lanczos(model_dirs: list[Path]) -> None:
    registry = UpscalerRegistry(model_dirs, TileSettings(0, 0))
    image = fixture_image(100, 75)
    from_pth = registry.get("tiny-4x").upscale(image, 4)
    from_st = registry.get("tiny-4x-st").upscale(image, 4)
    lanczos = registry.get("Lanczos").upscale(image, 4)
    assert from_pth.size == lanczos.size == (400, 296)  # 300 rounds down to a multiple of 8
    assert np.array_equal(np.asarray(from_pth), np.asarray(from_st))  # same weights, either format
    assert mean_abs_diff(from_pth, lanczos) > 5
    assert np.asarray(from_pth).std() > 3  # not a flat image


def test_model_scale_and_passes(model_dirs: list[Path]) -> None:
    registry = UpscalerRegistry(model_dirs, TileSettings(0, 0))
    image = fixture_image(40, 32)
    assert registry.get("tiny-4x").upscale(image, 2).size == (80, 64)  # one 4x pass, then Lanczos down
    two_x = registry.get("R-ESRGAN 2x+")
    assert two_x.upscale(image, 4).size == (160, 128)  # two 2x passes
    assert two_x.scale == 2.0


def test_tiled_matches_untiled_for_an_image_larger_than_a_tile(model_dirs: list[Path]) -> None:
    image = fixture_image(96, 80)
    whole = UpscalerRegistry(model_dirs, TileSettings(0, 0)).get("tiny-4x").upscale(image, 4)
    tiled = UpscalerRegistry(model_dirs, TileSettings(32, 8)).get("tiny-4x").upscale(image, 4)
    diff = np.abs(np.asarray(whole, dtype=np.int16) - np.asarray(tiled, dtype=np.int16))
    assert diff.mean() < 0.25
    assert (diff > 2).mean() < 0.005  # only a few seam pixels differ by more than 2 levels


def test_blending_is_exact_for_pointwise_models() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(70, 90, 3), dtype=np.uint8)

    def nearest_2x(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    expected = pixels.repeat(2, axis=0).repeat(2, axis=1)
    for tiles in (TileSettings(0, 0), TileSettings(32, 8), TileSettings(17, 0), TileSettings(64, 40)):
        out = upscale_tiled(pixels, nearest_2x, scale=2, tiles=tiles)
        assert np.array_equal(out, expected), tiles


def test_tile_starts_cover_with_overlap() -> None:
    assert tile_starts(100, 192, 8) == [0]
    starts = tile_starts(1000, 192, 8)
    assert starts[0] == 0 and starts[-1] == 1000 - 192
    assert all(b - a <= 192 - 8 for a, b in zip(starts, starts[1:], strict=False))
    with pytest.raises(ValueError, match="smaller than the tile size"):
        TileSettings(16, 16)


def test_a1111_target_size_and_names() -> None:
    assert target_size(512, 512, 2) == (1024, 1024)
    assert target_size(100, 75, 2) == (200, 144)
    with pytest.raises(UpscalerError, match="empty image"):
        target_size(3, 3, 1)
    with pytest.raises(UpscalerError, match="positive"):
        target_size(64, 64, 0)
    assert [scale_from_name(n) for n in ("4x-UltraSharp", "RealESRGAN_x2plus", "ESRGAN_4x", "ScuNET", "x264")] == [
        4,
        2,
        4,
        None,
        None,
    ]


def test_bad_model_files_give_clear_errors(tmp_path: Path) -> None:
    folder = tmp_path / "ESRGAN"
    folder.mkdir()
    torch.save({"unknown.weight": torch.ones(3, 3)}, folder / "mystery.pth")

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    torch.save({"conv_first.weight": Evil()}, folder / "evil.pth")
    registry = UpscalerRegistry([folder])
    image = fixture_image(16, 16)
    with pytest.raises(UpscalerError, match="spandrel does not recognise"):
        registry.get("mystery").upscale(image, 2)
    with pytest.raises(UpscalerError, match="cannot be loaded safely"):
        registry.get("evil").upscale(image, 2)
    with pytest.raises(UpscalerError, match="could not find upscaler named 'nope'"):
        registry.get("nope")
    (folder / "mystery.pth").unlink()
    with pytest.raises(UpscalerError, match="model file not found"):
        registry.get("mystery").upscale(image, 2)


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    import torch
    from PIL import Image
    torch.set_num_threads(2)
    from modules.postprocessing import TileSettings, UpscalerRegistry

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    registry = UpscalerRegistry([Path(sys.argv[1])], TileSettings(512, 16))
    upscaler = registry.get("compact-1x")
    side = 4000
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    pixels = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, -ramp) % 256, np.tile(ramp, (side, 1))], -1)
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    upscaler.upscale(image.crop((0, 0, 600, 600)), 1)  # warm-up: load the model, page torch kernels in
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak to the current resident size
    base = status("VmRSS")
    result = upscaler.upscale(image, 1)
    print(json.dumps({"base": base, "peak": status("VmHWM"), "size": list(result.size)}))
    """
)


@pytest.mark.slow
def test_4000px_image_upscales_tiled_within_a_memory_bound(tmp_path: Path) -> None:
    folder = tmp_path / "RealESRGAN"
    folder.mkdir()
    save_file(tiny_compact_1x(), str(folder / "compact-1x.safetensors"))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(folder)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    assert measured["size"] == [4000, 4000]
    growth_mib = (measured["peak"] - measured["base"]) / 2**20
    # Untiled, the float input alone is 183 MiB and each 4-channel feature map 244 MiB; tiled, the
    # uint8 copies of input and output (46 MiB each) and one float strip of tiles dominate.
    assert growth_mib < 300, f"peak grew by {growth_mib:.0f} MiB"
