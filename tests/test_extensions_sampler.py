"""A1111's sampler objects as extensions hook them, on real generation with tiny models.

The toy extension tests/extensions_fixtures/toy-sampler reads p.sampler in process(), wraps
CFGDenoiser.combine_denoised on the class, wraps p.sampler.model_wrap_cfg.inner_model, and registers
a Dynamic-Thresholding-style sampler with its own CFGDenoiserKDiffusion subclass. Reference
images are made before the extension host is bound (the denoise loop calls the UNet directly
then), so "no hook -> same image" compares against the path without any A1111 objects.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modules.core.cmd_args import parse_args
from modules.extension_host import facade
from modules.extension_host.host import ExtensionHost
from modules.generation.processing import GenerationResult
from tests.gen_env import SD1, SDXL, GenEnv, env_services, pixels

FIXTURES = Path(__file__).parent / "extensions_fixtures"
COMMON: dict[str, Any] = {"prompt": "a red circle", "negative_prompt": "blurry", "seed": 7, "steps": 3}


def _run(env: GenEnv, mode: str | None = None, **fields: Any) -> GenerationResult:
    request = {**COMMON, "sampler_name": "Euler", "cfg_scale": 7.0, **fields}
    if mode is not None:
        request["alwayson_scripts"] = {"Sampler probe": {"args": [mode]}}
    return env.txt2img(**request)


@pytest.fixture(scope="module")
def before(env: GenEnv) -> dict[str, np.ndarray]:
    """Images from the path without extensions (made before the host is bound)."""
    return {
        "sd1": pixels(_run(env).images[0]),
        "sd1_cfg14": pixels(_run(env, cfg_scale=14.0).images[0]),
        "sd1_cfg3.5": pixels(_run(env, cfg_scale=3.5).images[0]),
        "sdxl": pixels(_run(env, override_settings={"sd_model_checkpoint": SDXL}).images[0]),
        "sd1_and": pixels(_run(env, prompt="a red circle AND a blue square:0.6", sampler_name="DPM++ 2M").images[0]),
    }


@pytest.fixture(scope="module")
def host(env: GenEnv, before: dict[str, np.ndarray]) -> Iterator[ExtensionHost]:
    root = env.root
    shutil.copytree(FIXTURES / "toy-sampler", root / "extensions" / "toy-sampler", dirs_exist_ok=True)
    services = env_services(env, parse_args(["--data-dir", str(root)]))
    bound = facade.bind(services, run_installers=False, builtin_dir=root / "no-builtins", core_scripts_dir=None)
    yield bound
    facade.unbind()


def _probe(result: GenerationResult) -> dict[str, Any]:
    probe: dict[str, Any] = vars(result.p)["sampler_probe"]
    return probe


def test_scripts_see_an_a1111_sampler_in_process(host: ExtensionHost, env: GenEnv) -> None:
    probe = _probe(_run(env, "probe", sampler_name="DPM++ 2M"))
    assert probe["base"] and probe["base_attrs"] == (0.0, 1.0, "Eta", None)  # sd_samplers_common.Sampler
    assert probe["sampler"] and probe["compvis"] and probe["cfg"] and probe["inner_is_wrap"] and probe["wrap_model"]
    assert (probe["name"], probe["funcname"]) == ("DPM++ 2M", "sample_dpmpp_2m")
    assert probe["sigmas"] == 1000 and probe["karras"] == 6
    assert probe["roundtrip"] == pytest.approx(2.0, rel=1e-4)
    assert probe["rng"] == ("ImageRNG", (4, 8, 8), True)
    assert probe["batch_rng"] == ((4, 8, 8), True, True) and probe["same_rng"]  # made before the batch


def test_the_first_job_after_start_gives_scripts_the_model_and_sampler(host: ExtensionHost, env: GenEnv) -> None:
    """No model is loaded when setup() runs on a fresh start (it loads with the job); process()
    must still see p.sd_model and p.sampler, as Regional Prompter and Tiled VAE read them there."""
    env.models.unload()
    probe = _probe(_run(env, "probe", sampler_name="DPM++ 2M"))
    assert probe["sampler"] and probe["wrap_model"]
    assert (probe["name"], probe["funcname"]) == ("DPM++ 2M", "sample_dpmpp_2m")


@pytest.mark.parametrize("key", ["sd1", "sdxl", "sd1_and"])
def test_without_hooks_the_image_is_unchanged(
    host: ExtensionHost, env: GenEnv, before: dict[str, np.ndarray], key: str
) -> None:
    fields: dict[str, Any] = {}
    if key == "sdxl":
        fields["override_settings"] = {"sd_model_checkpoint": SDXL}
    if key == "sd1_and":
        fields.update(prompt="a red circle AND a blue square:0.6", sampler_name="DPM++ 2M")
    image = pixels(_run(env, "", **fields).images[0])  # the extension is on, hooks nothing
    assert np.abs(image - before[key]).max() <= 1


def test_wrapping_combine_denoised_on_the_class_changes_the_image_and_undoing_restores_it(
    host: ExtensionHost, env: GenEnv, before: dict[str, np.ndarray]
) -> None:
    result = _run(env, "combine")
    assert _probe(result)["combine_steps"] == [0, 1, 2]
    doubled = pixels(result.images[0])
    assert not np.array_equal(doubled, before["sd1"])
    assert np.array_equal(doubled, before["sd1_cfg14"])  # the wrapper doubled the CFG scale
    assert np.array_equal(pixels(_run(env, "").images[0]), before["sd1"])  # undone in postprocess


@pytest.mark.parametrize("checkpoint", [SD1, SDXL])
def test_wrapping_the_inner_model_changes_the_image(host: ExtensionHost, env: GenEnv, checkpoint: str) -> None:
    settings = {"sd_model_checkpoint": checkpoint}
    plain = pixels(_run(env, "", override_settings=settings).images[0])
    result = _run(env, "inner", override_settings=settings)
    assert not np.array_equal(pixels(result.images[0]), plain)
    keys = ["c_concat", "c_crossattn"] if checkpoint == SD1 else ["crossattn", "time_ids", "vector"]
    assert _probe(result)["cond_keys"] == keys
    assert np.array_equal(pixels(_run(env, "", override_settings=settings).images[0]), plain)  # per job


def test_a_sampler_added_by_an_extension_runs_with_its_cfg_denoiser(
    host: ExtensionHost, env: GenEnv, before: dict[str, np.ndarray]
) -> None:
    from modules import sd_samplers

    result = _run(env, "kdiff")
    assert _probe(result)["half_steps"] == [(0, 3), (1, 3), (2, 3)]
    assert np.array_equal(pixels(result.images[0]), before["sd1_cfg3.5"])
    assert "Sampler: Euler," in result.infotexts[0]
    assert "Euler_toy" not in sd_samplers.all_samplers_map  # the extension removed it again


def test_scripts_read_the_conds_as_a1111_structures(host: ExtensionHost, env: GenEnv) -> None:
    from modules import prompt_parser

    probe = _probe(_run(env, "conds", prompt="a [red:blue:2] circle AND a square:0.5", batch_size=2))
    before, after = probe["before"], probe["after"]
    assert before == after  # setup_conds encodes what sampling then uses
    assert before["shape"] == (2,) and len(before["uc"]) == 2
    first, second = before["c"][0]
    assert (first[0], second[0]) == (1.0, 0.5)  # AND weights
    assert [end for end, _shape, _sum in first[1]] == [2, 3]  # prompt editing: red until step 2
    assert first[1][0][2] != first[1][1][2] and len(first[1][0][1]) == 2  # [tokens, width] per entry
    assert prompt_parser.ScheduledPromptConditioning._fields == ("end_at_step", "cond")


def test_an_optimization_registered_by_an_extension_applies_and_undoes(
    host: ExtensionHost, env: GenEnv, before: dict[str, np.ndarray]
) -> None:
    import ldm.modules.attention
    from modules import sd_hijack

    hijack = sd_hijack.model_hijack
    assert hijack.apply_optimizations("no such optimization") is None and hijack.optimization_method is None
    assert hijack.apply_optimizations("toy-half") == "toy-half"
    try:
        changed = pixels(_run(env, "").images[0])
        assert hijack.optimization_method == "toy-half"
    finally:
        hijack.undo_optimizations()
    assert not np.array_equal(changed, before["sd1"])
    assert np.array_equal(pixels(_run(env, "").images[0]), before["sd1"])
    layers = hijack.layers
    assert layers is not None and any(isinstance(m, ldm.modules.attention.CrossAttention) for m in layers)


def test_k_diffusion_samplers_run_a_model_wrapper(host: ExtensionHost) -> None:
    import k_diffusion.external as external
    import k_diffusion.sampling as sampling
    from k_diffusion.utils import append_dims
    from modules.generation.samplers import scaled_linear_alphas_cumprod

    class Model:
        alphas_cumprod = scaled_linear_alphas_cumprod()

        def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
            return torch.zeros_like(x)  # eps = 0: x0 is x itself, every sampler keeps x

    wrap = external.CompVisDenoiser(Model())
    sigmas = sampling.get_sigmas_karras(4, float(wrap.sigma_min), float(wrap.sigma_max))
    x = torch.ones(1, 4, 2, 2)
    steps: list[int] = []
    out = sampling.sample_euler(wrap, x, sigmas, extra_args={"cond": None}, callback=lambda d: steps.append(d["i"]))
    assert steps == [0, 1, 2, 3] and torch.allclose(out, x)
    assert torch.allclose(sampling.sample_dpmpp_2m(wrap, x, sigmas), x)
    assert append_dims(torch.ones(3), 4).shape == (3, 1, 1, 1)


def test_the_wrapped_model_call_keeps_the_uncond_row_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """ControlNet's modes tell uncond rows apart: the count survives the trip through the wrap."""
    from modules.generation.denoiser import CFGDenoiser

    seen: list[int] = []

    def run(self: CFGDenoiser, rows: Any, context: Any, pooled: Any, time_ids: Any, *, uncond_rows: int = 0) -> Any:
        seen.append(uncond_rows)
        return rows[0]

    monkeypatch.setattr(CFGDenoiser, "_run", run)

    class Passthrough:
        denoiser: CFGDenoiser

        def inner(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
            return self.denoiser.predict_x0(x, sigma, cond)

    wrap = Passthrough()
    denoiser = CFGDenoiser(torch.nn.Linear(1, 1), "epsilon", lambda s: s, lambda step: None, 7.0)  # type: ignore[arg-type,return-value]
    denoiser.wrap = wrap  # type: ignore[assignment]
    wrap.denoiser = denoiser
    rows = (torch.zeros(3, 4, 2, 2), torch.ones(3), None)
    denoiser._model(rows, torch.zeros(3, 77, 8), None, None, uncond_rows=1)
    assert seen == [1] and denoiser._uncond_rows == 0


def test_a_replaced_cfg_forward_runs_each_step_with_a1111_arguments(
    host: ExtensionHost, env: GenEnv, before: dict[str, np.ndarray]
) -> None:
    result = _run(env, "same")
    probe = _probe(result)
    assert probe["steps"] == [0, 1, 2]
    assert probe["kwargs"] == ["cond", "cond_scale", "image_cond", "s_min_uncond", "uncond"]
    assert probe["cond"] == ("MulticondLearnedConditioning", 1, 7.0)
    assert np.array_equal(pixels(result.images[0]), before["sd1"])  # the original forward is our step


def test_a_forward_that_tiles_the_latent_gives_a_stitched_image(
    host: ExtensionHost, env: GenEnv, before: dict[str, np.ndarray]
) -> None:
    result = _run(env, "tiles")
    probe = _probe(result)
    assert probe["steps"] == [0, 1, 2]  # one step per sampler call, though our step ran per tile
    assert probe["tile_widths"] == [(4, 4)] * 3
    image = pixels(result.images[0])
    assert image.shape == before["sd1"].shape and np.isfinite(image).all() and image.std() > 1
    assert not np.array_equal(image, before["sd1"])  # each half was denoised without the other


def test_replacing_cfg_forward_on_the_class_changes_the_image_and_undoing_restores_it(
    host: ExtensionHost, env: GenEnv, before: dict[str, np.ndarray]
) -> None:
    scaled = pixels(_run(env, "scale").images[0])
    assert not np.array_equal(scaled, before["sd1"])
    assert np.array_equal(pixels(_run(env, "").images[0]), before["sd1"])


def test_a_swapped_create_sampler_makes_p_sampler_and_its_hooks_apply(
    host: ExtensionHost, env: GenEnv, before: dict[str, np.ndarray]
) -> None:
    from modules import sd_samplers
    from modules.extension_host.compat_sampler import create_sampler

    result = _run(env, "swap")
    assert _probe(result)["made"] == ["Euler"]
    assert not np.array_equal(pixels(result.images[0]), before["sd1"])  # its inner_model hook ran
    assert sd_samplers.create_sampler is create_sampler  # restored by the extension
    assert np.array_equal(pixels(_run(env, "").images[0]), before["sd1"])


def test_a_replaced_apply_model_gets_a1111_cond_keys(
    host: ExtensionHost, env: GenEnv, before: dict[str, np.ndarray]
) -> None:
    result = _run(env, "apply")
    assert _probe(result)["apply_keys"] == ["c_concat", "c_crossattn"]  # with A1111's txt2img placeholder
    assert np.array_equal(pixels(result.images[0]), before["sd1"])
