"""A1111 parity of the generation service (issue 20): interrupt/skip keep the work, a request
that leaves out width/height gets the model's native size, stored settings that are no longer
valid never break a generation, and transformers/diffusers lazy names never race."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from modules.app.bootstrap import build_generation_service, build_model_manager, build_registry
from modules.core.devices import DevicePolicy
from modules.core.jobs import JobControl
from modules.core.options import Options
from modules.generation.image_io import read_info_from_image
from modules.generation.requests import Txt2ImgRequest
from modules.models.builtin_checkpoints import DEMO_IMAGE_SIZE
from modules.models.manager import ModelManager
from tests.fixtures_models import TinyModelFiles, link_into, models_home
from tests.gen_env import SD1, GenEnv

REPO = Path(__file__).resolve().parents[1]


class StopAtStep(JobControl):
    """A JobControl whose owner presses Interrupt (or Skip) once sampling reached `step` of a batch."""

    def __init__(self, step: int, *, skip: bool = False, batch: int = 0) -> None:
        super().__init__()
        self.stop_step, self.use_skip, self.stop_batch = step, skip, batch
        self.stopped_at: tuple[int, int] | None = None

    def set_step(self, step: int, steps: int | None = None) -> None:
        super().set_step(step, steps)
        if self.stopped_at is None and self.job_no == self.stop_batch and step >= self.stop_step:
            self.stopped_at = (self.job_no, step)
            (self.skip if self.use_skip else self.interrupt)()


def _request(**fields: Any) -> Txt2ImgRequest:
    base: dict[str, Any] = {
        "prompt": "a red ball",
        "seed": 11,
        "width": 64,
        "height": 64,
        "steps": 8,
        "sampler_name": "Euler",
        "override_settings": {"sd_model_checkpoint": SD1},
    }
    return Txt2ImgRequest(**{**base, **fields})


def test_interrupt_after_step_k_returns_the_partial_image_with_infotext_and_saves_it(env: GenEnv) -> None:
    env.options.set("samples_save", True)
    try:
        full = env.service.txt2img(_request(n_iter=3, save_images=False, do_not_save_samples=True), JobControl())
        control = StopAtStep(3)
        stopped = env.service.txt2img(_request(n_iter=3), control)
    finally:
        env.options.set("samples_save", False)
    assert control.stopped_at == (0, 3)
    assert stopped.interrupted
    assert len(stopped.images) == 1 and stopped.images[0].size == (64, 64)  # batch 1 of 3, as made so far
    assert "Steps: 8" in stopped.infotexts[0] and "Seed: 11," in stopped.infotexts[0]
    partial = np.asarray(stopped.images[0], dtype=np.int16)
    finished = np.asarray(full.images[full.index_of_first_image], dtype=np.int16)
    assert np.abs(partial - finished).mean() > 0.05  # not the finished picture (tiny model: close)...
    assert partial.std() > 1.0  # ...but a decoded one, not an empty frame
    assert len(stopped.saved_paths) == 1  # saved like A1111 does, infotext included
    saved = Image.open(stopped.saved_paths[0])
    assert read_info_from_image(saved).parameters == stopped.infotexts[0]


def test_skip_keeps_the_partial_batch_and_goes_on_with_the_next(env: GenEnv) -> None:
    control = StopAtStep(2, skip=True)
    result = env.service.txt2img(_request(n_iter=2), control)
    assert control.stopped_at == (0, 2)
    assert not result.interrupted
    images = result.images[result.index_of_first_image :]  # after the grid
    assert len(images) == 2  # the skipped batch's partial image, then the whole second batch
    texts = result.infotexts[result.index_of_first_image :]
    assert [t.split("Seed: ")[1].split(",")[0] for t in texts] == ["11", "12"]


def test_interrupt_during_the_first_pass_skips_hires(env: GenEnv) -> None:
    control = StopAtStep(2)
    req = _request(enable_hr=True, hr_scale=2, hr_upscaler="Latent", denoising_strength=0.5)
    result = env.service.txt2img(req, control)
    assert result.interrupted and len(result.images) == 1
    assert result.images[0].size == (64, 64)  # the first pass, as A1111 returns it


# --- a model's own size ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sized_env(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> GenEnv:
    root = tmp_path_factory.mktemp("native")
    paths = models_home(root)
    for family in ("sd1", "sd2-v", "sdxl"):
        link_into(paths.ckpt_dir, tiny_models.checkpoint(family))
    link_into(paths.ckpt_dir, tiny_models.checkpoint("sd2-v").with_suffix(".yaml"))  # says: v-prediction
    options = Options(build_registry(), paths.config_file)
    options.set("samples_save", False)
    options.set("grid_save", False)
    models = build_model_manager(paths, DevicePolicy.cpu(), options)  # the demo model listed too
    service = build_generation_service(models=models, options=options, paths=paths, device=torch.device("cpu"))
    return GenEnv(root, options, models, service)


@pytest.mark.parametrize(
    ("checkpoint", "side"),
    [("demo-shapes", DEMO_IMAGE_SIZE), ("tiny-sd1", 512), ("tiny-sd2-v", 768), ("tiny-sdxl", 1024)],
)
def test_request_without_size_gets_the_models_native_size(sized_env: GenEnv, checkpoint: str, side: int) -> None:
    req = Txt2ImgRequest(prompt="a red circle", steps=1, override_settings={"sd_model_checkpoint": checkpoint})
    result = sized_env.service.txt2img(req, JobControl())
    assert result.images[0].size == (side, side)
    assert f"Size: {side}x{side}" in result.infotexts[0]


def test_a_size_given_is_kept_and_one_left_out_is_native(sized_env: GenEnv) -> None:
    settings = {"sd_model_checkpoint": "demo-shapes"}
    given = Txt2ImgRequest(prompt="x", steps=1, width=512, height=64, override_settings=settings)
    assert sized_env.service.txt2img(given, JobControl()).images[0].size == (512, 64)  # A1111: as given
    half = Txt2ImgRequest(prompt="x", steps=1, width=64, override_settings=settings)
    assert sized_env.service.txt2img(half, JobControl()).images[0].size == (64, DEMO_IMAGE_SIZE)


def test_declared_modelspec_resolution_wins_over_the_family(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    from safetensors.torch import load_file, save_file

    paths = models_home(tmp_path)
    tensors = load_file(str(tiny_models.checkpoint("sd1")))
    save_file(tensors, str(paths.ckpt_dir / "declared.safetensors"), metadata={"modelspec.resolution": "640x640"})
    models = ModelManager(paths, DevicePolicy.cpu(), None)
    models.refresh()
    assert models.native_size(models.find_checkpoint("declared")) == 640


# --- stored settings that are no longer valid -----------------------------------------------------


def test_invalid_stored_settings_are_reported_by_name_and_replaced_by_defaults(env: GenEnv, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "samples_format": "bmp-gone",  # no longer a choice
                "randn_source": 1,  # an index stored by an old UI
                "CLIP_stop_at_last_layers": "two",
                "eta_noise_seed_delta": 31337,  # valid: kept
            }
        )
    )
    options = Options(build_registry(), config)
    options.load()
    replaced = options.check_stored()  # what the composition root does once everything exists
    for key in ("samples_format", "randn_source", "CLIP_stop_at_last_layers"):
        assert key in replaced or key == "CLIP_stop_at_last_layers"  # a wrong type is dropped at load
        assert options.get(key) == options.registry[key].default
    assert options.get("eta_noise_seed_delta") == 31337
    service = build_generation_service(
        models=env.models, options=options, paths=env.service.paths, device=torch.device("cpu")
    )
    result = service.txt2img(_request(steps=2, sampler_name="Euler a"), JobControl())  # ENSD shows
    assert len(result.images) == 1 and "ENSD: 31337" in result.infotexts[0]


# --- lazy imports ---------------------------------------------------------------------------------

RACE = textwrap.dedent(
    """
    import threading
    from modules.models.ml_imports import NAMES, import_ml_libraries

    errors, barrier = [], threading.Barrier(12)

    def worker(i):
        barrier.wait()
        try:
            import_ml_libraries()
            module, names = NAMES[i % len(NAMES)]
            exec(f"from {module} import {', '.join(names)}", {})
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("ERRORS", errors)
    """
)


@pytest.mark.slow
def test_many_threads_importing_ml_names_at_once_in_a_fresh_process_never_fail() -> None:
    """12 threads released at once into a cold interpreter (without the lock this fails most runs
    with "cannot import name 'CLIPTokenizer' from 'transformers'" and the like)."""
    done = subprocess.run(
        [sys.executable, "-c", RACE], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ERRORS []" in done.stdout, done.stdout[-3000:]


def test_the_composition_root_resolves_ml_names_in_the_calling_thread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from modules.app import bootstrap
    from modules.core.cmd_args import parse_args

    threads: list[threading.Thread] = []
    monkeypatch.setattr(bootstrap, "import_ml_libraries", lambda: threads.append(threading.current_thread()))
    bootstrap.build_services(parse_args(["--data-dir", str(tmp_path)]), policy=DevicePolicy.cpu())
    assert threads == [threading.current_thread()]


# --- inpaint "Whole picture" ----------------------------------------------------------------------


def test_whole_picture_inpaint_returns_the_requested_size_keeping_the_unmasked_source(env: GenEnv) -> None:
    source = Image.new("RGB", (128, 128), (200, 40, 40))
    source.paste((40, 40, 200), (0, 0, 64, 128))  # left half blue
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (96, 96, 128, 128))  # bottom-right corner inpainted
    result = env.img2img(
        [source], mask=mask, width=256, height=256, inpaint_full_res=False, mask_blur=0, denoising_strength=0.9
    )
    image = result.images[0]
    assert image.size == (256, 256)
    assert "Size: 256x256" in result.infotexts[0]
    pixels = np.asarray(image, dtype=np.int16)
    assert np.abs(pixels[:100, :100] - np.asarray(source.resize((256, 256)), dtype=np.int16)[:100, :100]).max() <= 2
