"""The built-in demo model: data, judge, training pieces, listing, and prompt adherence (issue 9).

The adherence tests load the committed checkpoint through ModelManager and generate through
GenerationService, exactly as for any user checkpoint, and score the images with the judge of
tools/demo/judge.py (hue votes of saturated pixels; fill ratio and top-half share of the shape).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from modules.generation.infotext import parse_generation_parameters
from modules.models.builtin_checkpoints import DEMO_CHECKPOINT, builtin_checkpoints
from modules.models.identify import identify_file
from modules.models.safetensors_header import read_safetensors_header
from tests.fixtures_models import TinyModelFiles, link_into
from tools.demo import train
from tools.demo.dataset import COLOURS, SHAPES, Scene, caption, make_samples, random_scene, render
from tools.demo.evaluate import (
    IMG2IMG_SCENES,
    DemoEnv,
    SamplingSettings,
    colour_adherence,
    colour_avoidance,
    demo_env,
    images_of,
    img2img_keeps,
    negative_prompt_effect,
    shape_adherence,
)
from tools.demo.judge import classify_shape, judge
from tools.demo.model import IMAGE_SIZE, DemoArchitecture, demo_configs

SAMPLING = SamplingSettings(steps=12, sampler_name="DPM++ 2M", cfg_scale=7.0)
SEED = 1000
SEEDS = 6

# --- data and judge ---------------------------------------------------------------------------


def test_caption_grammar() -> None:
    scene = Scene("circle", "red", "large", "top left", "white")
    assert caption(scene) == "a large red circle on a white background, top left"
    two_tone = Scene("star", "blue", "small", "center", "black", background2="gray")
    assert caption(two_tone) == "a small blue star on a black and gray background, center"
    short = {caption(scene, random.Random(i)) for i in range(200)}
    assert "a red circle" in short  # optional parts are sometimes left out
    assert all(text.startswith("a ") and "red circle" in text for text in short)


def test_scene_rejects_unknown_words() -> None:
    with pytest.raises(ValueError, match="unknown colour 'teal'"):
        Scene("circle", "teal", "large", "center", "white")
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        Scene("hexagon", "red", "large", "center", "white")
    with pytest.raises(ValueError, match="unknown background 'red'"):
        Scene("circle", "blue", "large", "center", "white", background2="red")


def test_samples_are_deterministic_and_sized() -> None:
    a, b = make_samples(4, IMAGE_SIZE, seed=3), make_samples(4, IMAGE_SIZE, seed=3)
    assert [s.caption for s in a] == [s.caption for s in b]
    assert all(np.array_equal(np.asarray(x.image), np.asarray(y.image)) for x, y in zip(a, b, strict=True))
    assert a[0].image.size == (IMAGE_SIZE, IMAGE_SIZE)
    assert [s.caption for s in make_samples(4, IMAGE_SIZE, seed=4)] != [s.caption for s in a]


def test_render_puts_the_shape_where_the_caption_says() -> None:
    image = np.asarray(render(Scene("square", "blue", "small", "top left", "white"), 64)).astype(int)
    blue = (image[..., 2] > 150) & (image[..., 0] < 100)
    ys, xs = np.nonzero(blue)
    assert 14 < ys.mean() < 24 and 14 < xs.mean() < 24  # centre at 0.3 of 64 px (+- jitter 0)
    assert (image[0, -1] == (245, 245, 245)).all()


def test_judge_is_right_on_the_training_renders() -> None:
    rng = random.Random(11)
    for _ in range(150):
        scene = random_scene(rng)
        verdict = judge(render(scene, IMAGE_SIZE), SHAPES)
        assert (verdict.colour, verdict.shape) == (scene.colour, scene.shape), scene


def test_judge_is_right_on_turned_and_blurred_renders() -> None:
    """A shape a few degrees off upright, with soft edges, as a model draws it, is still that shape."""
    rng = random.Random(5)
    wrong = []
    for _ in range(120):
        scene = random_scene(rng)
        image = render(scene, IMAGE_SIZE)
        turned = image.rotate(rng.uniform(-10, 10), Image.Resampling.BILINEAR, fillcolor=image.getpixel((0, 0)))
        verdict = judge(turned.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0))), SHAPES)
        if (verdict.colour, verdict.shape) != (scene.colour, scene.shape):
            wrong.append((scene, verdict.colour, verdict.shape))
    assert len(wrong) <= 3, wrong  # the upright-box judge called most turned squares circles


def test_judge_on_a_blank_image_and_unknown_shapes() -> None:
    verdict = judge(Image.new("RGB", (64, 64), (128, 128, 128)))
    assert verdict.colour is None and verdict.shape is None
    assert sum(verdict.colour_shares.values()) == 0.0
    with pytest.raises(ValueError, match="knows no shape"):
        classify_shape(0.8, 0.5, ["circle", "blob"])


# --- model pieces and training script ---------------------------------------------------------------


def test_latent_normalisation_is_exact() -> None:
    """Folding the per-channel shift/scale into the VAE changes only the latent space's units."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL.from_config(demo_configs(DemoArchitecture(vae_channels=(32, 32, 32, 32))).vae).eval()
    pixels = train.images_to_tensor([s.image for s in make_samples(6, IMAGE_SIZE, seed=1)])
    with torch.no_grad():
        before = train.encode_means(vae, pixels)
        decoded_before = vae.decode(before).sample
        normalised = train.normalise_latent_space(vae, before)
        after = train.encode_means(vae, pixels)
        decoded_after = vae.decode(after).sample
    assert torch.allclose(after, normalised, atol=1e-4)
    # the UNet process, training beside the VAE's, normalises the code itself: the same map
    assert torch.allclose(train.normalised_code(before), normalised, atol=1e-5)
    scaled = after * train.VAE_SCALING
    assert torch.allclose(scaled.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(scaled.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-3)
    assert torch.allclose(decoded_after, decoded_before, atol=1e-4)


def test_designed_code_carries_the_shape_colour_unmixed() -> None:
    """Cells the shape covers hold its own colour (not a mix with the background), others the background."""
    scene = Scene("circle", "pink", "large", "center", "black")
    code = train.designed_latents(train.images_to_tensor([render(scene, IMAGE_SIZE)]))[0]
    pink = torch.tensor(COLOURS["pink"], dtype=torch.float32) / 127.5 - 1
    black = torch.tensor((20, 20, 20), dtype=torch.float32) / 127.5 - 1
    coverage = (code[3] + 1) / 2
    middle = IMAGE_SIZE // 16  # the 8x8 cells around the image centre
    assert coverage[middle - 1 : middle + 1, middle - 1 : middle + 1].min() > 0.95 and coverage[0, 0] == 0.0
    partly = (coverage > 0.3) & (coverage < 0.9)  # the circle's edge cells
    assert partly.any()
    assert torch.allclose(code[:3][:, partly].T, pink.expand(int(partly.sum()), 3), atol=0.05)
    assert torch.allclose(code[:3, 0, 0], black, atol=0.01)


def test_training_captions_mix_full_shape_only_colour_only_and_empty() -> None:
    rng = random.Random(0)
    scene = Scene("triangle", "green", "small", "top right", "gray")
    texts = [train.training_caption(scene, rng) for _ in range(2000)]
    counts = {
        "empty": texts.count(""),
        "colour word only": texts.count("green"),
        "no colour": sum(t.startswith("a ") and "green" not in t for t in texts),
        "colour and shape": sum("green triangle" in t for t in texts),
    }
    assert 120 < counts["empty"] < 280 and 40 < counts["colour word only"] < 160, counts
    assert 150 < counts["no colour"] < 400 and counts["colour and shape"] > 1300, counts
    assert sum(counts.values()) == len(texts)  # nothing else: every other caption names both


def test_train_cli_rejects_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        train.parse_args(["--out", "x", "--unet-steps", "0"])
    assert "--unet-steps and --images must be positive" in capsys.readouterr().err
    settings = train.parse_args(["--out", "x", "--unet-steps", "5", "--threads", "1"])
    assert settings.unet_steps == 5 and settings.threads == 1 and settings.out == Path("x")
    assert not settings.stop_after_decoder and settings.decoder_steps > 0
    side = train.parse_args(["--out", "x", "--stop-after-decoder", "--decoder-steps", "7", "--ema-decay", "0.99"])
    assert side.stop_after_decoder and side.decoder_steps == 7 and side.ema_decay == 0.99


def test_unet_loss_weights_the_coverage_channel_up() -> None:
    weights = train._channel_weights(4)
    assert torch.isclose(weights.mean(), torch.tensor(1.0))
    assert torch.isclose(weights[train.COVERAGE_CHANNEL], train.COVERAGE_LOSS_WEIGHT * weights[0])


# --- the committed checkpoint -------------------------------------------------------------------


def test_committed_checkpoint_is_a_small_sd1_file() -> None:
    assert DEMO_CHECKPOINT.is_file(), f"the demo model is missing: {DEMO_CHECKPOINT}"
    assert DEMO_CHECKPOINT.stat().st_size <= 25_000_000
    found = identify_file(DEMO_CHECKPOINT)
    assert (found.kind.value, found.family and found.family.value, found.prediction_type) == (
        "checkpoint",
        "sd1",
        "epsilon",
    )
    header = read_safetensors_header(DEMO_CHECKPOINT)
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"F16"}
    assert header["__metadata__"]["modelspec.title"] == "demo-shapes"
    assert builtin_checkpoints() == (DEMO_CHECKPOINT,)


def test_builtin_checkpoints_of_missing_folder(tmp_path: Path) -> None:
    assert builtin_checkpoints(tmp_path / "absent") == ()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoEnv:
    return demo_env(tmp_path_factory.mktemp("demo"), builtin_checkpoints())


def test_demo_is_listed_and_the_default_with_an_empty_models_folder(demo: DemoEnv) -> None:
    listed = demo.models.list_checkpoints()
    assert [c.name for c in listed] == ["demo-shapes.safetensors"]
    result = demo.txt2img("a red circle on a white background", SEED, 1, SAMPLING)
    info = parse_generation_parameters(result.infotexts[0])
    assert info["Model"] == "demo-shapes"
    assert info["Model hash"] == listed[0].shorthash and len(info["Model hash"]) == 10
    assert info["Sampler"] == "DPM++ 2M" and info["Steps"] == "12" and info["Size-1"] == str(IMAGE_SIZE)
    assert judge(images_of(result)[0]).colour == "red"


def test_demo_stays_selectable_after_user_checkpoints(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    env = demo_env(tmp_path, builtin_checkpoints())
    link_into(env.paths.ckpt_dir, tiny_models.checkpoint("sd1"))
    names = [c.name for c in env.models.refresh()]
    assert names == ["tiny-sd1.safetensors", "demo-shapes.safetensors"]  # the user's model is the default
    assert env.models.find_checkpoint("demo-shapes").filename == DEMO_CHECKPOINT


def test_same_seed_same_image(demo: DemoEnv) -> None:
    a = images_of(demo.txt2img("a blue square", 7, 1, SAMPLING))[0]
    b = images_of(demo.txt2img("a blue square", 7, 1, SAMPLING))[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))


# --- adherence (issue 9 acceptance) ----------------------------------------------------------------


def test_colour_follows_the_prompt(demo: DemoEnv) -> None:
    score = colour_adherence(demo, SEED, SEEDS, SAMPLING)
    assert score.total == 8 * SEEDS
    assert score.rate >= 0.85, score.misses


def test_shape_follows_the_prompt(demo: DemoEnv) -> None:
    score = shape_adherence(demo, SEED, SEEDS, SAMPLING)
    assert score.total == 3 * SEEDS
    assert score.rate >= 0.70, score.misses


@pytest.mark.parametrize("colour", ["red", "blue"])
def test_negative_prompt_lowers_that_colour_even_when_the_prompt_names_it(demo: DemoEnv, colour: str) -> None:
    """The hardest case: `a red circle ...` with negative prompt `red` pulls both ways at once."""
    effect = negative_prompt_effect(demo, colour, SEED, SEEDS, SAMPLING)
    assert effect.share_without > 0.05  # the colour is there to begin with
    assert effect.share_with < 0.9 * effect.share_without, effect


def test_negative_prompt_keeps_that_colour_away(demo: DemoEnv) -> None:
    """`a circle on a white background` leaves the colour to the model; naming one in the
    negative prompt should all but remove it from the images."""
    avoided = colour_avoidance(demo, SEED, SEEDS, SAMPLING)
    assert avoided.rate_without > 0.8, avoided  # nearly every image has a colour of the eight
    assert avoided.rate_with <= 0.25 * avoided.rate_without, avoided


@pytest.mark.parametrize("scene", IMG2IMG_SCENES, ids=lambda s: f"{s.colour}-{s.shape}")
def test_img2img_at_low_denoising_keeps_shape_and_colour(demo: DemoEnv, scene: Scene) -> None:
    check = img2img_keeps(demo, scene, SEED, 0.3, SAMPLING)
    assert check.kept, check
    assert check.mean_abs_diff < 8, check
    assert set(COLOURS) >= {scene.colour}
