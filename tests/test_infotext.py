"""Infotext: A1111's layout, key order and inclusion rules, parsing, and applying to requests."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules.core.shared_options import core_registry
from modules.generation.infotext import (
    RE_PARAM,
    ExtractedStyles,
    GenerationFacts,
    InfotextFlags,
    ParseOptions,
    create_infotext,
    format_infotext,
    ordered_generation_params,
    parse_generation_parameters,
    quote,
    uses_emphasis,
)
from modules.generation.infotext_fields import infotext_to_request_fields, override_settings_from_infotext

DATA = Path(__file__).parent / "data" / "infotexts"


def sample(name: str) -> str:
    return (DATA / f"{name}.txt").read_text(encoding="utf-8").rstrip("\n")


def example_facts(**changes: object) -> GenerationFacts:
    """The facts behind infotext.md §3 (txt2img + hires + LoRA)."""
    facts = GenerationFacts(
        steps=25,
        sampler_name="DPM++ 2M",
        schedule_type="Karras",
        cfg_scale=7,
        seed=1234567890,
        width=512,
        height=768,
        model_hash="6ce0161689",
        model_name="v1-5-pruned-emaonly",
        denoising_strength=0.45,
        clip_skip=2,
        extra={
            "Hires upscale": 2,
            "Hires steps": 10,
            "Hires upscaler": "R-ESRGAN 4x+",
            "Lora hashes": "add_detail: 7c6bad76eb54",
        },
        version="v1.10.1",
    )
    for key, value in changes.items():
        setattr(facts, key, value)
    return facts


EXAMPLE_PROMPT = (
    "masterpiece, best quality, a red fox in a snowy forest, (soft morning light:1.2), <lora:add_detail:0.6>"
)
EXAMPLE_NEGATIVE = "lowres, blurry, (worst quality:1.4)"


# --- writing --------------------------------------------------------------------------------


def test_reference_example_is_reproduced_exactly() -> None:
    text = create_infotext(EXAMPLE_PROMPT, EXAMPLE_NEGATIVE, example_facts())
    assert text == sample("txt2img_hires_lora")


def test_key_order_follows_a1111() -> None:
    facts = example_facts(
        image_cfg_scale=1.5,
        face_restoration="CodeFormer",
        vae_hash="735e4c3a44",
        vae_name="vae-ft-mse",
        subseed=9,
        subseed_strength=0.3,
        seed_resize_from_w=256,
        seed_resize_from_h=256,
        conditional_mask_weight=1.0,
        eta_noise_seed_delta=31337,
        sampler_uses_ensd=True,
        token_merging_ratio=0.2,
        token_merging_ratio_hr=0.3,
        enable_hr=True,
        init_image_hash="abc",
        rng="CPU",
        tiling=True,
        user="alice",
        flags=InfotextFlags(add_user_name=True),
    )
    assert list(ordered_generation_params(facts)) == [
        "Steps",
        "Sampler",
        "Schedule type",
        "CFG scale",
        "Image CFG scale",
        "Seed",
        "Face restoration",
        "Size",
        "Model hash",
        "Model",
        "VAE hash",
        "VAE",
        "Variation seed",
        "Variation seed strength",
        "Seed resize from",
        "Denoising strength",
        "Conditional mask weight",
        "Clip skip",
        "ENSD",
        "Token merging ratio",
        "Token merging ratio hr",
        "Init image hash",
        "RNG",
        "Tiling",
        "Hires upscale",
        "Hires steps",
        "Hires upscaler",
        "Lora hashes",
        "Version",
        "User",
    ]


def test_inclusion_rules_leave_out_defaults() -> None:
    params = ordered_generation_params(
        example_facts(clip_skip=1, subseed=5, subseed_strength=0, seed_resize_from_w=512, seed_resize_from_h=0)
    )
    for absent in ("Clip skip", "Variation seed", "Variation seed strength", "Seed resize from", "RNG", "ENSD"):
        assert absent not in params
    assert "Tiling" not in params and "User" not in params


def test_ensd_needs_a_nonzero_delta_and_a_sampler_that_uses_it() -> None:
    assert "ENSD" not in ordered_generation_params(example_facts(eta_noise_seed_delta=31337))
    assert "ENSD" not in ordered_generation_params(example_facts(sampler_uses_ensd=True))
    params = ordered_generation_params(example_facts(eta_noise_seed_delta=31337, sampler_uses_ensd=True))
    assert params["ENSD"] == 31337


def test_flags_drop_model_vae_and_version() -> None:
    facts = example_facts(
        vae_hash="h",
        vae_name="v",
        flags=InfotextFlags(
            add_model_hash=False, add_model_name=False, add_vae_hash=False, add_vae_name=False, add_version=False
        ),
    )
    params = ordered_generation_params(facts)
    assert not {"Model hash", "Model", "VAE hash", "VAE", "Version"} & set(params)
    flags = InfotextFlags.from_settings({"add_model_hash_to_info": False, "add_user_name_to_info": True})
    assert flags.add_model_hash is False and flags.add_model_name is True and flags.add_user_name is True


def test_extra_key_in_fixed_list_keeps_its_position_and_takes_the_extra_value() -> None:
    facts = example_facts(denoising_strength=None, extra={"Mask blur": 4, "Denoising strength": 0.6, "Steps": 99})
    params = ordered_generation_params(facts)
    keys = list(params)
    assert keys.index("Denoising strength") < keys.index("Mask blur")
    assert keys[0] == "Steps" and params["Steps"] == 99
    assert params["Denoising strength"] == 0.6


def test_extra_values_per_image_lists_and_callables() -> None:
    facts = example_facts(extra={"Per image": ["a", "b"], "Computed": lambda index: f"#{index}", "Dropped": None})
    params = ordered_generation_params(facts)
    assert params["Per image"] == "a" and params["Computed"] == "#0" and "Dropped" not in params
    facts.index = 1
    params = ordered_generation_params(facts)
    assert params["Per image"] == "b" and params["Computed"] == "#1"


def test_format_quotes_bare_keys_and_empty_negative() -> None:
    text = format_infotext(
        "p", "", {"Steps": 20, "Tiling": "Tiling", "Note": 'say "hi", ok', "Empty": None, "Ü": "ä:ö"}
    )
    assert text == 'p\nSteps: 20, Tiling, Note: "say \\"hi\\", ok", Ü: "ä:ö"'
    assert quote("plain text") == "plain text"
    assert quote("line\nbreak") == '"line\\nbreak"'
    assert format_infotext("", "", {}) == ""


# --- parsing --------------------------------------------------------------------------------


def test_parse_reference_example() -> None:
    res = parse_generation_parameters(sample("txt2img_hires_lora"))
    assert res["Prompt"] == EXAMPLE_PROMPT
    assert res["Negative prompt"] == EXAMPLE_NEGATIVE
    assert res["Steps"] == "25" and res["Sampler"] == "DPM++ 2M" and res["Schedule type"] == "Karras"
    assert res["CFG scale"] == "7" and res["Seed"] == "1234567890"
    assert res["Size-1"] == "512" and res["Size-2"] == "768" and "Size" not in res
    assert res["Model hash"] == "6ce0161689" and res["Model"] == "v1-5-pruned-emaonly"
    assert res["Clip skip"] == "2" and res["Denoising strength"] == "0.45"
    assert res["Hires upscale"] == "2" and res["Hires upscaler"] == "R-ESRGAN 4x+"
    assert res["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert res["Version"] == "v1.10.1"
    assert res["Emphasis"] == "Original"  # the prompt has (x:1.2)
    assert res["Hires sampler"] == "Use same sampler" and res["Hires resize-1"] == 0
    # A1111's dict order: params first, then Prompt / Negative prompt, then defaults
    keys = list(res)
    assert keys[0] == "Steps" and keys.index("Version") < keys.index("Prompt") < keys.index("Hires resize-1")


def test_parse_legacy_infotext_and_defaults() -> None:
    res = parse_generation_parameters(sample("legacy_model_hash"))
    assert res["Prompt"].startswith("girl with an artist's beret")
    assert res["Negative prompt"].endswith("messy drawing")
    assert res["Model hash"] == "45dee52b" and res["Sampler"] == "Euler a"
    assert res["Clip skip"] == "1"
    assert res["RNG"] == "GPU" and res["Schedule type"] == "Automatic"
    assert res["Hires resize-1"] == 0 and res["Hires resize-2"] == 0
    assert res["Hires checkpoint"] == "Use same checkpoint" and res["Hires schedule type"] == "Use same scheduler"
    assert res["Hires prompt"] == "" and res["Hires negative prompt"] == ""
    assert res["Mask mode"] == "Inpaint masked" and res["Masked content"] == "original"
    assert res["Inpaint area"] == "Whole picture" and res["Masked area padding"] == 32
    assert res["Schedule max sigma"] == 0 and res["Schedule min sigma"] == 0 and res["Schedule rho"] == 0
    assert res["VAE Encoder"] == "Full" and res["VAE Decoder"] == "Full" and res["FP8 weight"] == "Disable"
    assert "Cache FP16 weight for LoRA" not in res
    assert res["Refiner switch by sampling steps"] is False
    assert res["Emphasis"] == "Original"  # ((eyeshadow)) weights the prompt
    assert "Downcast alphas_cumprod" not in res  # no Version: no back-compat flags


def test_parse_multiline_prompts_and_quoted_hashes() -> None:
    res = parse_generation_parameters(sample("multiline_prompts"))
    assert res["Prompt"] == (
        "a cozy cabin in the mountains,\nwarm light in the windows BREAK\n"
        "snow falling, night sky, <lora:filmgrain:0.4>, detailed_style_emb"
    )
    assert res["Negative prompt"] == "text, watermark,\nsignature, jpeg artifacts"
    assert res["TI hashes"] == "detailed_style_emb: 0f1e2d3c4b5a, badhandv4: 5e40d722fe"
    assert res["Lora hashes"] == "filmgrain: 1a2b3c4d5e6f"
    assert res["VAE"] == "vae-ft-mse-840000-ema-pruned.safetensors" and res["CFG scale"] == "6.5"
    assert "Emphasis" not in res  # no weights, BREAK does not count
    assert "Downcast alphas_cumprod" not in res  # v1.9.4 is newer than 1.7.0-225


def test_parse_variation_seed_infotext() -> None:
    res = parse_generation_parameters(sample("variation_seed"))
    assert res["Variation seed"] == "777" and res["Variation seed strength"] == "0.25"
    assert res["Seed resize from-1"] == "512" and res["Seed resize from-2"] == "512"
    assert res["ENSD"] == "31337" and res["RNG"] == "CPU" and res["Eta"] == "0.67"
    assert res["Schedule type"] == "Automatic"


def test_parse_inpaint_infotext() -> None:
    res = parse_generation_parameters(sample("img2img_inpaint"))
    assert res["Masked content"] == "latent noise" and res["Inpaint area"] == "Only masked"
    assert res["Masked area padding"] == "48" and res["Mask mode"] == "Inpaint not masked"
    assert res["Mask blur"] == "4" and res["Conditional mask weight"] == "1.0" and res["Noise multiplier"] == "0.95"


def test_parse_hires_prompts_and_refiner() -> None:
    res = parse_generation_parameters(sample("sdxl_hires_refiner"))
    assert res["Hires prompt"] == "cinematic photo of a lighthouse at dusk, dramatic clouds, sharp focus"
    assert res["Hires negative prompt"] == "drawing, painting, blur"
    assert res["Hires sampler"] == "Euler" and res["Hires schedule type"] == "Uniform"
    assert res["Refiner"] == "sd_xl_refiner_1.0 [7440042bbd]" and res["Refiner switch at"] == "0.8"
    assert res["Refiner switch by sampling steps"] is False


def test_old_hires_fix_hypernet_and_version_backcompat() -> None:
    res = parse_generation_parameters(sample("old_hires_hypernet"))
    # First pass size 0x0: the old automatic first pass (~512x512 pixels, multiples of 64)
    assert (res["Size-1"], res["Size-2"]) == (640, 448)
    assert (res["Hires resize-1"], res["Hires resize-2"]) == (1024, 768)
    assert res["Prompt"] == "a castle on a hill, [morning:evening:10]<hypernet:anime_3:0.8>"
    assert res["Negative prompt"] == ""
    assert res["Old prompt editing timelines"] is True  # < 1.6.0 and '[' in the prompt
    assert res["Pad conds v0"] is True  # < 1.6.0 with DDIM
    assert res["Downcast alphas_cumprod"] is True
    assert "Refiner switch by sampling steps" in res and res["Refiner switch by sampling steps"] is False
    no_compat = parse_generation_parameters(sample("old_hires_hypernet"), options=ParseOptions(auto_backcompat=False))
    assert "Pad conds v0" not in no_compat


def test_old_hires_width_height_setting_uses_hires_resize_as_size() -> None:
    text = "p\nSteps: 20, Sampler: Euler, Size: 512x512, Hires resize: 1024x768"
    res = parse_generation_parameters(text, options=ParseOptions(use_old_hires_fix_width_height=True))
    assert (res["Size-1"], res["Size-2"]) == (1024, 768)


def test_refiner_before_1_8_switches_by_sampling_steps() -> None:
    res = parse_generation_parameters("p\nSteps: 20, Sampler: Euler, Refiner: xl_ref, Version: v1.7.0")
    assert res["Refiner switch by sampling steps"] is True


def test_last_line_with_fewer_than_three_pairs_is_prompt() -> None:
    res = parse_generation_parameters("a photo\nstyle: watercolor, mood: calm")
    assert res["Prompt"] == "a photo\nstyle: watercolor, mood: calm"
    assert "style" not in res and res["Clip skip"] == "1"


def test_skip_fields_and_empty_values() -> None:
    text = "p\nSteps: 20, Sampler: Euler, Seed: 3, Hires prompt: , Note: x"
    res = parse_generation_parameters(text, skip_fields=["Seed", "Clip skip"])
    assert "Seed" not in res and "Clip skip" not in res
    assert res["Hires prompt"] == ""  # empty value skipped, default filled
    assert res["Note"] == "x"


def test_styles_extractor_modes() -> None:
    def extract(prompt: str, negative: str) -> ExtractedStyles:
        styles = ["Cinematic"] if prompt.endswith(", film grain") else []
        return ExtractedStyles(styles, prompt.removesuffix(", film grain"), negative)

    text = "a cat, film grain\nSteps: 20, Sampler: Euler, Seed: 1"
    res = parse_generation_parameters(text, extract_styles=extract)
    assert res["Styles array"] == ["Cinematic"] and res["Prompt"] == "a cat"
    ignored = parse_generation_parameters(text, extract_styles=extract, options=ParseOptions(infotext_styles="Ignore"))
    assert "Styles array" not in ignored and ignored["Prompt"] == "a cat, film grain"
    plain = "a dog\nSteps: 20, Sampler: Euler, Seed: 1"
    assert "Styles array" not in parse_generation_parameters(plain, extract_styles=extract)
    applied = parse_generation_parameters(plain, extract_styles=extract, options=ParseOptions(infotext_styles="Apply"))
    assert applied["Styles array"] == []


def test_hires_prompt_equal_after_style_removal_becomes_empty() -> None:
    def extract(prompt: str, negative: str) -> ExtractedStyles:
        found = prompt.endswith(", film grain")
        return ExtractedStyles(["Cinematic"] if found else [], prompt.removesuffix(", film grain"), negative)

    text = 'a cat, film grain\nSteps: 20, Sampler: Euler, Hires prompt: "a cat, film grain", Version: v1.10.1'
    res = parse_generation_parameters(text, extract_styles=extract)
    assert res["Hires prompt"] == "" and res["Prompt"] == "a cat" and res["Styles array"] == ["Cinematic"]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a cat", False),
        ("(a cat)", True),
        ("[a cat]", True),
        ("(a cat:1.0)", False),
        ("(a cat:0.8)", True),
        (r"\(a cat\)", False),
        ("a BREAK b", False),
        ("(unclosed", True),
    ],
)
def test_emphasis_detection(prompt: str, expected: bool) -> None:
    assert uses_emphasis(prompt) is expected


@pytest.mark.parametrize(
    "params",
    [
        {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7.5, "Seed": 1, "Size": "512x512"},
        {"Steps": 5, "Sampler": "DDIM", "Seed": 2, "Lora hashes": "a: 1, b: 2", "Note": "multi\nline"},
        {"Steps": 5, "Sampler": "LMS", "Seed": 3, "Quote": 'he said "x, y"', "Ünï": "ça: va", "Tiling": "Tiling"},
    ],
)
def test_create_parse_create_round_trip(params: dict[str, object]) -> None:
    prompt, negative = "line one, (x:1.1)\nline two", "bad\nworse"
    text = format_infotext(prompt, negative, params)
    parsed = parse_generation_parameters(text)
    assert parsed["Prompt"] == prompt and parsed["Negative prompt"] == negative
    rebuilt: dict[str, object] = {}
    for key in params:
        if key == "Size":
            rebuilt[key] = f"{parsed['Size-1']}x{parsed['Size-2']}"
        elif key == "Tiling":
            rebuilt[key] = "Tiling" if "Tiling" not in parsed else parsed[key]
        else:
            rebuilt[key] = parsed[key]
    assert format_infotext(parsed["Prompt"], parsed["Negative prompt"], rebuilt) == text


def test_sample_files_round_trip_through_parse() -> None:
    """Every sample: parse, then write the same keys back in the same order -> the same text."""
    for path in sorted(DATA.glob("*.txt")):
        if path.stem == "old_hires_hypernet":
            continue  # parsing rewrites its sizes and prompt on purpose (tested above)
        text = path.read_text(encoding="utf-8").rstrip("\n")
        parsed = parse_generation_parameters(text)
        params: dict[str, object] = {}
        for key, _ in RE_PARAM.findall(text.split("\n")[-1]):
            if f"{key}-1" in parsed and key not in parsed:
                params[key] = f"{parsed[key + '-1']}x{parsed[key + '-2']}"
            else:
                params[key] = parsed[key]
        assert format_infotext(parsed["Prompt"], parsed["Negative prompt"], params) == text, path.name


# --- applying to requests -------------------------------------------------------------------


def test_request_fields_for_txt2img() -> None:
    parsed = parse_generation_parameters(sample("txt2img_hires_lora"))
    result = infotext_to_request_fields(parsed, core_registry(), tab="txt2img")
    f = result.fields
    assert f["prompt"] == EXAMPLE_PROMPT and f["negative_prompt"] == EXAMPLE_NEGATIVE
    assert f["steps"] == 25 and f["sampler_name"] == "DPM++ 2M" and f["scheduler"] == "Karras"
    assert f["cfg_scale"] == 7.0 and f["seed"] == 1234567890
    assert (f["width"], f["height"]) == (512, 768)
    assert f["denoising_strength"] == 0.45 and f["enable_hr"] is True
    assert f["hr_scale"] == 2.0 and f["hr_second_pass_steps"] == 10 and f["hr_upscaler"] == "R-ESRGAN 4x+"
    assert f["hr_resize_x"] == 0 and f["hr_sampler_name"] == "Use same sampler"
    assert "mask_blur" not in f and "image_cfg_scale" not in f
    assert result.override_settings["CLIP_stop_at_last_layers"] == 2
    assert "sd_model_checkpoint" not in result.override_settings  # weights auto swap disabled
    assert result.skipped == {}


def test_request_fields_checkpoint_override_only_when_allowed() -> None:
    parsed = parse_generation_parameters(sample("txt2img_hires_lora"))
    allowed = infotext_to_request_fields(parsed, core_registry(), disable_weights_auto_swap=False)
    assert allowed.override_settings["sd_model_checkpoint"] == "v1-5-pruned-emaonly"


def test_override_settings_skip_values_equal_to_current() -> None:
    parsed = parse_generation_parameters(sample("variation_seed"))
    registry = core_registry()
    current = {key: info.default for key, info in registry.options.items()}
    result = infotext_to_request_fields(parsed, registry, current_settings=current)
    assert result.override_settings == {"eta_noise_seed_delta": 31337, "randn_source": "CPU", "eta_ancestral": 0.67}
    assert result.fields["subseed"] == 777 and result.fields["subseed_strength"] == 0.25
    assert (result.fields["seed_resize_from_w"], result.fields["seed_resize_from_h"]) == (512, 512)
    labels = [o.label for o in override_settings_from_infotext(parsed, registry, current_settings=current)]
    assert labels == ["RNG", "Eta", "ENSD"]  # registry order


def test_request_fields_for_img2img_inpaint() -> None:
    parsed = parse_generation_parameters(sample("img2img_inpaint"))
    registry = core_registry()
    current = {key: info.default for key, info in registry.options.items()}
    result = infotext_to_request_fields(parsed, registry, tab="img2img", current_settings=current)
    f = result.fields
    assert f["inpainting_fill"] == 2 and f["inpaint_full_res"] is True and f["inpainting_mask_invert"] == 1
    assert f["mask_blur"] == 4 and f["inpaint_full_res_padding"] == 48 and f["denoising_strength"] == 0.75
    assert "enable_hr" not in f and "hr_scale" not in f
    assert result.override_settings == {"initial_noise_multiplier": 0.95}  # mask weight 1.0 is the default


def test_refiner_fields() -> None:
    parsed = parse_generation_parameters(sample("sdxl_hires_refiner"))
    f = infotext_to_request_fields(parsed, core_registry()).fields
    assert f["refiner_checkpoint"] == "sd_xl_refiner_1.0 [7440042bbd]" and f["refiner_switch_at"] == 0.8
    assert f["hr_prompt"].endswith("sharp focus") and f["hr_sampler_name"] == "Euler" and f["hr_scheduler"] == "Uniform"


def test_unusable_values_are_reported_not_raised() -> None:
    parsed = parse_generation_parameters("p\nSteps: many, Sampler: Euler, Seed: 1.5, Clip skip: two, RNG: Quantum")
    result = infotext_to_request_fields(parsed, core_registry())
    assert "steps" not in result.fields and "seed" not in result.fields
    assert result.fields["sampler_name"] == "Euler"
    assert set(result.skipped) >= {"Steps", "Seed", "Clip skip", "RNG"}
    assert "CLIP_stop_at_last_layers" not in result.override_settings
    assert "many" in result.skipped["Steps"]
