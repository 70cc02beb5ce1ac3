"""The built-in dropdown scripts (repo-root scripts/): X/Y/Z plot, Prompt matrix, Prompts from
file or textbox, run through the real extension host and generation service on tiny models, and
through the HTTP API with A1111's script_name/script_args."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from modules.core.cmd_args import parse_args
from modules.core.devices import DevicePolicy
from modules.core.jobs import JobControl
from modules.core.paths import REPO_ROOT
from modules.extension_host import facade
from modules.extension_host.host import ExtensionHost
from modules.extension_host.runner import ScriptRunError
from modules.generation.infotext import parse_generation_parameters
from modules.generation.processing import GenerationResult
from modules.generation.requests import Txt2ImgRequest
from modules.generation.xyz_values import AxisValueError, expand_floats, expand_ints, split_csv
from tests.api_server import TINY_TXT2IMG, decode_b64, running_server
from tests.fixtures_models import TinyModelFiles
from tests.gen_env import SD1, SD1_INPAINT, GenEnv, env_services, pixels

SCRIPTS = REPO_ROOT / "scripts"
STEPS, CFG, SEED, PROMPT_SR, SAMPLER, CHECKPOINT = 4, 6, 1, 7, 9, 11  # A1111's txt2img axis indexes


@pytest.fixture
def host(env: GenEnv) -> Iterator[ExtensionHost]:
    args = parse_args(["--data-dir", str(env.root)])
    services = env_services(env, args)
    bound = facade.bind(services, run_installers=False, builtin_dir=env.root / "no-builtins", core_scripts_dir=SCRIPTS)
    yield bound
    facade.unbind()


def xyz_args(x_type: int, x_values: str, y_type: int = 0, y_values: str = "", **flags: Any) -> list[Any]:
    """A1111's X/Y/Z plot script_args (18 values, as webuiapi sends them)."""
    return [
        x_type,
        x_values,
        [],
        y_type,
        y_values,
        [],
        flags.get("z_type", 0),
        flags.get("z_values", ""),
        [],
        flags.get("draw_legend", False),
        flags.get("include_lone_images", True),
        flags.get("include_sub_grids", False),
        flags.get("no_fixed_seeds", False),
        False,
        False,
        False,
        flags.get("margin_size", 0),
        False,
    ]


def run(env: GenEnv, script: str, args: list[Any], **fields: Any) -> GenerationResult:
    fields.setdefault("prompt", "a red circle")
    fields.setdefault("seed", 42)
    fields.setdefault("steps", 2)
    fields.setdefault("sampler_name", "Euler")
    return env.txt2img(script_name=script, script_args=args, **fields)


def params(text: str) -> dict[str, Any]:
    return parse_generation_parameters(text)


def test_core_scripts_are_in_the_dropdown(host: ExtensionHost) -> None:
    titles = [s.title() for s in host.runner.tab("txt2img").selectable_scripts]
    assert {"X/Y/Z plot", "Prompt matrix", "Prompts from file or textbox"} <= set(titles)
    assert "x/y/z plot" in host.runner.scripts_list()["img2img"]
    assert not host.problem_list()
    info = {i["name"]: i for i in host.runner.script_info() if not i["is_img2img"]}
    assert [a["label"] for a in info["x/y/z plot"]["args"]][:3] == ["X type", "X values", "X values"]
    assert len(info["x/y/z plot"]["args"]) == 18
    assert len(info["prompt matrix"]["args"]) == 5
    assert len(info["prompts from file or textbox"]["args"]) == 4


def test_xyz_steps_by_cfg_gives_grid_and_cells(host: ExtensionHost, env: GenEnv) -> None:
    result = run(env, "X/Y/Z plot", xyz_args(STEPS, "2,3", CFG, "5, 9"))
    assert len(result.images) == 1 + 4 and len(result.infotexts) == 5
    grid, cells = result.images[0], result.images[1:]
    assert grid.size == (128, 128)  # 2x2 cells of 64x64, no legend
    got = [(params(t)["Steps"], params(t)["CFG scale"]) for t in result.infotexts[1:]]
    assert got == [("2", "5.0"), ("3", "5.0"), ("2", "9.0"), ("3", "9.0")]  # X varies fastest
    for i, cell in enumerate(cells):  # the grid is made of exactly these cells
        box = (64 * (i % 2), 64 * (i // 2), 64 * (i % 2) + 64, 64 * (i // 2) + 64)
        assert np.array_equal(pixels(grid.crop(box)), pixels(cell))
    assert not np.array_equal(pixels(cells[0]), pixels(cells[1]))
    main = params(result.infotexts[0])
    assert main["Script"] == "X/Y/Z plot"
    assert (main["X Type"], main["X Values"], main["Y Type"], main["Y Values"]) == ("Steps", "2,3", "CFG Scale", "5, 9")
    assert result.index_of_first_image == 1
    assert result.js()["all_seeds"] == [42] * 4


def test_xyz_legend_and_margins_grow_the_grid(host: ExtensionHost, env: GenEnv) -> None:
    plain = run(env, "X/Y/Z plot", xyz_args(STEPS, "2,3", CFG, "5,9", include_lone_images=False))
    legend = run(env, "X/Y/Z plot", xyz_args(STEPS, "2,3", CFG, "5,9", draw_legend=True, include_lone_images=False))
    spaced = run(
        env,
        "X/Y/Z plot",
        xyz_args(STEPS, "2,3", CFG, "5,9", draw_legend=True, include_lone_images=False, margin_size=10),
    )
    assert len(plain.images) == len(legend.images) == 1  # grid only
    w, h = legend.images[0].size
    assert w > 128 and h > 128
    assert spaced.images[0].size == (w + 10, h + 10)
    # the cells sit in the bottom-right corner, under the column titles and right of the row titles
    cell = pixels(plain.images[0].crop((64, 64, 128, 128)))
    assert np.array_equal(pixels(legend.images[0].crop((w - 64, h - 64, w, h))), cell)
    legend_strip = pixels(legend.images[0].crop((0, 0, w, h - 128)))
    assert (legend_strip < 100).any() and (legend_strip == 255).any()  # dark text on white


def test_xyz_seed_range_and_prompt_sr(host: ExtensionHost, env: GenEnv) -> None:
    seeds = run(env, "X/Y/Z plot", xyz_args(SEED, "10-12"))
    assert len(seeds.images) == 1 + 3 and seeds.images[0].size == (192, 64)
    assert [params(t)["Seed"] for t in seeds.infotexts[1:]] == ["10", "11", "12"]
    assert params(seeds.infotexts[0])["Fixed X Values"] == "10, 11, 12"

    sr = run(env, "X/Y/Z plot", xyz_args(PROMPT_SR, "red, blue, green"))
    prompts = [t.split("\n")[0] for t in sr.infotexts[1:]]
    assert prompts == ["a red circle", "a blue circle", "a green circle"]
    assert sr.js()["all_prompts"] == prompts

    order = run(env, "X/Y/Z plot", xyz_args(8, "red, big"), prompt="a red circle, big")  # 8: Prompt order
    assert [t.split("\n")[0] for t in order.infotexts[1:]] == ["a red circle, big", "a big circle, red"]


def test_xyz_z_axis_sub_grids_and_varied_seeds(host: ExtensionHost, env: GenEnv) -> None:
    args = xyz_args(STEPS, "2,3", z_type=CFG, z_values="4,8", include_sub_grids=True, include_lone_images=False)
    args[13] = True  # vary seeds for X
    result = run(env, "X/Y/Z plot", args)
    assert len(result.images) == 3  # the main grid, then one X/Y grid per Z value
    main, first, second = result.images
    assert first.size == second.size == (128, 64) and main.size == (256, 64)
    assert np.array_equal(pixels(main.crop((128, 0, 256, 64))), pixels(second))
    assert params(result.infotexts[0])["Z Type"] == "CFG Scale"
    assert "Z Type" not in params(result.infotexts[1]) and params(result.infotexts[2])["CFG scale"] == "8.0"
    assert result.js()["all_seeds"] == [42, 43, 42, 43]  # X index added to the seed


def test_xyz_keeps_random_seeds_only_when_asked(host: ExtensionHost, env: GenEnv) -> None:
    fixed = run(env, "X/Y/Z plot", xyz_args(STEPS, "2,3"), seed=-1)
    seeds = {params(t)["Seed"] for t in fixed.infotexts[1:]}
    assert len(seeds) == 1  # one random seed, fixed for the whole plot
    loose = run(env, "X/Y/Z plot", xyz_args(STEPS, "2,2,2", no_fixed_seeds=True), seed=-1)
    assert len({params(t)["Seed"] for t in loose.infotexts[1:]}) == 3


def test_xyz_progress_counts_every_cell_and_the_grid_is_saved(host: ExtensionHost, env: GenEnv) -> None:
    control = JobControl()
    req = Txt2ImgRequest(
        prompt="a red circle",
        seed=7,
        steps=2,
        width=64,
        height=64,
        sampler_name="Euler",
        n_iter=2,
        override_settings={"sd_model_checkpoint": SD1, "grid_save": True},
        script_name="X/Y/Z plot",
        script_args=xyz_args(STEPS, "2,3,4", include_lone_images=False),
    )
    result = env.service.txt2img(req, control)
    assert (control.job_no, control.job_count) == (5, 6)  # one bar over 3 cells x 2 batches
    assert len(result.images) == 1
    saved = sorted((env.root / "outputs" / "txt2img-grids").rglob("*xyz_grid*.png"))
    assert saved, "the X/Y/Z grid was not saved"
    with Image.open(saved[-1]) as image:
        assert image.size == result.images[0].size
        assert "X Type: Steps" in image.info["parameters"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (xyz_args(STEPS, "2, abc"), "X values (Steps): 'abc' is not a whole number"),
        (xyz_args(STEPS, "2", CFG, "1-5 (+0)"), "has a step of 0"),
        (xyz_args(SAMPLER, "Euler, Nope"), "Unknown sampler: Nope"),
        (xyz_args(PROMPT_SR, "purple, blue"), "Prompt S/R did not find 'purple'"),
        (xyz_args(CHECKPOINT, "no-such-model"), "Unknown checkpoint: no-such-model"),
        (xyz_args(99, "1"), "X type: index 99"),
        (xyz_args(29, "Latent, Magic"), "Unknown hires upscaler: Magic"),
        (xyz_args(21, "0.5"), "'Skip Early CFG' axis is not available"),
        (xyz_args(STEPS, ""), "X values (Steps): no values given"),
    ],
)
def test_xyz_bad_values_fail_clearly_before_any_image(
    host: ExtensionHost, env: GenEnv, args: list[Any], message: str
) -> None:
    with pytest.raises(ScriptRunError, match="Script 'X/Y/Z plot' failed: AxisValueError: ") as caught:
        run(env, "X/Y/Z plot", args)
    assert message in str(caught.value)


def test_xyz_checkpoint_axis_leaves_the_active_model(host: ExtensionHost, env: GenEnv) -> None:
    run(env, "X/Y/Z plot", xyz_args(STEPS, "2"))
    assert env.models.active is not None and env.models.active.checkpoint.model_name == SD1
    option_before = env.options.get("sd_model_checkpoint")
    result = run(env, "X/Y/Z plot", xyz_args(CHECKPOINT, f"{SD1}, {SD1_INPAINT}"))
    assert [params(t)["Model"] for t in result.infotexts[1:]] == [SD1, SD1_INPAINT]
    assert params(result.infotexts[0])["X Values"] == f"{SD1}, {SD1_INPAINT}"
    assert env.models.active is not None and env.models.active.checkpoint.model_name == SD1
    assert env.options.get("sd_model_checkpoint") == option_before


def test_xyz_setting_axis_goes_through_override_settings(host: ExtensionHost, env: GenEnv) -> None:
    result = run(env, "X/Y/Z plot", xyz_args(25, "1, 2"))  # 25: Clip skip
    assert [params(t).get("Clip skip", "1") for t in result.infotexts[1:]] == ["1", "2"]
    assert not np.array_equal(pixels(result.images[1]), pixels(result.images[2]))
    assert env.options.get("CLIP_stop_at_last_layers") == 1  # the global setting is untouched
    vae = run(env, "X/Y/Z plot", xyz_args(30, "Automatic, None"))  # 30: VAE (the tiny model's own)
    assert np.array_equal(pixels(vae.images[1]), pixels(vae.images[2]))
    assert env.options.get("sd_vae") == "Automatic"


def test_xyz_failing_cell_stays_blank(host: ExtensionHost, env: GenEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    real = env.service.process

    def flaky(p: Any, control: JobControl) -> GenerationResult:
        if p.steps == 3:
            raise RuntimeError("cell exploded")
        return real(p, control)

    monkeypatch.setattr(env.service, "process", flaky)
    result = run(env, "X/Y/Z plot", xyz_args(STEPS, "2,3"))
    assert len(result.images) == 2 and params(result.infotexts[1])["Steps"] == "2"
    grid = pixels(result.images[0])
    assert grid.shape[:2] == (64, 128) and (grid[:, 64:] == 0).all() and (grid[:, :64] != 0).any()
    assert "1 cell(s) failed" in result.comments and "cell exploded" in result.comments
    monkeypatch.setattr(env.service, "process", lambda p, control: (_ for _ in ()).throw(RuntimeError("all down")))
    with pytest.raises(ScriptRunError, match="all down"):
        run(env, "X/Y/Z plot", xyz_args(STEPS, "2,3"))


def test_prompt_matrix_two_parts(host: ExtensionHost, env: GenEnv) -> None:
    result = run(env, "Prompt matrix", [False, True, "positive", "comma", 0], prompt="a house | red | tree")
    assert len(result.images) == 1 + 4
    prompts = [t.split("\n")[0] for t in result.infotexts[1:]]
    assert prompts == ["a house", "a house, red", "a house, tree", "a house, red, tree"]
    assert [params(t)["Seed"] for t in result.infotexts[1:]] == ["42", "43", "44", "45"]  # different seeds
    grid = result.images[0]
    assert grid.width > 128 and grid.height > 128  # 2x2 cells plus the part legends
    w, h = grid.size
    assert np.array_equal(pixels(grid.crop((w - 64, h - 64, w, h))), pixels(result.images[4]))
    assert result.js()["all_prompts"] == prompts


def test_prompt_matrix_on_negative_prompt_with_one_seed(host: ExtensionHost, env: GenEnv) -> None:
    result = run(
        env, "Prompt matrix", [True, False, "negative", "space", 0], prompt="cat", negative_prompt="blurry|dark"
    )
    assert len(result.images) == 1 + 2
    negatives = [params(t)["Negative prompt"] for t in result.infotexts[1:]]
    assert negatives == ["blurry", "dark blurry"]  # variable parts at the start, joined by a space
    assert {params(t)["Seed"] for t in result.infotexts[1:]} == {"42"}


def test_prompts_from_file_lines_with_options(host: ExtensionHost, env: GenEnv) -> None:
    text = 'a cat\n\n--prompt "a dog" in snow --steps 3 --seed 5\n--negative_prompt ugly --cfg_scale 4.5 --width 128'
    result = run(env, "Prompts from file or textbox", [False, False, "start", text], prompt="photo")
    assert len(result.images) == 3
    found = [params(t) for t in result.infotexts]
    assert [t.split("\n")[0] for t in result.infotexts] == ["a cat photo", "a dog in snow photo", "photo"]
    assert (found[0]["Steps"], found[0]["Seed"]) == ("2", "42")
    assert (found[1]["Steps"], found[1]["Seed"]) == ("3", "5")
    assert (found[2]["Negative prompt"], found[2]["CFG scale"]) == ("ugly", "4.5")
    assert (found[2]["Size-1"], found[2]["Size-2"]) == ("128", "64")
    assert result.images[2].size == (128, 64)


def test_prompts_from_file_sd_model_line_leaves_the_active_model(host: ExtensionHost, env: GenEnv) -> None:
    run(env, "X/Y/Z plot", xyz_args(STEPS, "2"))  # SD1 active
    text = f"--prompt one --sd_model {SD1_INPAINT}\n--prompt two"
    result = run(env, "Prompts from file or textbox", [False, False, "start", text])
    assert [params(t)["Model"] for t in result.infotexts] == [SD1_INPAINT, SD1]
    assert env.models.active is not None and env.models.active.checkpoint.model_name == SD1


def test_xyz_on_img2img_by_axis_label(host: ExtensionHost, env: GenEnv) -> None:
    from PIL import Image as PILImage

    source = PILImage.new("RGB", (64, 64), (200, 30, 30))
    args = xyz_args(0, "0.2, 0.9")
    args[0] = "Denoising"  # a label instead of an index (img2img's list has other indexes)
    result = env.img2img([source], prompt="a cat", seed=3, steps=4, script_name="X/Y/Z plot", script_args=args)
    assert len(result.images) == 3 and result.images[0].size == (128, 64)
    assert [params(t)["Denoising strength"] for t in result.infotexts[1:]] == ["0.2", "0.9"]
    near, far = (np.abs(pixels(im) - pixels(source)).mean() for im in result.images[1:])
    assert near < far  # low denoising keeps more of the source image


def test_prompts_from_file_iterates_seeds(host: ExtensionHost, env: GenEnv) -> None:
    result = run(env, "Prompts from file or textbox", [True, False, "end", "one\ntwo\nthree"], prompt="x")
    assert [params(t)["Seed"] for t in result.infotexts] == ["42", "43", "44"]
    assert [t.split("\n")[0] for t in result.infotexts] == ["x one", "x two", "x three"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ok\n--steps ten", "line 2: bad value for --steps"),
        ("--foo 1", "line 1: unknown option '--foo'"),
        ("--prompt a --seed", "line 1: missing value for --seed"),
        ('--prompt "unclosed', "line 1: cannot split the line"),
        ("\n \n", "no prompts given"),
    ],
)
def test_prompts_from_file_bad_lines(host: ExtensionHost, env: GenEnv, text: str, message: str) -> None:
    with pytest.raises(ScriptRunError, match="Script 'Prompts from file or textbox' failed") as caught:
        run(env, "Prompts from file or textbox", [False, False, "start", text])
    assert message in str(caught.value)


def test_value_syntax() -> None:
    assert expand_ints(["1-5"], "X") == [1, 2, 3, 4, 5]
    assert expand_ints(["1-5 (+2)"], "X") == [1, 3, 5]
    assert expand_ints(["10-1 (-3)"], "X") == [10, 7, 4, 1]
    assert expand_ints(["1-10 [4]"], "X") == [1, 4, 7, 10]
    assert expand_ints(["5-3", "-1"], "X") == [5, 4, 3, -1]
    assert expand_floats(["0.5-1.5 (+0.5)", "7"], "X") == [0.5, 1.0, 1.5, 7.0]
    assert expand_floats(["1-2 [3]"], "X") == [1.0, 1.5, 2.0]
    assert split_csv('a, "b, c" ,d') == ["a", "b, c", "d"]
    with pytest.raises(AxisValueError, match="at most"):
        expand_ints(["1-99999999"], "X")


def test_scripts_through_the_http_api(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    with running_server(tmp_path, tiny_models, "--nowebui") as live:
        facade.bind(live.services, run_installers=False, builtin_dir=tmp_path / "none", core_scripts_dir=SCRIPTS)
        try:
            with live.client() as client:
                body = {**TINY_TXT2IMG, "script_name": "x/y/z plot", "script_args": xyz_args(STEPS, "1-2", CFG, "3,7")}
                reply = client.post("/sdapi/v1/txt2img", json=body)
                assert reply.status_code == 200, reply.text
                data = reply.json()
                assert len(data["images"]) == 5
                assert decode_b64(data["images"][0]).size == (128, 128)
                info = __import__("json").loads(data["info"])
                assert len(info["infotexts"]) == 5 and "X Type: Steps" in info["infotexts"][0]
                assert [params(t)["Steps"] for t in info["infotexts"][1:]] == ["1", "2", "1", "2"]

                matrix = {**TINY_TXT2IMG, "prompt": "a | b", "script_name": "prompt matrix"}
                matrix["script_args"] = [False, False, "positive", "comma", 0]
                assert len(client.post("/sdapi/v1/txt2img", json=matrix).json()["images"]) == 3

                bad = {**TINY_TXT2IMG, "script_name": "x/y/z plot", "script_args": xyz_args(STEPS, "2, many")}
                failed = client.post("/sdapi/v1/txt2img", json=bad)
                assert failed.status_code == 400  # bad values: a client error, not a server error
                assert "'many' is not a whole number" in failed.text
                assert client.post("/sdapi/v1/txt2img", json=TINY_TXT2IMG).status_code == 200  # server fine
        finally:
            facade.unbind()


# --- in the browser -------------------------------------------------------------------------------


def _live_app(data_dir: Path) -> Any:
    """webui.py's start-up with the built-in scripts: bind the extension host, build, serve."""

    from modules.app.bootstrap import build_services
    from modules.server import build_app
    from tests.ui_harness import free_port, serve

    port = free_port()
    services = build_services(parse_args(["--data-dir", str(data_dir), "--port", str(port)]), policy=DevicePolicy.cpu())
    for key, value in {"sd_model_checkpoint": SD1, "live_previews_enable": False, "samples_save": False}.items():
        services.options.set(key, value)
    bound = facade.bind(services, run_installers=False, builtin_dir=data_dir / "none", core_scripts_dir=SCRIPTS)
    return serve(build_app(services, extension_host=bound), services, port)


def _pick(page: Any, elem_id: str, value: str) -> None:
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=value, exact=True).first.click()


@pytest.mark.browser
def test_xyz_plot_from_the_page(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    from tests.ui_harness import ARTIFACTS, chromium, open_page, prepare_data_dir, require_browser

    require_browser()
    live = _live_app(prepare_data_dir(tmp_path, tiny_models, families=("sd1",)))
    try:
        with chromium() as context:
            errors: list[str] = []
            page = open_page(context, live.url, errors)
            _pick(page, "txt2img_script_list", "X/Y/Z plot")
            x_values = page.locator("#script_txt2img_xyz_plot_x_values textarea")
            x_values.wait_for(state="visible", timeout=10000)
            _pick(page, "script_txt2img_xyz_plot_x_type", "Steps")
            x_values.fill("1-2")
            _pick(page, "script_txt2img_xyz_plot_y_type", "Sampler")  # an axis with choices: a multi-select
            page.locator("#script_txt2img_xyz_plot_y_values_dropdown").wait_for(state="visible", timeout=10000)
            assert not page.locator("#script_txt2img_xyz_plot_y_values textarea").is_visible()
            for name in ("Euler", "Heun"):
                _pick(page, "script_txt2img_xyz_plot_y_values_dropdown", name)
            page.keyboard.press("Escape")
            for elem_id, value in (("txt2img_width", 64), ("txt2img_height", 64), ("txt2img_seed", 77)):
                box = page.locator(f"#{elem_id} input[type=number]").first
                box.fill(str(value))
                box.press("Enter")
            page.locator("#txt2img_prompt textarea").fill("a red circle")
            page.locator("#txt2img_generate").click()
            page.wait_for_function(
                "() => /Y Type: Sampler|Error/.test(document.querySelector('#html_info_txt2img')?.innerText || '')",
                timeout=120000,
            )
            info = page.locator("#html_info_txt2img").inner_text()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "script_xyz_plot.png"), full_page=True)
            assert 'Script: X/Y/Z plot, X Type: Steps, X Values: 1-2, Y Type: Sampler, Y Values: "Euler,Heun"' in info
            assert page.locator("#txt2img_gallery img").count() >= 1
            grids = sorted((live.services.paths.outputs_dir / "txt2img-grids").rglob("*.png"))
            assert len(grids) == 1 and "xyz_grid" in grids[0].name
            with Image.open(grids[0]) as grid:
                assert grid.width > 128 and grid.height > 128  # 2x2 cells with legends
            page.locator("#xy_grid_swap_axes_button").click()
            y_values = page.locator("#script_txt2img_xyz_plot_y_values textarea")
            y_values.wait_for(state="visible", timeout=10000)
            assert y_values.input_value() == "1-2"
            assert page.locator("#script_txt2img_xyz_plot_x_type input").first.input_value() == "Sampler"
            x_picked = page.locator("#script_txt2img_xyz_plot_x_values_dropdown")
            x_picked.wait_for(state="visible", timeout=10000)
            assert "Euler" in x_picked.inner_text() and "Heun" in x_picked.inner_text()

            _pick(page, "txt2img_script_list", "Prompts from file or textbox")
            lines = tmp_path / "prompts.txt"
            lines.write_text("a cat\n--prompt a dog --steps 3\n")
            page.locator("#script_txt2img_prompts_from_file_or_textbox_file input[type=file]").set_input_files(
                str(lines)
            )
            page.wait_for_function(
                "() => document.querySelector('#script_txt2img_prompts_from_file_or_textbox_prompt_txt textarea')"
                "?.value.includes('--prompt a dog')",
                timeout=10000,
            )
            page.wait_for_function(  # the upload clears itself (its file name goes); that must not clear the text
                "() => !document.querySelector('#script_txt2img_prompts_from_file_or_textbox_file')"
                ".innerText.includes('prompts.txt')",
                timeout=10000,
            )
            text = page.locator("#script_txt2img_prompts_from_file_or_textbox_prompt_txt textarea").input_value()
            assert text == "a cat\n--prompt a dog --steps 3\n"
            assert errors == []
    finally:
        live.stop()
        facade.unbind()
