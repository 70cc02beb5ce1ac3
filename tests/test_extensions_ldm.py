"""The ldm-shaped model as real extensions hook it (Tiled VAE, Regional Prompter, Mixture of
Diffusers), reproduced by tests/extensions_fixtures/toy-ldm-hooks on real generation.

Reference images are made before the extension host is bound. A hook that recomputes what the
model does from ldm's parts gives the same image (within 1/255); a hook that changes the
computation changes it; after postprocess undoes the hook the image is back.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modules.core.cmd_args import parse_args
from modules.extension_host import facade
from modules.extension_host.host import ExtensionHost
from modules.generation.processing import GenerationResult
from tests.gen_env import GenEnv, env_services, pixels

FIXTURES = Path(__file__).parent / "extensions_fixtures"
COMMON: dict[str, Any] = {"prompt": "a red circle", "negative_prompt": "blurry", "seed": 7, "steps": 3}


def _run(env: GenEnv, mode: str | None = None) -> GenerationResult:
    request = {**COMMON, "sampler_name": "Euler"}
    if mode is not None:
        request["alwayson_scripts"] = {"LDM hooks": {"args": [mode]}}
    return env.txt2img(**request)


@pytest.fixture(scope="module")
def before(env: GenEnv) -> np.ndarray:
    return pixels(_run(env).images[0])


@pytest.fixture(scope="module")
def host(env: GenEnv, before: np.ndarray) -> Iterator[ExtensionHost]:
    root = env.root
    shutil.copytree(FIXTURES / "toy-ldm-hooks", root / "extensions" / "toy-ldm-hooks", dirs_exist_ok=True)
    services = env_services(env, parse_args(["--data-dir", str(root)]))
    bound = facade.bind(services, run_installers=False, builtin_dir=root / "no-builtins", core_scripts_dir=None)
    yield bound
    facade.unbind()


def _image_and_probe(env: GenEnv, mode: str) -> tuple[np.ndarray, dict[str, Any]]:
    result = _run(env, mode)
    return pixels(result.images[0]), vars(result.p)["ldm_probe"]


@pytest.mark.parametrize("mode", ["vae-manual", "attn-manual"])
def test_recomputing_from_ldm_parts_gives_the_same_image(
    host: ExtensionHost, env: GenEnv, before: np.ndarray, mode: str
) -> None:
    image, probe = _image_and_probe(env, mode)
    assert probe.get("decoder_calls" if mode == "vae-manual" else "attn_calls", 0) > 0
    assert int(np.abs(image - before).max()) <= 1
    assert np.array_equal(pixels(_run(env).images[0]), before)  # undone in postprocess


def test_cross_attention_zeroed_on_the_left_changes_the_left_most(
    host: ExtensionHost, env: GenEnv, before: np.ndarray
) -> None:
    image, probe = _image_and_probe(env, "attn-left")
    change = np.abs(image - before).mean(axis=(0, 2))  # per column
    half = len(change) // 2
    assert probe["attn_calls"] > 0 and change.max() > 2
    assert change[:half].mean() > change[half:].mean()
    assert np.array_equal(pixels(_run(env).images[0]), before)


def test_replaced_apply_model_runs_and_is_undone(host: ExtensionHost, env: GenEnv, before: np.ndarray) -> None:
    image, probe = _image_and_probe(env, "apply-model")
    assert probe["cond_keys"] == {"c_concat", "c_crossattn"}  # c_concat: A1111's txt2img placeholder
    assert image.shape == before.shape and int(np.abs(image - before).max()) > 2
    assert np.array_equal(pixels(_run(env).images[0]), before)
