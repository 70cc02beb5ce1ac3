"""adetailer's inpaint call path on our facades (tests/extensions_fixtures/toy-detailer): inside
postprocess_image a nested `StableDiffusionProcessingImg2Img(...)` with adetailer's keyword
arguments, a filtered copy of `p.scripts` and a mask per detected region runs through
`process_images`; the result replaces the job's image. Only the detected region changes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modules.core.cmd_args import parse_args
from modules.extension_host import facade
from modules.extension_host.host import ExtensionHost
from tests.gen_env import SD1, GenEnv, env_services, pixels

FIXTURES = Path(__file__).parent / "extensions_fixtures"


@pytest.fixture(scope="module")
def host(env: GenEnv) -> Iterator[ExtensionHost]:
    root = env.root
    shutil.copytree(FIXTURES / "toy-detailer", root / "extensions" / "toy-detailer", dirs_exist_ok=True)
    services = env_services(env, parse_args(["--data-dir", str(root)]))
    bound = facade.bind(services, run_installers=False, builtin_dir=root / "no-builtins", core_scripts_dir=None)
    yield bound
    facade.unbind()


def _run(env: GenEnv, enabled: bool, **fields: object):
    return env.txt2img(
        prompt="a red circle",
        seed=42,
        steps=3,
        sampler_name="Euler",
        override_settings={"sd_model_checkpoint": SD1},
        alwayson_scripts={"Toy detailer": {"args": [enabled, "a blue square"]}},
        **fields,
    )


def test_nested_img2img_inpaints_only_the_detected_region(host: ExtensionHost, env: GenEnv) -> None:
    assert not host.problem_list()
    plain = _run(env, False)
    detailed = _run(env, True)
    before, after = pixels(plain.images[0]), pixels(detailed.images[0])
    inside = np.zeros(before.shape[:2], dtype=bool)
    inside[16:48, 16:48] = True  # the stand-in detector's box on a 64x64 image
    assert (before[~inside] == after[~inside]).all()  # the rest of the image is the job's own
    assert np.abs(before[inside] - after[inside]).mean() > 5  # the region was inpainted
    assert "Toy detailer: 1 region(s)" in detailed.info
    assert "Toy detailer steps: 3" in detailed.info
    assert "Toy detailer" not in plain.info
    p = detailed.p
    assert "Toy detailer: 1 region(s)" in vars(p)["toy_detailer_info"]  # create_infotext sees the entry
    assert "ToyDetailer" not in vars(p)["toy_detailer_inner_alwayson"]  # the filtered runner was used
    assert not host.problem_list()


def test_each_image_of_a_batch_gets_its_own_nested_job(host: ExtensionHost, env: GenEnv) -> None:
    plain = _run(env, False, batch_size=2)
    detailed = _run(env, True, batch_size=2)
    first = detailed.index_of_first_image
    assert detailed.p.all_seeds == [42, 43]
    for k, (a, b) in enumerate(zip(plain.images[first:], detailed.images[first:], strict=True)):
        before, after = pixels(a), pixels(b)
        assert (before[:16] == after[:16]).all() and np.abs(before[16:48, 16:48] - after[16:48, 16:48]).mean() > 5
        assert f"Seed: {42 + k}" in detailed.infotexts[first + k]
        assert "Toy detailer: 1 region(s)" in detailed.infotexts[first + k]
