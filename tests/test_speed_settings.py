"""Speed settings: declarations, CLI flag defaults, A1111's token merging ratio rules, TAESD previews."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from modules.core.cmd_args import build_parser
from modules.core.options import OptionError, Options
from modules.core.shared_options import core_registry
from modules.generation.speed import SpeedSettings, speed_options, token_merging_ratio
from modules.generation.speed.taesd import find_taesd_decoder, load_taesd_decoder, taesd_decoder, taesd_preview


def _options(*flags: str) -> Options:
    registry = core_registry()
    registry.extend(speed_options(build_parser().parse_args(list(flags))))
    return Options(registry, None)


def test_a1111_keys_and_infotext_labels() -> None:
    by_key = {o.key: o for o in speed_options()}
    assert by_key["token_merging_ratio"].infotext == "Token merging ratio"
    assert by_key["token_merging_ratio_hr"].infotext == "Token merging ratio hr"
    assert by_key["token_merging_ratio_img2img"].infotext is None
    assert by_key["cross_attention_optimization"].default == "Automatic"
    assert by_key["batch_cond_uncond"].default is True
    assert by_key["token_merging_max_downsample"].default == 1  # A1111's (tomesd) setting
    assert not set(by_key) & set(core_registry().options), "a speed option duplicates a core one"


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ((), "Automatic"),
        (("--opt-sdp-no-mem-attention",), "sdp-no-mem"),
        (("--opt-sdp-attention",), "sdp"),
        (("--opt-split-attention",), "sliced"),
        (("--opt-sub-quad-attention",), "sliced"),
        (("--disable-opt-split-attention",), "None"),
        (("--xformers",), "xformers"),
    ],
)
def test_attention_flags_set_the_default(flag: tuple[str, ...], expected: str) -> None:
    assert _options(*flag).get("cross_attention_optimization") == expected


def test_channelslast_flag_sets_the_default_and_a_stored_value_wins() -> None:
    options = _options("--opt-channelslast")
    assert SpeedSettings.from_options(options.view()).channels_last
    options.set("opt_channelslast", False)
    assert not SpeedSettings.from_options(options.view()).channels_last


def test_ratio_outside_the_slider_is_refused() -> None:
    with pytest.raises(OptionError, match="token_merging_ratio"):
        _options().view({"token_merging_ratio": 0.95})


def test_unknown_attention_choice_is_refused() -> None:
    with pytest.raises(OptionError, match="cross_attention_optimization"):
        _options().view({"cross_attention_optimization": "flash9"})


def test_txt2img_and_hires_ratios_follow_a1111() -> None:
    opts = {"token_merging_ratio": 0.3, "token_merging_ratio_hr": 0.0, "token_merging_ratio_img2img": 0.6}
    assert token_merging_ratio(opts, kind="txt2img") == 0.3
    assert token_merging_ratio(opts, kind="txt2img", hires=True) == 0.3  # hr falls back to the base ratio
    assert token_merging_ratio({**opts, "token_merging_ratio_hr": 0.5}, kind="txt2img", hires=True) == 0.5
    assert token_merging_ratio(opts, kind="txt2img", job_ratio=0.2) == 0.2
    assert token_merging_ratio(opts, kind="txt2img", hires=True, job_ratio_hr=0.7) == 0.7


def test_img2img_ratio_follows_a1111() -> None:
    opts = {"token_merging_ratio": 0.3, "token_merging_ratio_img2img": 0.6}
    assert token_merging_ratio(opts, kind="img2img") == 0.6
    assert token_merging_ratio(opts, kind="img2img", overridden={"token_merging_ratio": 0.3}) == 0.3
    assert token_merging_ratio({**opts, "token_merging_ratio_img2img": 0.0}, kind="img2img") == 0.3
    assert token_merging_ratio(opts, kind="img2img", job_ratio=0.1) == 0.1


def test_settings_from_a_view_and_bad_kind() -> None:
    view = _options().view({"token_merging_ratio": 0.5, "vae_tiling": True, "vae_tile_size": 256})
    settings = SpeedSettings.from_options(view, kind="txt2img")
    assert (settings.token_merging_ratio, settings.vae_tiling, settings.vae_tile_size) == (0.5, True, 256)
    with pytest.raises(ValueError, match="kind must be"):
        SpeedSettings.from_options(view, kind="extras")


def test_settings_without_registration_use_defaults() -> None:
    assert SpeedSettings.from_options({}) == SpeedSettings()


# --- TAESD ---------------------------------------------------------------------------------------


def test_taesd_decoder_file_loads_and_previews_at_8x(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = taesd_decoder()
    path = tmp_path / "taesd_decoder.pth"
    torch.save(reference.state_dict(), path)
    assert find_taesd_decoder(tmp_path, is_sdxl=False) == path
    assert find_taesd_decoder(tmp_path, is_sdxl=True) is None
    decoder = load_taesd_decoder(path)
    latent = torch.randn(4, 6, 5)
    image = taesd_preview(decoder, latent)
    assert image.size == (40, 48)
    with torch.no_grad():
        expected = reference(latent.unsqueeze(0))[0].clamp(0, 1)
    got = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    assert (got - expected).abs().max() <= 1 / 255 + 1e-6


def test_taesd_original_key_layout() -> None:
    keys = set(taesd_decoder().state_dict())
    assert {"1.weight", "1.bias", "3.conv.0.weight", "3.conv.4.bias", "7.weight", "19.weight"} <= keys
    assert "7.bias" not in keys  # the convs after each upsample have no bias


def test_taesd_safetensors_with_prefixed_keys(tmp_path: Path) -> None:
    state = {f"decoder.layers.{k}": v.contiguous() for k, v in taesd_decoder().state_dict().items()}
    path = tmp_path / "taesdxl_decoder.safetensors"
    safetensors.torch.save_file(state, str(path))
    assert find_taesd_decoder(tmp_path, is_sdxl=True) == path
    assert load_taesd_decoder(path)[1].weight.shape == (64, 4, 3, 3)


def test_wrong_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "taesd_decoder.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not a TAESD decoder"):
        load_taesd_decoder(path)


def test_previewer_uses_the_file_when_present_and_none_without(tmp_path: Path) -> None:
    from modules.generation.speed import SpeedCache

    cache = SpeedCache()
    assert cache.taesd.previewer(tmp_path, is_sdxl=False) is None
    torch.save(taesd_decoder().state_dict(), tmp_path / "taesd_decoder.pth")
    preview = cache.taesd.previewer(tmp_path, is_sdxl=False)
    assert preview is not None
    assert preview(torch.randn(4, 8, 8)).size == (64, 64)
    assert cache.taesd.previewer(tmp_path, is_sdxl=False) is not None
    assert len(cache.taesd.loaded) == 1
