"""The Gradio front end: builds every tab and mounts the UI on the FastAPI app.

`create_ui(services)` builds the Blocks; `mount_ui(app, services)` mounts it at "/" with the
page's JavaScript (A1111 globals, javascript/*.js), CSS (style.css, extensions, user.css) and
theme, and keeps a handle (`UiHost`) that "Reload UI" uses to rebuild the Blocks in place.
Tab order and hidden tabs follow the ui_tab_order / hidden_tabs settings.
"""

from __future__ import annotations

import base64
import contextvars
import html
import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.from_thread
import gradio as gr
from fastapi import FastAPI
from starlette.routing import Mount

from modules.core.paths import REPO_ROOT
from modules.services import Services
from modules.ui.common import UiContext
from modules.ui.extra_networks_edit import wire_card_actions
from modules.ui.extras import build_extras
from modules.ui.img2img import build_img2img
from modules.ui.merger import build_merger
from modules.ui.param_bindings import wire_param_bindings
from modules.ui.pnginfo import build_pnginfo, wire_pnginfo_send
from modules.ui.quicksettings import build_quicksettings
from modules.ui.settings import build_settings, settings_json
from modules.ui.toprow import TokenCounter
from modules.ui.train import build_train
from modules.ui.txt2img import build_txt2img
from modules.ui.ui_config import UiConfig
from modules.ui.wiring import wire_send_to

log = logging.getLogger(__name__)

SCRIPT_FILE = REPO_ROOT / "script.js"  # the globals every other script uses: loaded first
JAVASCRIPT_DIR = REPO_ROOT / "javascript"
STYLE_FILE = REPO_ROOT / "style.css"


@dataclass(frozen=True)
class ExtensionTab:
    """A tab an extension adds (A1111 on_ui_tabs: (blocks, title, elem_id))."""

    blocks: gr.Blocks
    title: str
    elem_id: str


@dataclass
class UiAssets:
    """Scripts and stylesheets for the page head (extensions add theirs)."""

    scripts: list[Path] = field(default_factory=list)
    stylesheets: list[Path] = field(default_factory=list)


def order_tabs(labels: Sequence[str], tab_order: Sequence[str], hidden: Sequence[str]) -> list[str]:
    """Labels in ui_tab_order first (in that order), then the rest as built; hidden_tabs removed."""
    hidden_set = set(hidden)
    first = [label for label in tab_order if label in labels]
    rest = [label for label in labels if label not in first]
    return [label for label in first + rest if label not in hidden_set]


def create_ui(
    services: Services,
    *,
    reload_ui: Callable[[], None] | None = None,
    extension_tabs: Sequence[ExtensionTab] = (),
    extension_host: Any = None,
) -> gr.Blocks:
    """Build the whole UI for these services (no model is loaded here).

    `extension_host` (modules.extension_host.host.ExtensionHost) adds the Extensions tab."""
    paths = services.paths
    ctx = UiContext(services, UiConfig.load(paths.ui_config_file), extension_host=extension_host)
    counter = TokenCounter(paths.cache_dir / "tokenizers")
    settings = ctx.settings
    pnginfo_parts: dict[str, Any] = {}
    builders: dict[str, tuple[str, Callable[[], Any]]] = {
        "txt2img": ("txt2img", lambda: build_txt2img(ctx, counter)),
        "img2img": ("img2img", lambda: build_img2img(ctx, counter)),
        "Extras": ("extras", lambda: build_extras(ctx)),
        "PNG Info": ("pnginfo", lambda: pnginfo_parts.update(build_pnginfo(ctx))),
        "Checkpoint Merger": ("modelmerger", lambda: build_merger(ctx)),
        "Train": ("train", lambda: build_train(ctx)),
    }
    for ext in extension_tabs:
        builders[ext.title] = (ext.elem_id, ext.blocks.render)
    if extension_host is not None:
        from modules.extension_host.ui_tab import build_extensions_tab

        builders["Extensions"] = ("extensions", lambda: build_extensions_tab(extension_host))
    with gr.Blocks(title="Stable Diffusion", analytics_enabled=False) as demo:
        json_box = gr.Textbox(settings_json(services.options), visible="hidden", elem_id="settings_json")
        quick = build_quicksettings(ctx, json_box)
        problems = gr.HTML("", visible=False, elem_id="stored_value_problems")
        labels = order_tabs(
            [*builders, "Settings"], settings.get("ui_tab_order") or [], settings.get("hidden_tabs") or []
        )
        if "Settings" not in labels:
            labels.append("Settings")  # never hide the only way back
        setting_components = dict(quick)
        with gr.Tabs(elem_id="tabs") as tabs:
            ctx.targets.main_tabs = tabs
            for label in labels:
                tab_id = "settings" if label == "Settings" else builders[label][0]
                with gr.Tab(label, id=tab_id, elem_id=f"tab_{tab_id}", render_children=True):
                    if label == "Settings":
                        setting_components.update(build_settings(ctx, json_box, reload_ui, skip=list(quick)).components)
                    else:
                        with _building_tab(extension_host, tab_id):  # component callbacks, A1111 elem_ids
                            builders[label][1]()
        wire_send_to(ctx)
        wire_param_bindings(ctx, demo, {"settings", *(b[0] for b in builders.values())})
        wire_card_actions(ctx, quick)
        if pnginfo_parts:
            wire_pnginfo_send(ctx, pnginfo_parts)
        gr.HTML(_footer(services), elem_id="footer")
        gr.HTML(notification_audio_html(services.paths.data_dir / "notification.mp3", settings), padding=False)
        _show_current_settings(demo, ctx, setting_components, json_box)
    registry = services.options.registry
    replaced = [
        f"{registry[key].label} ({key}): {reason}; using the default {registry[key].default!r}"
        for key, reason in services.options.replaced.items()
        if key in registry
    ]
    _report_stored_problems(problems, [*replaced, *ctx.ui_config.problems])
    ctx.ui_config.save_if_changed()
    return demo


def _report_stored_problems(box: gr.HTML, problems: Sequence[str]) -> None:
    """Stored settings / ui-config defaults that were refused at load, shown above the tabs."""
    if not problems:
        return
    items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
    box.value = f'<div class="stored-problems"><p>Stored values replaced by defaults:</p><ul>{items}</ul></div>'
    box.visible = True


def _building_tab(extension_host: Any, tab_id: str) -> AbstractContextManager[Any]:
    """on_before/after_component (and the tab's Script.before/after_component) while a tab is built."""
    if extension_host is None:
        return nullcontext()
    return extension_host.building_tab(tab_id if tab_id in ("txt2img", "img2img") else None)  # type: ignore[no-any-return]


def _show_current_settings(demo: gr.Blocks, ctx: UiContext, components: dict[str, Any], json_box: Any) -> None:
    """Every page load shows the stored settings (the Blocks keep the values they were built with)."""
    keys = list(components)

    def current() -> list[Any]:
        options = ctx.services.options
        values = [options.get(k) for k in keys]
        return [*(gr.update(value=v) if v not in (None, "") else gr.update() for v in values), settings_json(options)]

    demo.load(current, outputs=[*(components[k] for k in keys), json_box], show_progress="hidden", queue=False)


def notification_audio_html(sound: Path, settings: Any) -> str:
    """A1111 plays notification.mp3 from its folder when images arrive (javascript/notification.js):
    embedded in the page, so no file route has to share the data folder."""
    if not settings["notification_audio"] or not sound.is_file():
        return ""
    data = base64.b64encode(sound.read_bytes()).decode("ascii")
    return f'<audio id="audio_notification" preload="auto" src="data:audio/mpeg;base64,{data}"></audio>'


def _footer(services: Services) -> str:
    links = ['<a href="/docs">API</a>'] if services.args.api else []
    return '<div class="versions">' + " • ".join([*links, "Stable Diffusion web UI (A1111-compatible)"]) + "</div>"


# --- page assets ---------------------------------------------------------------------------------


def page_head(services: Services, assets: UiAssets) -> str:
    """<script> tags for javascript/*.js then extension scripts; the forced theme, if any."""
    parts = []
    theme = services.args.theme
    if theme:
        parts.append(
            "<script>(function(){var u=new URL(window.location);"
            f"if(u.searchParams.get('__theme')!=={theme!r}){{u.searchParams.set('__theme',{theme!r});"
            "window.location.replace(u.toString());}})();</script>"
        )
    scripts = sorted(JAVASCRIPT_DIR.glob("*.js")) if JAVASCRIPT_DIR.is_dir() else []
    for path in [SCRIPT_FILE, *scripts, *assets.scripts]:
        code = path.read_text(encoding="utf8").replace("</script", "<\\/script")
        parts.append(f"<script>/* {html.escape(path.name)} */\n{code}\n</script>")
    return "\n".join(parts)


def page_css(services: Services, assets: UiAssets) -> str:
    files = [STYLE_FILE, *assets.stylesheets, services.paths.data_dir / "user.css"]
    return "\n".join(p.read_text(encoding="utf8") for p in files if p.is_file())


def gradio_auth(services: Services) -> list[tuple[str, str]] | None:
    """--gradio-auth "u:p,u2:p2" and --gradio-auth-path (lines or commas)."""
    args = services.args
    entries: list[str] = []
    if args.gradio_auth:
        entries += args.gradio_auth.split(",")
    if args.gradio_auth_path:
        text = Path(args.gradio_auth_path).read_text(encoding="utf8")
        entries += [e for line in text.splitlines() for e in line.split(",")]
    pairs = [tuple(e.strip().split(":", 1)) for e in entries if ":" in e]
    return [(u, p) for u, p in pairs] or None


# --- mounting and reloading ------------------------------------------------------------------------


class UiHost:
    """Owns the mounted UI; `reload()` rebuilds it from current settings (A1111 "Reload UI")."""

    def __init__(
        self,
        app: FastAPI,
        services: Services,
        assets: UiAssets,
        extension_tabs: Sequence[ExtensionTab],
        extension_host: Any = None,
        after_mount: Callable[[FastAPI], None] | None = None,
    ):
        self.app = app
        self.services = services
        self.assets = assets
        self.extension_tabs = list(extension_tabs)
        self.extension_host = extension_host
        self.after_mount = after_mount  # e.g. the server's login hook, re-applied after "Reload UI"
        self._lock = threading.Lock()
        self.blocks: gr.Blocks | None = None

    def _mount_kwargs(self) -> dict[str, Any]:
        paths = self.services.paths
        allowed = [str(paths.outputs_dir), str(paths.data_dir / "log")]
        return {
            "path": "/",
            "css": page_css(self.services, self.assets),
            "head": page_head(self.services, self.assets),
            "allowed_paths": allowed,
            "auth": gradio_auth(self.services),
            "footer_links": ["api"] if self.services.args.api else [],
            "show_error": True,
        }

    def mount(self) -> FastAPI:
        self.blocks = self._create()
        app = gr.mount_gradio_app(self.app, self.blocks, **self._mount_kwargs())
        if self.after_mount is not None:
            self.after_mount(app)
        return app

    def _create(self) -> gr.Blocks:
        return create_ui(
            self.services,
            reload_ui=self.reload,
            extension_tabs=self.extension_tabs,
            extension_host=self.extension_host,
        )

    def reload(self) -> None:
        """Build a fresh Blocks and swap it into the existing mount (runs its queue first).

        Built in a thread of its own: inside a Gradio event handler (the "Reload UI" button) the
        request's context would make Gradio treat the new components as dynamically rendered
        ones of the running Blocks (they get no ids: "'Button' object has no attribute '_id'").
        The new queue starts on the server's event loop when called from one of its workers."""
        with self._lock:
            built: list[tuple[gr.Blocks, Any]] = []
            failure: list[BaseException] = []

            def build() -> None:
                try:
                    built.append(self._build())
                except BaseException as exc:  # re-raised in the caller's thread
                    failure.append(exc)

            worker = threading.Thread(target=build, name="reload-ui")
            worker.start()
            worker.join()
            if failure:
                raise failure[0]
            blocks, fresh_app = built[0]
            # The new queue's tasks are started in an empty context: started from here they would
            # inherit this event's Gradio context (in_event_listener, its request and Blocks) for
            # good, and then every component update after the reload would be an uninitialised
            # component ("'Gallery' object has no attribute 'info'").
            swap = contextvars.Context().run
            try:
                anyio.from_thread.run_sync(swap, self._swap, blocks, fresh_app)
            except RuntimeError:  # not in a worker thread of the server's loop (tests, scripts)
                swap(self._swap, blocks, fresh_app)

    def _build(self) -> tuple[gr.Blocks, Any]:
        scratch = FastAPI()
        blocks = self._create()
        gr.mount_gradio_app(scratch, blocks, **self._mount_kwargs())
        if self.after_mount is not None:
            self.after_mount(scratch)
        fresh = next(r for r in scratch.router.routes if isinstance(r, Mount) and r.path == "")
        return blocks, fresh.app

    def _swap(self, blocks: gr.Blocks, fresh_app: Any) -> None:
        fresh_app.get_blocks().run_startup_events()
        for route in self.app.router.routes:
            if isinstance(route, Mount) and route.path == "":
                route.app = fresh_app
        old, self.blocks = self.blocks, blocks
        if old is not None and old._queue is not None:
            old._queue.close()


def mount_ui(
    app: FastAPI,
    services: Services,
    *,
    assets: UiAssets | None = None,
    extension_tabs: Sequence[ExtensionTab] = (),
    extension_host: Any = None,
    after_mount: Callable[[FastAPI], None] | None = None,
) -> FastAPI:
    """Mount the UI at "/" on `app` (what server.build_app calls unless --nowebui).

    With an `extension_host`, its on_ui_tabs tabs, JS/CSS and the Extensions tab are added."""
    if extension_host is not None:
        extension_tabs = [*extension_tabs, *(ExtensionTab(*t) for t in extension_host.extension_tabs())]
        base = assets or UiAssets()
        assets = UiAssets(
            scripts=[*base.scripts, *(a.path for a in extension_host.collected_js() if a.path.suffix == ".js")],
            stylesheets=[*base.stylesheets, *(a.path for a in extension_host.collected_css())],
        )
    host = UiHost(app, services, assets or UiAssets(), extension_tabs, extension_host, after_mount)
    app.state.ui_host = host
    return host.mount()
