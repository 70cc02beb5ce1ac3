"""Extensions and the app around them: preload flags, settings added in on_ui_settings, tabs from
on_ui_tabs, on_app_started routes next to the mounted UI, JS/CSS/localizations, the Extensions
tab actions, the "Available" index, Extras scripts, and the unbound-facade error. No models."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from modules.app.bootstrap import build_services
from modules.core.cmd_args import ArgumentError, parse_args
from modules.extension_host import facade
from modules.extension_host.api import register_extension_routes
from modules.extension_host.host import ExtensionHost
from modules.extension_host.index import ExtensionIndexError, load_index
from modules.extension_host.postprocessing import PostprocessedImage
from modules.extension_host.preload import collect_preload_hooks
from modules.extension_host.ui_tab import ExtensionsTab

FIXTURES = Path(__file__).parent / "extensions_fixtures"
TOYS = ("toy-ui", "toy-prompts", "toy-postprocess", "toy-broken")


def _start(data_dir: Path, *flags: str) -> ExtensionHost:
    preload = collect_preload_hooks(["--data-dir", str(data_dir), *flags])
    args = parse_args(["--data-dir", str(data_dir), *flags], preload_hooks=preload.hooks)
    return facade.bind(
        build_services(args), builtin_dir=data_dir / "no-builtins", core_scripts_dir=None, preload=preload
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "data"
    for name in TOYS:
        shutil.copytree(FIXTURES / name, root / "extensions" / name)
    yield root
    facade.unbind()


def test_preload_flag_reaches_cmd_opts(data_dir: Path) -> None:
    from modules import shared

    _start(data_dir, "--toy-flag", "bright")
    assert shared.cmd_opts.toy_flag == "bright"
    facade.unbind()
    _start(data_dir)
    assert shared.cmd_opts.toy_flag == "unset"  # the preload default


def test_preload_skips_disabled_extensions_and_reports_broken_ones(data_dir: Path) -> None:
    (data_dir / "config.json").write_text(json.dumps({"disabled_extensions": ["toy-ui"]}))
    (data_dir / "extensions" / "toy-prompts" / "preload.py").write_text(
        "def preload(parser):\n    raise OSError('nope')\n"
    )
    preload = collect_preload_hooks(["--data-dir", str(data_dir)])
    assert preload.names == ["toy-prompts"]
    with pytest.raises(ArgumentError, match="toy-flag"):
        parse_args(["--data-dir", str(data_dir), "--toy-flag", "x"], preload_hooks=preload.hooks)
    assert [(p.extension, p.where) for p in preload.problems.items()] == [("toy-prompts", "preload.py")]
    assert collect_preload_hooks(["--data-dir", str(data_dir), "--disable-all-extensions"]).names == []


def test_ui_settings_adds_a_real_option(data_dir: Path) -> None:
    from modules import shared

    host = _start(data_dir)
    info = host.services.registry["toy_option"]
    assert (info.default, info.label, info.section, info.component) == (
        3,
        "Toy option",
        ("toy", "Toy extension"),
        "slider",
    )
    assert (info.minimum, info.maximum, info.step) == (1, 10, 1)
    assert "a toy" in info.comment
    assert host.services.registry["toy_mode"].choice_list() == ["a", "b"]
    assert shared.opts.toy_option == 3
    shared.opts.toy_option = 7
    shared.opts.save()
    assert json.loads((data_dir / "config.json").read_text())["toy_option"] == 7
    with pytest.raises(ValueError, match="toy_option"):
        shared.opts.set("toy_option", 11)
    seen: list[int] = []
    shared.opts.onchange("toy_option", lambda: seen.append(shared.opts.toy_option), call=False)
    shared.opts.set("toy_option", 4)
    assert seen == [4]
    shared.opts.save()
    assert isinstance(shared.opts.data_labels["toy_option"], shared.OptionInfo)
    facade.unbind()
    assert _start(data_dir).services.options.get("toy_option") == 4  # stored value survives a restart


def test_ui_tabs_callback_gives_a_tab(data_dir: Path) -> None:
    import gradio as gr

    host = _start(data_dir)
    tabs = host.extension_tabs()
    assert [(title, elem_id) for _, title, elem_id in tabs] == [("Toy tab", "toy_tab")]
    assert isinstance(tabs[0][0], gr.Blocks)


def test_app_started_route_works_beside_the_mounted_ui(data_dir: Path) -> None:
    import gradio as gr

    host = _start(data_dir, "--toy-flag", "on")
    app = FastAPI()
    with gr.Blocks() as demo:
        gr.Markdown("ui")
    register_extension_routes(app, host)
    app = gr.mount_gradio_app(app, demo, path="/")
    host.app_started(demo, app)  # after mounting, as A1111 does: the routes must still be reachable
    client = TestClient(app)
    assert client.get("/toy/ping").json() == {"flag": "on", "option": 3, "demo": True}
    assert client.get("/").status_code == 200


def test_js_css_and_localizations_are_collected_and_served(data_dir: Path) -> None:
    host = _start(data_dir)
    js = host.collected_js()
    assert [(a.extension, a.relative) for a in js] == [("toy-ui", "javascript/toy.js")]
    assert [(a.extension, a.relative) for a in host.collected_css()] == [("toy-ui", "style.css")]
    head = host.head_html()
    assert '<script src="/extensions-assets/toy-ui/javascript/toy.js?' in head
    assert '<link rel="stylesheet" property="stylesheet" href="/extensions-assets/toy-ui/style.css?' in head
    assert list(host.localizations()) == ["xx_TOY"]
    app = FastAPI()
    register_extension_routes(app, host)
    client = TestClient(app)
    served = client.get(js[0].url)
    assert served.status_code == 200 and "onUiLoaded" in served.text
    assert served.headers["content-type"].startswith("text/javascript")
    for bad in (
        "/extensions-assets/toy-ui/../toy-prompts/scripts/prompt_suffix.py",
        "/extensions-assets/toy-ui/preload.py",
    ):
        assert client.get(bad).status_code == 404
    (data_dir / "extensions" / "toy-ui" / ".git").mkdir()
    (data_dir / "extensions" / "toy-ui" / ".git" / "x.js").write_text("secret")
    assert client.get("/extensions-assets/toy-ui/.git/x.js").status_code == 404


def test_component_callbacks_while_building_a_tab(data_dir: Path) -> None:
    import gradio as gr

    from modules import script_callbacks

    host = _start(data_dir)
    seen: list[tuple[str, str | None]] = []
    script_callbacks.on_before_component(lambda c, **kw: seen.append(("before", kw.get("elem_id"))))
    script_callbacks.on_after_component(lambda c, **kw: seen.append(("after", c.elem_id)))
    with gr.Blocks(), host.building_tab("txt2img"):
        gr.Textbox(label="Prompt", elem_id="txt2img_prompt")
    with gr.Blocks():
        gr.Textbox(elem_id="outside")  # not patched any more
    assert ("before", "txt2img_prompt") in seen and ("after", "txt2img_prompt") in seen
    assert all(elem_id != "outside" for _, elem_id in seen)


def test_extras_scripts_run_with_defaults_and_given_args(data_dir: Path) -> None:
    host = _start(data_dir)
    assert [s.name for s in host.postprocessing.scripts] == ["Toy extras"]
    pp = host.postprocessing.run(PostprocessedImage(Image.new("RGB", (4, 4), (10, 20, 30))))
    assert pp.image.getpixel((0, 0)) == (245, 235, 225) and pp.info == {"Toy extras": "toy"}
    assert pp.shared.target_width == 4
    pp = host.postprocessing.run(PostprocessedImage(Image.new("RGB", (4, 4))), {"toy extras": {"tag": "t2"}})
    assert pp.info == {"Toy extras": "t2"}
    off = host.postprocessing.run(PostprocessedImage(Image.new("RGB", (4, 4))), {"Toy extras": {"enable": False}})
    assert off.info == {} and off.image.getpixel((0, 0)) == (0, 0, 0)


def _git_remote(folder: Path, url: str) -> None:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-q", "-m", "x"],
        ["remote", "add", "origin", url],
    ):
        subprocess.run(
            ["git", *args], cwd=folder, check=True, capture_output=True, env={**env, "PATH": "/usr/bin:/bin"}
        )


def test_available_index_from_a_local_file(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _git_remote(data_dir / "extensions" / "toy-ui", "https://github.com/toy/toy-ui.git")
    index_file = tmp_path / "index.json"
    index_file.write_text(
        json.dumps(
            {
                "tags": {"script": "Scripts", "tab": "Tabs", "ads": "Ads"},
                "extensions": [
                    {"name": "Toy UI", "url": "https://github.com/toy/toy-ui", "description": "d", "tags": ["tab"]},
                    {"name": "Other", "url": "https://github.com/x/other.git", "description": "o", "tags": ["script"]},
                    {
                        "name": "Spam",
                        "url": "https://github.com/x/spam.git",
                        "description": "s",
                        "tags": ["ads", "script"],
                    },
                ],
            }
        )
    )
    host = _start(data_dir)
    monkeypatch.setenv("WEBUI_EXTENSIONS_INDEX", index_file.as_uri())  # a local index must be configured
    data, entries = host.available()
    assert set(data.tags) == {"script", "tab", "ads"}
    assert [e.name for e in entries] == ["Other", "Spam"]  # Toy UI is installed (same repo, other URL form)
    _, tagged = host.available(index_file.as_uri(), only_tags=["script"], hide_tags=["ads"], hide_installed=False)
    assert [e.name for e in tagged] == ["Other"]
    monkeypatch.setenv("WEBUI_EXTENSIONS_INDEX", str(index_file))  # a plain path works too
    _, everything = host.available(None, hide_installed=False, search="toy")
    assert [e.name for e in everything] == ["Toy UI"]
    app = FastAPI()
    register_extension_routes(app, host)
    listed = TestClient(app).post("/internal/extensions/available", json={"hide_installed": False})
    assert [(e["name"], e["installed"]) for e in listed.json()["extensions"]] == [
        ("Toy UI", True),
        ("Other", False),
        ("Spam", False),
    ]
    bad = tmp_path / "bad.json"
    bad.write_text('{"extensions": "nope"}')
    with pytest.raises(ExtensionIndexError, match="not in A1111's index format"):
        load_index(str(bad), allow_local=True)
    with pytest.raises(ExtensionIndexError, match="Cannot read"):
        load_index(str(tmp_path / "missing.json"), allow_local=True)
    with pytest.raises(ExtensionIndexError, match="Unsupported"):
        load_index("ftp://example.org/index.json")


def test_extensions_tab_actions(data_dir: Path) -> None:
    import gradio as gr

    from modules.extension_host.ui_tab import build_extensions_tab

    host = _start(data_dir)
    with gr.Blocks(), gr.Tabs(), gr.Tab("Extensions"):  # app.py makes the tab
        tab = build_extensions_tab(host)
    table = tab.installed_html()
    for name in TOYS:
        assert name in table
    assert "broken on purpose" in tab.problems_html()
    assert tab.apply_enabled(["toy-ui", "toy-prompts", "toy-postprocess"], "none").startswith("Saved")
    assert host.services.options.get("disabled_extensions") == ["toy-broken"]
    message, output = tab.install("--upload-pack=touch /tmp/x", "", "")
    assert "starts with" in message and output == ""
    assert tab.update("") == "Choose an extension."

    facade.unbind()
    listen = ExtensionsTab(_start(data_dir, "--listen"))
    message, _ = listen.install("https://example.org/a/b.git", "", "")
    assert "--enable-insecure-extension-access" in message
    assert "toy-broken" not in [e.name for e in listen.host.active()]  # disabled above, after restart


def test_a1111_extension_list_api(data_dir: Path) -> None:
    host = _start(data_dir)
    app = FastAPI()
    register_extension_routes(app, host)
    client = TestClient(app)
    rows = client.get("/sdapi/v1/extensions").json()
    assert sorted(r["name"] for r in rows) == sorted(TOYS)
    assert set(rows[0]) == {"name", "remote", "branch", "commit_hash", "version", "commit_date", "enabled"}
    info = client.get("/sdapi/v1/script-info").json()
    suffix = next(i for i in info if i["name"] == "prompt suffix" and not i["is_img2img"])
    assert suffix["is_alwayson"] is True
    assert [a["label"] for a in suffix["args"]] == ["Add suffix", "Suffix"]
    assert suffix["args"][1]["value"] == "toy"
    problems = client.get("/internal/extensions/problems").json()
    assert any(p["extension"] == "toy-broken" for p in problems)
    assert client.post("/internal/extensions/enable", json={"name": "ghost", "enabled": False}).status_code == 404


def test_unbound_facade_says_what_to_do() -> None:
    from modules import shared
    from modules.extension_host.facade import FacadeNotBound

    facade.unbind()
    with pytest.raises(FacadeNotBound, match="bind"):
        _ = shared.opts.samples_save
    with pytest.raises(FacadeNotBound):
        _ = shared.sd_model


def test_metadata_requires_before_after(tmp_path: Path) -> None:
    from modules.extension_host.discovery import check_requirements, discover
    from modules.extension_host.loader import list_script_files
    from modules.extension_host.problems import ProblemLog

    root = tmp_path / "extensions"
    for name, files in {"a-ext": ["one.py", "two.py"], "b-ext": ["three.py"], "c-ext": ["four.py"]}.items():
        (root / name / "scripts").mkdir(parents=True)
        for file in files:
            (root / name / "scripts" / file).write_text("")
    (root / "a-ext" / "metadata.ini").write_text(
        "[Extension]\nRequires = ghost-ext\n\n[scripts/one.py]\nAfter = c-ext\n"
    )
    (root / "b-ext" / "metadata.ini").write_text("[scripts/three.py]\nBefore = a-ext/one.py\nRequires = nope/x.py\n")
    problems = ProblemLog()
    exts = discover([(root, False)], [], problems)
    check_requirements(exts, problems)
    check_requirements(exts, problems)  # noted once
    order = [f.script_id for f in list_script_files(exts, problems)]
    assert order.index("c-ext/four.py") < order.index("a-ext/one.py")
    assert order.index("b-ext/three.py") < order.index("a-ext/one.py")
    assert sorted(order) == ["a-ext/one.py", "a-ext/two.py", "b-ext/three.py", "c-ext/four.py"]
    messages = [(p.extension, p.error) for p in problems.items()]
    assert messages.count(("a-ext", "requires extension 'ghost-ext', which is not installed")) == 1
    assert ("b-ext", "requires 'nope/x.py', which is not loaded") in messages


def test_callback_order_and_isolation() -> None:
    from modules.extension_host.callbacks import CallbackRegistry
    from modules.extension_host.metadata import CallbackOrder
    from modules.extension_host.problems import ProblemLog

    calls: list[str] = []
    problems = ProblemLog()
    prioritized: list[str] = []
    registry = CallbackRegistry(
        problems,
        extension_of=lambda f: f.split("/")[1],
        order_instructions=lambda: [CallbackOrder("x/a.py/ui_settings", before=(), after=("y/b.py/ui_settings",))],
        prioritized=lambda category: prioritized,
    )
    registry.add("ui_settings", lambda: calls.append("x"), filename="/x/a.py")
    registry.add("ui_settings", lambda: calls.append("y"), filename="/y/b.py")
    registry.add("ui_settings", lambda: 1 / 0, filename="/z/c.py", name="bad")
    registry.add("ui_settings", lambda: calls.append("y2"), filename="/y/b.py")
    registry.ui_settings()
    assert calls == ["y", "x", "y2"]  # x after y (metadata); the failing one did not stop the rest
    assert [p.extension for p in problems.items()] == ["z"]
    assert [c.name for c in registry.ordered("ui_settings")][2:] == ["z/c.py/ui_settings/bad", "y/b.py/ui_settings-1"]
    prioritized.append("y/b.py/ui_settings-1")
    calls.clear()
    registry.ui_settings()
    assert calls[0] == "y2"
    with pytest.raises(ValueError, match="unknown callback category"):
        registry.add("ui_nothing", print, filename="/x/a.py")
