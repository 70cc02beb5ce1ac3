"""Every A1111 processing hook and generation callback, called from real generation on tiny models.

The toy extension tests/extensions_fixtures/toy-hooks records each call (name and key
arguments) on p.toy_hooks and, when asked, changes what the hook hands it; these tests check
A1111's call order for txt2img with hires fix and for img2img with a mask, and that the changes
show in the images, the saved files and the infotext.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image

from modules.core.cmd_args import parse_args
from modules.extension_host import facade
from modules.extension_host.callbacks import CallbackRegistry
from modules.extension_host.generation_hooks import GenerationCallbacks, before_token_counter, infotext_pasted
from modules.extension_host.host import ExtensionHost
from modules.extension_host.problems import ProblemLog
from modules.generation.denoiser import DenoiserEvents
from modules.generation.hooks import ScriptHooks
from modules.generation.image_io import read_info_from_image
from modules.generation.processing import GenerationResult
from tests.gen_env import SD1, SD1_INPAINT, SDXL, GenEnv, env_services, pixels

FIXTURES = Path(__file__).parent / "extensions_fixtures"
CFG_EVENTS = ("cfg_denoiser", "cfg_denoised", "on_mask_blend", "cfg_after_cfg")


@pytest.fixture(scope="module")
def host(env: GenEnv) -> Iterator[ExtensionHost]:
    root = env.root
    shutil.copytree(FIXTURES / "toy-hooks", root / "extensions" / "toy-hooks", dirs_exist_ok=True)
    args = parse_args(["--data-dir", str(root)])
    services = env_services(env, args)
    bound = facade.bind(services, run_installers=False, builtin_dir=root / "no-builtins", core_scripts_dir=None)
    yield bound
    facade.unbind()


@pytest.fixture(scope="module")
def toy(host: ExtensionHost) -> ModuleType:
    module = next(m for m in host.loaded.modules.values() if (m.__file__ or "").endswith("hooks_toy.py"))
    assert module is sys.modules[module.__name__]
    return module


def _settings(**extra: object) -> dict[str, object]:
    return {"sd_model_checkpoint": SD1, **extra}


def _traced(modes: str = "", enabled: bool = True) -> dict[str, Any]:
    return {"Hook tracer": {"args": [enabled, modes]}}


def _img2img_inputs() -> tuple[Image.Image, Image.Image]:
    rng = np.random.default_rng(5)
    image = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    return image, Image.fromarray(mask)


def _trace(result: GenerationResult) -> list[tuple[str, dict[str, Any]]]:
    trace: list[tuple[str, dict[str, Any]]] = vars(result.p)["toy_hooks"]  # set by the toy's setup()
    return trace


def _names(result: GenerationResult) -> list[str]:
    """Hook names in call order, each run of per-step events folded into one "step xN" entry."""
    out: list[str] = []
    for name, details in _trace(result):
        if name in CFG_EVENTS and not details.get("final"):
            if out and out[-1].startswith("steps"):
                count = int(out[-1].split("x")[1]) + (name == "cfg_denoiser")
                out[-1] = f"steps x{count}"
            else:
                out.append("steps x1")
        else:
            out.append(name)
    return out


def _calls(result: GenerationResult, name: str) -> list[dict[str, Any]]:
    return [details for event, details in _trace(result) if event == name]


def test_txt2img_hires_calls_every_hook_in_a1111_order(host: ExtensionHost, env: GenEnv) -> None:
    result = env.txt2img(
        prompt="a red circle",
        seed=11,
        steps=3,
        sampler_name="Euler",
        enable_hr=True,
        hr_scale=1.5,
        hr_upscaler="Latent",
        hr_second_pass_steps=2,
        denoising_strength=0.6,
        override_settings=_settings(samples_save=True, CLIP_stop_at_last_layers=2),
        alwayson_scripts=_traced(),
    )
    assert _names(result) == [
        "setup",
        "before_process",
        "process",
        "before_process_batch",
        "after_extra_networks_activate",
        "process_batch",
        "process_before_every_sampling",
        "steps x3",
        "after_extra_networks_activate",
        "before_hr",
        "process_before_every_sampling",
        "steps x2",
        "post_sample",
        "postprocess_batch",
        "postprocess_batch_list",
        "postprocess_image",
        "postprocess_maskoverlay",
        "postprocess_image_after_composite",
        "before_image_saved",
        "image_saved",
        "postprocess",
    ]
    sampling = _calls(result, "process_before_every_sampling")
    assert sampling == [{"hr": False, "shape": (1, 4, 8, 8)}, {"hr": True, "shape": (1, 4, 12, 12)}]
    assert [c["hr"] for c in _calls(result, "after_extra_networks_activate")] == [False, True]
    assert _calls(result, "before_hr") == [{"hr": True}]
    assert _calls(result, "post_sample") == [{"shape": (1, 4, 12, 12)}]  # after the hires pass
    denoiser = _calls(result, "cfg_denoiser")
    # A1111's state.sampling_step: the last finished step, set by the sampler callback
    assert [(c["step"], c["total"]) for c in denoiser] == [(0, 3), (0, 3), (1, 3), (0, 2), (0, 2)]
    assert all(c["rows"] == 2 and c["same_p"] for c in denoiser)  # one cond + one uncond row
    # callbacks run in the job's context: shared.opts reads its override_settings
    assert _calls(result, "cfg_after_cfg")[-1] == {"shape": (1, 4, 12, 12), "clip_skip": 2}
    assert _calls(result, "postprocess_maskoverlay") == [{"index": 0, "masked": False}]
    saved = _calls(result, "image_saved")[0]["filename"]
    assert saved == result.saved_paths[0] == _calls(result, "before_image_saved")[0]["planned"]
    assert Path(saved).is_file() and result.images[0].size == (96, 96)
    assert "Toy hooks: trace" in result.infotexts[0]


def test_img2img_with_mask_calls_every_hook_in_a1111_order(host: ExtensionHost, env: GenEnv) -> None:
    image, mask = _img2img_inputs()
    result = env.img2img(
        [image], mask, prompt="fill", seed=4, steps=4, denoising_strength=0.5, alwayson_scripts=_traced()
    )
    assert _names(result) == [
        "setup",
        "before_process",
        "process",
        "before_process_batch",
        "after_extra_networks_activate",
        "process_batch",
        "process_before_every_sampling",
        f"steps x{len(_calls(result, 'cfg_denoiser'))}",
        "on_mask_blend",
        "post_sample",
        "postprocess_batch",
        "postprocess_batch_list",
        "postprocess_image",
        "postprocess_maskoverlay",
        "postprocess_image_after_composite",
        "postprocess",
    ]
    steps = [name for name, _ in _trace(result) if name in CFG_EVENTS]
    assert len(steps) >= 8 and steps[:4] == ["cfg_denoiser", "cfg_denoised", "on_mask_blend", "cfg_after_cfg"]
    blends = _calls(result, "on_mask_blend")
    assert [b["final"] for b in blends] == [False] * (len(blends) - 1) + [True]
    assert _calls(result, "postprocess_maskoverlay") == [{"index": 0, "masked": True}]


@pytest.mark.parametrize("checkpoint", [SD1, SDXL])
def test_cfg_denoiser_can_replace_the_text_conditioning(host: ExtensionHost, env: GenEnv, checkpoint: str) -> None:
    common: dict[str, Any] = {
        "seed": 21,
        "steps": 2,
        "sampler_name": "Euler",
        "negative_prompt": "blurry",
        "override_settings": {"sd_model_checkpoint": checkpoint},
    }
    changed = env.txt2img(prompt="a red circle", alwayson_scripts=_traced("cond"), **common)
    plain = env.txt2img(prompt="a red circle", alwayson_scripts=_traced(), **common)
    same = env.txt2img(prompt="blurry", alwayson_scripts=_traced(), **common)
    assert not np.array_equal(pixels(plain.images[0]), pixels(same.images[0]))
    # cond := uncond, so the prompt no longer matters: the image is that of prompt = negative prompt
    assert np.array_equal(pixels(changed.images[0]), pixels(same.images[0]))


def test_mask_blend_change_shows_in_the_image(host: ExtensionHost, env: GenEnv) -> None:
    image, mask = _img2img_inputs()

    def run(seed: int, modes: str) -> np.ndarray:
        result = env.img2img(
            [image], mask, prompt="x", seed=seed, denoising_strength=0.9, alwayson_scripts=_traced(modes)
        )
        return pixels(result.images[0])

    assert not np.array_equal(run(1, ""), run(2, ""))
    # every blend keeps the init latent: nothing the seed decides is left
    assert np.array_equal(run(1, "keep"), run(2, "keep"))


def test_post_sample_replaces_the_latents_before_decoding(host: ExtensionHost, env: GenEnv) -> None:
    def run(seed: int, modes: str) -> np.ndarray:
        result = env.txt2img(prompt="p", seed=seed, steps=2, alwayson_scripts=_traced(modes))
        return pixels(result.images[0])

    assert not np.array_equal(run(1, ""), run(2, ""))
    assert np.array_equal(run(1, "zero"), run(2, "zero"))


def test_before_image_saved_changes_the_file_name_and_pnginfo(host: ExtensionHost, env: GenEnv) -> None:
    result = env.txt2img(
        prompt="saved",
        seed=77,
        steps=2,
        override_settings=_settings(samples_save=True),
        alwayson_scripts=_traced("rename"),
    )
    path = Path(result.saved_paths[0])
    assert path.name == "toy-77.png" and path.is_file()
    assert _calls(result, "image_saved") == [{"filename": str(path)}]
    assert Path(_calls(result, "before_image_saved")[0]["planned"]).name != path.name
    with Image.open(path) as saved:
        info = read_info_from_image(saved)
        assert info.parameters is not None and info.parameters.endswith(", Toy saved: yes")
        assert "Toy hooks: rename" in info.parameters
        assert dict(info.items).get("toy") == "renamed"


def test_image_grid_callback_changes_the_layout(host: ExtensionHost, env: GenEnv) -> None:
    plain = env.txt2img(prompt="g", seed=3, steps=1, batch_size=3, alwayson_scripts=_traced())
    strip = env.txt2img(prompt="g", seed=3, steps=1, batch_size=3, alwayson_scripts=_traced("strip"))
    assert _calls(plain, "image_grid") == [{"cols": 2, "rows": 2, "count": 3}]
    assert plain.images[0].size == (128, 128)
    assert strip.images[0].size == (192, 64)
    assert np.array_equal(pixels(strip.images[0].crop((64, 0, 128, 64))), pixels(strip.images[2]))


def test_extra_noise_callback_can_replace_the_noise(host: ExtensionHost, env: GenEnv) -> None:
    image, _ = _img2img_inputs()

    def run(extra: float, modes: str) -> GenerationResult:
        settings = _settings(img2img_extra_noise=extra)
        return env.img2img([image], prompt="n", seed=8, override_settings=settings, alwayson_scripts=_traced(modes))

    none, noisy, quiet = run(0.0, ""), run(0.5, ""), run(0.5, "quiet")
    assert _calls(none, "extra_noise") == [] and _calls(noisy, "extra_noise") == [{"shape": (1, 4, 8, 8)}]
    assert not np.array_equal(pixels(none.images[0]), pixels(noisy.images[0]))
    assert np.array_equal(pixels(none.images[0]), pixels(quiet.images[0]))  # the callback zeroed it
    assert "Extra noise: 0.5" in quiet.infotexts[0]


def test_a_raising_callback_is_reported_and_the_job_goes_on(host: ExtensionHost, env: GenEnv) -> None:
    before = len(host.problems.items())
    result = env.txt2img(prompt="b", seed=5, steps=2, alwayson_scripts=_traced("boom"))
    assert len(result.images) == 1
    problems = host.problems.items()[before:]
    assert problems and all(p.extension == "toy-hooks" and "cfg_denoiser" in p.where for p in problems)
    assert len(_calls(result, "cfg_denoised")) == 2  # the other callbacks still ran


def test_model_loaded_callback_sees_each_newly_active_model(host: ExtensionHost, env: GenEnv, toy: ModuleType) -> None:
    toy.TRACE["models"].clear()
    env.models.load(SD1_INPAINT, vae=None)
    env.models.load(SD1_INPAINT, vae=None)  # already active: no event
    env.models.load(SD1, vae=None)
    assert toy.TRACE["models"] == [SD1_INPAINT, SD1]


def test_nothing_listens_nothing_is_built() -> None:
    assert DenoiserEvents.for_job(ScriptHooks(), object()) is None

    class Hooks(GenerationCallbacks, ScriptHooks):  # as the runner's hooks are made
        pass

    hooks = Hooks()
    hooks.callbacks = CallbackRegistry(ProblemLog())
    assert not any(hooks.wants(e) for e in ("cfg_denoiser", "image_saved", "on_mask_blend"))
    hooks.callbacks.add("cfg_after_cfg", lambda params: None, filename="x.py")
    events = DenoiserEvents.for_job(hooks, object())
    assert events is not None and (events.after_cfg, events.denoiser, events.mask_blend) == (True, False, False)


def test_infotext_pasted_and_token_counter_entry_points(host: ExtensionHost) -> None:
    def pasted(infotext: str, params: dict[str, Any]) -> None:
        params["Steps"] = str(int(params["Steps"]) * 2)

    def counter(params: Any) -> None:
        params.prompt = params.prompt.replace("__x__", "a b c")

    host.callbacks.add("infotext_pasted", pasted, filename="toy.py")
    host.callbacks.add("before_token_counter", counter, filename="toy.py")
    try:
        assert infotext_pasted(host.callbacks, "p\nSteps: 4", {"Steps": "4"}) == {"Steps": "8"}
        assert before_token_counter(host.callbacks, "__x__", 20, []).prompt == "a b c"
    finally:
        host.callbacks.remove_for_function(pasted)
        host.callbacks.remove_for_function(counter)
