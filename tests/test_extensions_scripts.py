"""Toy A1111 extensions running inside generation on tiny models: always-on scripts, a dropdown
script, hook order and arguments, postprocess_image, isolation of broken extensions, and the
A1111 module facades they import (shared, processing, scripts...)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modules.core.cmd_args import parse_args
from modules.core.jobs import JobControl
from modules.extension_host import facade
from modules.extension_host.host import ExtensionHost
from modules.extension_host.preload import collect_preload_hooks
from modules.extension_host.runner import ScriptNotFound, ScriptRunError
from modules.generation.requests import Txt2ImgRequest
from tests.gen_env import SD1, GenEnv, env_services, pixels

FIXTURES = Path(__file__).parent / "extensions_fixtures"
TOYS = ("toy-prompts", "toy-selectable", "toy-postprocess", "toy-recorder", "toy-ui", "toy-broken")


@pytest.fixture(scope="module")
def host(env: GenEnv) -> Iterator[ExtensionHost]:
    root = env.root
    for name in TOYS:
        shutil.copytree(FIXTURES / name, root / "extensions" / name, dirs_exist_ok=True)
    preload = collect_preload_hooks(root)
    args = parse_args(["--data-dir", str(root), "--toy-flag", "on"], preload_hooks=preload.hooks)
    services = env_services(env, args)
    bound = facade.bind(
        services, run_installers=False, builtin_dir=root / "no-builtins", core_scripts_dir=None, preload=preload
    )
    yield bound
    facade.unbind()


def _txt2img(env: GenEnv, **fields: object):
    fields.setdefault("prompt", "a red circle")
    fields.setdefault("seed", 42)
    fields.setdefault("steps", 2)
    fields.setdefault("sampler_name", "Euler")
    return env.txt2img(**fields)


def test_extensions_load_with_their_scripts(host: ExtensionHost) -> None:
    assert [e.name for e in host.active()] == sorted(TOYS)
    tab = host.runner.tab("txt2img")
    assert {s.title() for s in tab.alwayson_scripts} == {
        "Prompt suffix",
        "Paint it red",
        "Hook recorder",
        "Raises in process",
    }
    assert [s.title() for s in tab.selectable_scripts] == ["Toy run"]
    assert host.runner.scripts_list()["txt2img"] == [s.title().lower() for s in tab.scripts]


def test_alwayson_script_rewrites_prompts_and_adds_infotext(host: ExtensionHost, env: GenEnv) -> None:
    result = _txt2img(env, batch_size=2, alwayson_scripts={"Prompt suffix": {"args": [True, "sparkles"]}})
    assert result.p.all_prompts == ["a red circle, sparkles"] * 2
    text = result.infotexts[0]
    assert text.startswith("a red circle, sparkles\n")
    assert "Toy suffix: sparkles" in text
    assert not (pixels(result.images[0])[..., 0] == 255).all()  # "Paint it red" is off by default


def test_default_args_leave_alwayson_scripts_off(host: ExtensionHost) -> None:
    hooks = host.runner.for_request("txt2img")
    suffix = host.runner.tab("txt2img").script("Prompt suffix")
    assert suffix is not None
    assert hooks.args[suffix.args_from : suffix.args_to] == [False, "toy"]  # type: ignore[attr-defined]
    assert hooks.args[0] == 0  # type: ignore[attr-defined]


def test_selectable_script_run_replaces_process_images(host: ExtensionHost, env: GenEnv) -> None:
    result = _txt2img(env, script_name="toy run", script_args=["hello"])
    assert "Toy run: hello" in result.infotexts[0]
    assert "Toy kind: txt2img" in result.infotexts[0]
    assert result.comments == "ran toy with hello"
    assert len(result.images) == 1


def test_short_script_args_keep_the_scripts_defaults(host: ExtensionHost, env: GenEnv) -> None:
    result = _txt2img(env, script_name="toy run", script_args=[])
    assert "Toy run: default label" in result.infotexts[0]
    hooks = host.runner.for_request("txt2img", "toy run", [], {})
    assert len(hooks.args) == len(host.runner.tab("txt2img").default_args())  # type: ignore[attr-defined]


def test_unknown_script_names_are_clear_errors(host: ExtensionHost, env: GenEnv) -> None:
    with pytest.raises(ScriptNotFound, match="Script 'nope' not found"):
        _txt2img(env, script_name="nope")
    with pytest.raises(ScriptNotFound, match="always on script ghost not found"):
        _txt2img(env, alwayson_scripts={"ghost": {"args": []}})
    with pytest.raises(ScriptNotFound, match="selectable script"):
        _txt2img(env, alwayson_scripts={"Toy run": {"args": []}})


def test_postprocess_image_hook_replaces_images(host: ExtensionHost, env: GenEnv) -> None:
    result = _txt2img(env, batch_size=2, alwayson_scripts={"Paint it red": {"args": [True]}})
    for image in result.images:
        arr = pixels(image)
        assert (arr[..., 0] == 255).all() and (arr[..., 1:] == 0).all()


def test_hooks_run_in_a1111_order_with_their_arguments(host: ExtensionHost, env: GenEnv) -> None:
    result = _txt2img(env, n_iter=2, seed=100, alwayson_scripts={"Hook recorder": {"args": [True, 9]}})
    calls = result.p.toy_calls
    names = [c[0] for c in calls]
    per_batch = [
        "before_process_batch",
        "process_batch",
        "process_before_every_sampling",
        "postprocess_batch",
        "postprocess_batch_list",
        "postprocess_image",
    ]
    assert names == ["setup", "before_process", "process", *per_batch, *per_batch, "postprocess"]
    assert all(token == 9 for _, token, _ in calls)
    by_name = {}
    for name, _, extra in calls:
        by_name.setdefault(name, []).append(extra)
    assert by_name["process"] == [{"prompts": 2, "seeds": [100, 101]}]
    assert [e["batch_number"] for e in by_name["before_process_batch"]] == [0, 1]
    assert [e["seeds"] for e in by_name["before_process_batch"]] == [[100], [101]]
    assert by_name["process_batch"][1]["prompts"] == ["a red circle"]
    assert by_name["process_before_every_sampling"][0]["keys"] == ["c", "noise", "uc", "x"]
    assert by_name["postprocess_batch"][0]["shape"] == (1, 3, 64, 64)
    assert by_name["postprocess_batch_list"][0]["count"] == 1
    assert by_name["postprocess_image"][0]["size"] == (64, 64)
    assert by_name["postprocess"] == [{"images": len(result.images), "seed": 100}]
    assert by_name["setup"][0]["steps_opt"] == 1  # shared.opts reads the job's settings


def test_metadata_after_orders_hooks(host: ExtensionHost) -> None:
    ordered = [type(s).__name__ for s in host.runner.tab("txt2img").ordered("process")]
    assert ordered.index("Recorder") > ordered.index("PromptSuffix")  # toy-recorder: After = toy-prompts


def test_broken_extension_is_reported_and_generation_goes_on(host: ExtensionHost, env: GenEnv) -> None:
    problems = host.problem_list()
    imports = [p for p in problems if p.where.startswith("import")]
    assert [(p.extension, p.where) for p in imports] == [("toy-broken", "import scripts/broken_import.py")]
    assert "broken on purpose" in imports[0].error

    # args matched case-insensitively; missing ones keep their defaults (suffix "toy")
    result = _txt2img(env, alwayson_scripts={"prompt SUFFIX": {"args": [True]}})
    assert result.p.all_prompts == ["a red circle, toy"]  # other extensions unaffected
    assert len(result.images) == 1
    hook_failures = {(p.extension, p.where.split(" ")[0], p.error) for p in host.problem_list()}
    assert ("toy-broken", "process", "ValueError: toy hook failure") in hook_failures
    assert ("toy-broken", "postprocess_image", "KeyError: 'toy postprocess failure'") in hook_failures
    rows = {i.name: i for i in host.installed()}
    assert any("broken on purpose" in text for text in rows["toy-broken"].problems)


def test_failing_dropdown_script_names_itself(
    host: ExtensionHost, env: GenEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = host.runner.tab("txt2img").selectable_scripts[0]

    def boom(p, *args):
        raise RuntimeError("run exploded")

    monkeypatch.setattr(script, "run", boom)
    with pytest.raises(ScriptRunError, match="Script 'Toy run' failed: RuntimeError: run exploded"):
        _txt2img(env, script_name="Toy run")


def test_ui_values_drive_the_same_scripts(host: ExtensionHost, env: GenEnv) -> None:
    import gradio as gr

    with gr.Blocks():
        inputs = host.script_ui("txt2img")
    tab = host.runner.tab("txt2img")
    suffix = tab.script("Prompt suffix")
    assert suffix is not None and inputs[suffix.args_from] is suffix.controls[0]
    values = [getattr(c, "value", None) for c in inputs]
    values[0] = 0
    values[suffix.args_from : suffix.args_to] = [True, "from ui"]
    hooks = host.runner.for_ui("txt2img", values)
    req = Txt2ImgRequest(
        prompt="ui",
        seed=1,
        steps=2,
        sampler_name="Euler",
        width=64,
        height=64,
        override_settings={"sd_model_checkpoint": SD1},
    )
    result = env.service.txt2img(req, JobControl(), hooks=hooks)
    assert result.p.all_prompts == ["ui, from ui"]
    assert result.p.is_api is False
    assert suffix.elem_id("x") == "script_txt2img_prompt_suffix_x"


def test_processing_facade(host: ExtensionHost, env: GenEnv) -> None:
    from modules import processing, shared

    p = processing.StableDiffusionProcessingTxt2Img(
        prompt="facade",
        seed=5,
        steps=2,
        width=64,
        height=64,
        sampler_name="Euler",
        outpath_samples="x",
        override_settings={"sd_model_checkpoint": SD1},
    )
    assert isinstance(p, processing.StableDiffusionProcessingTxt2Img)
    assert isinstance(p, processing.StableDiffusionProcessing)
    assert not isinstance(p, processing.StableDiffusionProcessingImg2Img)
    assert p.outpath_samples == "x"
    processed = processing.process_images(p)
    assert isinstance(processed, processing.Processed)
    assert processed.seed == 5 and processed.all_seeds == [5] and processed.prompt == "facade"
    assert processed.images[0].size == (64, 64)
    assert shared.sd_model is not None and shared.sd_model.sd_checkpoint_info.model_name == "tiny-sd1"
    made = processing.Processed(p, processed.images, seed=7, info="text")
    assert made.seed == 7 and made.infotexts == ["text"] and made.js()["seed"] == 7
    with pytest.raises(TypeError, match="keyword"):
        processing.StableDiffusionProcessingTxt2Img("positional")


def test_shared_facade_views(host: ExtensionHost) -> None:
    from modules import shared

    assert shared.cmd_opts.toy_flag == "on"
    assert shared.cmd_opts.webui_is_non_local is False and shared.cmd_opts.disable_extension_access is False
    assert shared.opts.samples_save is False  # env sets it
    assert shared.state.job == "" and shared.state.interrupted is False
    shared.state.interrupt()  # outside a job: harmless
    assert shared.prompt_styles.styles is host.services.generation.styles.styles
    assert str(shared.device) == "cpu"
    with pytest.raises(AttributeError):
        _ = shared.opts.no_such_setting


def test_state_is_the_jobs_control_inside_a_job(host: ExtensionHost) -> None:
    from modules import shared
    from modules.extension_host.job_context import job_context

    control = JobControl()
    with job_context(None, control):
        shared.state.job_count = 5
        shared.state.textinfo = "working"
        shared.state.interrupt()
    assert control.job_count == 5 and control.textinfo == "working" and control.interrupted.is_set()
    assert shared.state.job_count == 0  # outside again: idle


def test_scripts_facade(host: ExtensionHost) -> None:
    from modules import scripts

    assert [s.title() for s in scripts.scripts_txt2img.selectable_scripts] == ["Toy run"]
    data = scripts.scripts_data
    assert {d.script_class.__name__ for d in data} >= {"PromptSuffix", "ToyRun", "Recorder"}
    files = [f.filename for f in scripts.list_scripts("scripts", ".py")]
    assert "prompt_suffix.py" in files and "recorder.py" in files
    assert scripts.list_files_with_name("preload.py")[0].endswith("toy-ui/preload.py")


def test_extra_networks_dispatch(host: ExtensionHost) -> None:
    from modules import extra_networks

    seen: list[tuple[str, list[list[str]]]] = []

    class Toy(extra_networks.ExtraNetwork):
        def activate(self, p, params_list):
            seen.append(("activate", [x.items for x in params_list]))

        def deactivate(self, p):
            seen.append(("deactivate", []))

    extra_networks.register_extra_network(Toy("toynet"))
    prompts, data = extra_networks.parse_prompts(["a <toynet:x:0.5> b", "c"])
    assert prompts == ["a  b", "c"]
    unknown = host.extra_networks.activate(None, {**data, "other": []})
    extra_networks.deactivate(None, data)
    extra_networks.activate(None, {})
    assert unknown == ["other"]
    assert seen == [("activate", [["x", "0.5"]]), ("deactivate", []), ("activate", [])]
    assert data["toynet"][0].positional == ["x", "0.5"]


def test_image_saving_facade_runs_callbacks(host: ExtensionHost, tmp_path: Path) -> None:
    from PIL import Image

    from modules import images, script_callbacks
    from modules.generation.image_io import read_info_from_image

    seen: list[str] = []
    planned: list[str] = []

    def before(params: script_callbacks.ImageSaveParams) -> None:
        planned.append(params.filename)
        params.pnginfo["parameters"] += ", Toy: yes"

    def after(params: script_callbacks.ImageSaveParams) -> None:
        seen.append(params.filename)

    script_callbacks.on_before_image_saved(before)
    script_callbacks.on_image_saved(after)
    try:
        path, txt = images.save_image(
            Image.new("RGB", (8, 8)), str(tmp_path), "", seed=1, prompt="p", info="p\nSteps: 1"
        )
    finally:
        script_callbacks.remove_callbacks_for_function(before)
        script_callbacks.remove_callbacks_for_function(after)
    assert seen == [path] and Path(path).is_file() and txt is None
    assert planned == [path]  # the callback saw the file name the image then got
    with Image.open(path) as saved:
        assert read_info_from_image(saved).parameters == "p\nSteps: 1, Toy: yes"


def test_image_saving_facade_honours_a_renamed_file(host: ExtensionHost, tmp_path: Path) -> None:
    from PIL import Image

    from modules import images, script_callbacks

    def rename(params: script_callbacks.ImageSaveParams) -> None:
        params.filename = str(tmp_path / "renamed.png")

    script_callbacks.on_before_image_saved(rename)
    try:
        path, _ = images.save_image(Image.new("RGB", (8, 8)), str(tmp_path), "", seed=1, prompt="p", info="p")
    finally:
        script_callbacks.remove_callbacks_for_function(rename)
    assert path == str(tmp_path / "renamed.png") and Path(path).is_file()


def test_image_grid_facade_runs_on_image_grid(host: ExtensionHost) -> None:
    from PIL import Image

    from modules import images, script_callbacks

    def one_row(params: script_callbacks.ImageGridLoopParams) -> None:
        params.cols, params.rows = len(params.imgs), 1

    tiles = [Image.new("RGB", (8, 8)) for _ in range(4)]
    assert images.image_grid(tiles).size == (16, 16)
    script_callbacks.on_image_grid(one_row)
    try:
        assert images.image_grid(tiles).size == (32, 8)
    finally:
        script_callbacks.remove_callbacks_for_function(one_row)


def test_callbacks_from_a_file_are_named_after_its_extension(host: ExtensionHost) -> None:
    names = [c.name for c in host.callbacks.ordered("ui_tabs")]
    assert names == ["toy-ui/toy_ui.py/ui_tabs"]


def test_img2img_scripts_run_with_img2img_p(host: ExtensionHost, env: GenEnv) -> None:
    from PIL import Image

    from modules import processing

    image = Image.fromarray(np.full((64, 64, 3), 128, dtype=np.uint8))
    result = env.img2img(
        [image], prompt="img", seed=3, steps=2, alwayson_scripts={"Prompt suffix": {"args": [True, "i2i"]}}
    )
    assert result.p.all_prompts == ["img, i2i"]
    assert isinstance(result.p, processing.StableDiffusionProcessingImg2Img)
