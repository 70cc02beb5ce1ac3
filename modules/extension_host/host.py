"""ExtensionHost: everything extensions need from one app instance, built from its Services.

It discovers extensions, runs their installers, imports their scripts, owns the callback
registry, the script runner the engine calls and the Extras scripts, and offers what the UI,
the API and the server call (tabs, script UI, JS/CSS, install/update/remove). The A1111
facades (`modules.shared` & co.) are views onto the host bound by
`modules.extension_host.facade.bind`.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules.core.jobs import JobControl, running_control
from modules.core.options import OptionInfo as CoreOptionInfo
from modules.core.options import OptionsRegistry
from modules.core.paths import REPO_ROOT
from modules.core.pip_policy import Skipped
from modules.extension_host import assets, compat_lists, index
from modules.extension_host.callbacks import CallbackRegistry
from modules.extension_host.compat_cache import JsonCache, MemUsageMonitor
from modules.extension_host.compat_options import OptsView
from modules.extension_host.compat_processing import (
    Processed,
    as_images,
    prepare_p,
    split_processing_kwargs,
    unwrap_processed,
    wrap_processed,
)
from modules.extension_host.compat_runtime import CmdOptsView, SdModelView, StateView
from modules.extension_host.component_hooks import component_callbacks
from modules.extension_host.discovery import (
    DisableMode,
    Extension,
    active,
    check_requirements,
    discover,
    find_extension,
)
from modules.extension_host.extra_networks import ExtraNetworkRegistry
from modules.extension_host.gitops import ExtensionAccess, GitExtensions, GitInfo, InstallOutcome
from modules.extension_host.gradio_compat import install_aliases
from modules.extension_host.installer import Installer, InstallRun, InstallStamps, fingerprint, write_constraints
from modules.extension_host.job_context import CURRENT_CONTROL
from modules.extension_host.loader import LoadedScripts, list_script_files, load_script_files
from modules.extension_host.metadata import CallbackOrder
from modules.extension_host.postprocessing import PostprocessingScripts
from modules.extension_host.preload import BUILTIN_DIR, disable_mode
from modules.extension_host.problems import Problem, ProblemLog
from modules.extension_host.runner import TABS, HookOrdering, ScriptRunner, TabScripts
from modules.generation.processing import Processing
from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest

if TYPE_CHECKING:
    from modules.services import Services

log = logging.getLogger("extensions")

SECTION = ("extensions", "Extensions")


def register_extension_options(registry: OptionsRegistry) -> None:
    """The settings A1111 keeps for extensions (added unless the core catalogue has them)."""
    for info in (
        CoreOptionInfo("disabled_extensions", [], "Disable these extensions", SECTION, "textbox", hidden=True),
        CoreOptionInfo(
            "disable_all_extensions",
            "none",
            "Disable all extensions (preserves the list of disabled extensions)",
            SECTION,
            "radio",
            ("none", "extra", "all"),
            hidden=True,
        ),
    ):
        if info.key not in registry:
            registry.add(info)


@dataclass(frozen=True)
class InstalledExtension:
    """One row of the Installed tab / GET /sdapi/v1/extensions."""

    name: str
    path: str
    enabled: bool
    is_builtin: bool
    git: GitInfo
    problems: list[str] = field(default_factory=list)

    def a1111_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "remote": self.git.remote,
            "branch": self.git.branch,
            "commit_hash": self.git.commit_hash,
            "version": self.git.version,
            "commit_date": self.git.commit_date,
            "enabled": self.enabled,
        }


class ExtensionHost:
    def __init__(
        self,
        services: Services,
        *,
        builtin_dir: Path = BUILTIN_DIR,
        core_scripts_dir: Path | None = REPO_ROOT / "scripts",
        installer: Installer | None = None,
        problems: ProblemLog | None = None,
    ):
        self.services = services
        self.problems = problems or ProblemLog()
        register_extension_options(services.registry)
        self.builtin_dir = builtin_dir
        self.core_scripts_dir = core_scripts_dir
        self.access = ExtensionAccess.from_args(services.args)
        self._installer = installer
        self.stamps = InstallStamps(services.paths.cache_dir / "extensions-installed.json")
        self.extensions: list[Extension] = []
        self.loaded = LoadedScripts()
        self._remove_gradio_aliases: Callable[[], None] | None = None  # gr.Box, gr.X.update ... while loaded
        self.callbacks = CallbackRegistry(
            self.problems,
            extension_of=self._extension_name_of,
            order_instructions=self._order_instructions,
            prioritized=self._prioritized,
        )
        self.extra_networks = ExtraNetworkRegistry(self.problems)
        self.opts = OptsView(services.options, services.registry, services.paths.data_dir)
        self.cmd_opts = CmdOptsView(services.args, lambda flag: compat_lists.default_dir(services, flag))
        self.state = StateView(services.jobs.current)
        self.git = GitExtensions(services.paths.extensions_dir, self.access, installer=self._install_for_git)
        self.demo: Any = None
        self.settings_components: dict[str, Any] = {}  # the UI fills it (A1111 shared.settings_components)
        self.paste_fields: dict[str, dict[str, Any]] = {}  # infotext_utils.add_paste_fields, for the UI
        self.paste_bindings: list[Any] = []  # infotext_utils.register_paste_params_button, for the UI
        self.extra_pages: list[Any] = []  # ui_extra_networks.register_page, for the Extra networks panel
        self.runner = ScriptRunner(
            self._tabs([]), prepare_p=self.prepare_p, wrap_processed=wrap_processed, unwrap_processed=unwrap_processed
        )
        self.postprocessing = PostprocessingScripts([], self.problems)
        connect_generation_events(self)  # runner gets the callbacks; on_model_loaded from the model manager

    # --- discovery and loading -------------------------------------------------------------------
    def disable_mode(self) -> DisableMode:
        args = self.services.args
        return disable_mode(
            self.services.options.get("disable_all_extensions"),
            disable_all_flag=bool(getattr(args, "disable_all_extensions", False)),
            disable_extra_flag=bool(getattr(args, "disable_extra_extensions", False)),
        )

    def refresh(self) -> list[Extension]:
        disabled = [str(x) for x in self.services.options.get("disabled_extensions") or []]
        folders = [(self.builtin_dir, True), (self.services.paths.extensions_dir, False)]
        self.extensions = discover(folders, disabled, self.problems)
        check_requirements(self.extensions, self.problems)
        return self.extensions

    def active(self) -> list[Extension]:
        return active(self.extensions, self.disable_mode())

    def start(self, *, run_installers: bool = True) -> None:
        """Startup: discover, run changed installers (unless --skip-install), import scripts,
        then on_before_ui and on_ui_settings (so extension settings exist for the API too)."""
        self.refresh()
        if run_installers and not getattr(self.services.args, "skip_install", False):
            self.run_installers(only_changed=True)
        self.load_scripts()
        self.callbacks.before_ui()
        self.callbacks.ui_settings()

    def load_scripts(self) -> None:
        self.loaded.unload()
        self.callbacks.clear()
        self.extra_networks.unregister_all()
        exts = self.active()
        for ext in exts:
            for complaint in ext.metadata.callback_orders()[1]:
                self.problems.note(ext.name, "metadata.ini", complaint)
        files = list_script_files(exts, self.problems, core_dir=self.core_scripts_dir)
        if self._remove_gradio_aliases is None:
            self._remove_gradio_aliases = install_aliases()
        self.loaded = load_script_files(files, self.problems)
        self.runner.tabs = self._tabs(self.loaded.scripts)
        post = [(c.cls, str(c.file.path), c.file.extension) for c in self.loaded.postprocessing]
        self.postprocessing = PostprocessingScripts(post, self.problems)
        log.info(
            "extensions: %d active, %d script classes, %d problems",
            len(exts),
            len(self.loaded.scripts),
            len(self.problems.items()),
        )

    def unload(self) -> None:
        """on_script_unloaded, then forget scripts, callbacks and the sys.path entries added."""
        self.callbacks.script_unloaded()
        self.callbacks.clear()
        self.extra_networks.unregister_all()
        self.loaded.unload()
        if self._remove_gradio_aliases is not None:
            self._remove_gradio_aliases()
            self._remove_gradio_aliases = None
        self.runner.tabs = self._tabs([])
        self.postprocessing = PostprocessingScripts([], self.problems)

    def _tabs(self, classes: list[Any]) -> dict[str, TabScripts]:
        ordering = HookOrdering(self._order_instructions, self._prioritized)
        return {tab: TabScripts(tab, classes, self.problems, ordering) for tab in TABS}

    def _extension_name_of(self, filename: str) -> str | None:
        ext = find_extension(self.extensions, filename)
        return ext.canonical_name if ext is not None else None

    def _order_instructions(self) -> list[CallbackOrder]:
        return [order for ext in self.active() for order in ext.metadata.callback_orders()[0]]

    def _prioritized(self, category: str) -> list[str]:
        value = self.services.options.as_dict().get(f"prioritized_callbacks_{category}", [])
        return [str(v) for v in value] if isinstance(value, list) else []

    # --- installers ------------------------------------------------------------------------------
    @property
    def installer(self) -> Installer:
        if self._installer is None:
            constraints = write_constraints(self.services.paths.cache_dir / "extension-pip-constraints.txt")
            self._installer = Installer(constraints=constraints)
        return self._installer

    def run_installer(self, folder: Path) -> InstallRun:
        run = self.installer.run(folder)
        self._note_skipped(folder.name, run.skipped)
        if run.ok:
            self.stamps.record(folder.name, fingerprint(folder, GitInfo.read(folder).commit_hash), run.skipped)
        elif run.ran:
            self.problems.note(folder.name, "install.py", run.summary)
        return run

    def run_installers(self, *, only_changed: bool = True) -> list[InstallRun]:
        runs = []
        for ext in self.active():
            if self.installer.command_for(ext.path) is None:
                continue
            if only_changed and self.stamps.is_current(
                ext.name, fingerprint(ext.path, GitInfo.read(ext.path).commit_hash)
            ):
                self._note_skipped(ext.name, self.stamps.skipped(ext.name))  # still not installed
                continue
            runs.append(self.run_installer(ext.path))
        return runs

    def _note_skipped(self, name: str, skipped: Iterable[Skipped]) -> None:
        """Requirements the pip policy left out: what and why, in the Extensions tab's problems."""
        for item in skipped:
            self.problems.note(name, "install.py", f"{item.requirement} was not installed: {item.reason}")

    def _install_for_git(self, folder: Path) -> tuple[bool, str]:
        run = self.run_installer(folder)
        return run.ok, (run.summary + "\n" + run.output).strip()

    # --- management (Extensions tab / API) --------------------------------------------------------
    def installed(self) -> list[InstalledExtension]:
        self.refresh()
        return [
            InstalledExtension(
                e.name,
                str(e.path),
                e.enabled,
                e.is_builtin,
                GitInfo.read(e.path),
                [p.message for p in self.problems.for_extension(e.name)],
            )
            for e in self.extensions
        ]

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Takes effect at the next start (A1111: "Apply and restart UI")."""
        if name not in {e.name for e in self.refresh()}:
            raise LookupError(f"No installed extension named {name!r}.")
        disabled = [x for x in self.services.options.get("disabled_extensions") or [] if x != name]
        if not enabled:
            disabled.append(name)
        self.services.options.set("disabled_extensions", disabled)
        self.services.options.save()

    def set_disable_all(self, mode: str) -> None:
        self.services.options.set("disable_all_extensions", DisableMode(mode).value)
        self.services.options.save()

    def install(self, url: str, *, branch: str | None = None, folder: str | None = None) -> InstallOutcome:
        outcome = self.git.install(url, branch=branch, folder=folder)
        self.refresh()
        return outcome

    def update(self, name: str) -> GitInfo:
        info = self.git.update(name)
        self.refresh()
        return info

    def check_updates(self, names: list[str] | None = None) -> dict[str, str]:
        wanted = names or [e.name for e in self.refresh() if not e.is_builtin]
        return {name: self.git.check_update(name) for name in wanted}

    def remove(self, name: str) -> None:
        self.git.remove(name)
        disabled = [x for x in self.services.options.get("disabled_extensions") or [] if x != name]
        self.services.options.set("disabled_extensions", disabled)
        self.services.options.save()
        self.refresh()

    def available(self, url: str | None = None, **filters: Any) -> tuple[index.ExtensionIndex, list[index.IndexEntry]]:
        """The index (configured or default; another URL only where extensions may be installed,
        since the server fetches it: http(s) only), filtered. Callers check the user is an admin."""
        custom = index.is_custom_index(url)
        if custom:
            self.access.require()
        data = index.load_index(index.index_url(url), allow_local=not custom)
        remotes = [i.git.remote or "" for i in self.installed()]
        return data, index.filter_index(data, installed_urls=remotes, **filters)

    def problem_list(self) -> list[Problem]:
        return self.problems.items()

    # --- what the UI and the server call ---------------------------------------------------------
    def extension_tabs(self) -> list[tuple[Any, str, str]]:
        """on_ui_tabs results: (gr.Blocks, title, elem_id); the UI adds each as a tab."""
        return self.callbacks.ui_tabs()

    def script_ui(self, tab: str) -> list[Any]:
        """Build the scripts' components of `tab` inside the caller's Blocks; returns the inputs to
        pass (values, in order) to `runner.for_ui(tab, values)`."""
        return self.runner.tab(tab).create_ui()

    @contextmanager
    def building_tab(self, tab: str | None) -> Iterator[None]:
        """Wrap building a tab's UI: on_before/after_component and Script.before/after_component."""
        scripts: TabScripts | None = self.runner.tabs.get(tab) if tab else None

        def before(component: Any, **kwargs: Any) -> None:
            self.callbacks.before_component(component, **kwargs)
            if scripts is not None:
                scripts.before_component(component, **kwargs)

        def after(component: Any, **kwargs: Any) -> None:
            self.callbacks.after_component(component, **kwargs)
            if scripts is not None:
                scripts.after_component(component, **kwargs)

        with component_callbacks(before, after):
            yield

    def collected_js(self) -> list[assets.Asset]:
        return assets.collect_js(self.active())

    def collected_css(self) -> list[assets.Asset]:
        return assets.collect_css(self.active())

    def head_html(self) -> str:
        return assets.head_html(self.collected_js(), self.collected_css())

    def localizations(self) -> dict[str, list[Path]]:
        return assets.collect_localizations(self.active())

    def app_started(self, demo: Any, app: Any) -> None:
        """on_app_started(demo, app); routes extensions add still win over a UI mounted at "/"."""
        self.demo = demo
        self.callbacks.app_started(demo, app)
        _keep_root_mount_last(app)

    # --- A1111 lists and helpers (shared.sd_upscalers, modules.cache, shared.mem_mon) -------------
    @functools.cached_property
    def cache(self) -> JsonCache:
        """A1111's cache.json (modules.cache), in the data dir's cache folder."""
        return JsonCache(self.services.paths.cache_dir / "cache.json")

    @functools.cached_property
    def queue_lock(self) -> threading.RLock:
        """A1111's call_queue.queue_lock for extension code (our job queue orders generations)."""
        return threading.RLock()

    @functools.cached_property
    def mem_mon(self) -> MemUsageMonitor:
        return MemUsageMonitor(self.services.policy.device)

    # --- A1111 processing surface ----------------------------------------------------------------
    def sd_model(self) -> SdModelView | None:
        loaded = self.services.models.active
        return SdModelView(loaded, self.services.options.as_dict) if loaded is not None else None

    def prepare_p(self, p: Any) -> None:
        prepare_p(p, sd_model=self.sd_model, options=self.services.options)

    def new_processing(self, kind: str, kwargs: dict[str, Any]) -> Processing:
        """`StableDiffusionProcessingTxt2Img(**kwargs)` / `...Img2Img(**kwargs)`."""
        fields, extra = split_processing_kwargs(kind, kwargs)
        generation = self.services.generation
        if kind == "txt2img":
            p = generation.new_txt2img(Txt2ImgRequest(**fields))
        else:
            mask = as_images(extra.pop("mask", None))
            p = generation.new_img2img(
                Img2ImgRequest(**fields),
                init_images=as_images(extra.pop("init_images", None)),
                mask=mask[0] if mask else None,
            )
        extra.pop("sd_model", None)
        for key, value in extra.items():
            setattr(p, key, value)
        self.prepare_p(p)
        return p

    def process_images(self, p: Processing) -> Processed:
        """`processing.process_images(p)`: run `p` with the current job's control."""
        p.opts = self.services.options.view(p.override_settings)  # settings changed after p was made
        # the job's own control (never the queue's current job: that may be another user's);
        # outside any job a fresh one, so Interrupt on someone else's job does not stop this run
        control = CURRENT_CONTROL.get() or running_control() or JobControl()
        self.prepare_p(p)
        return Processed.of(self.services.generation.process(p, control))


def _keep_root_mount_last(app: Any) -> None:
    """A Mount at "/" (the Gradio UI) answers every path, so routes after it are never reached:
    move it behind the routes extensions added in on_app_started."""
    from starlette.routing import Mount

    routes = getattr(getattr(app, "router", None), "routes", None)
    if routes is None:
        return
    root = [r for r in routes if isinstance(r, Mount) and r.path in ("", "/")]
    if root:
        routes[:] = [r for r in routes if r not in root] + root


def connect_generation_events(host: ExtensionHost) -> Callable[[], None]:
    """Wire the host's callbacks into the runner and on_model_loaded into the model manager.
    Returns a function that disconnects the model-loaded listener."""
    host.runner.callbacks = host.callbacks
    callbacks = host.callbacks

    def model_loaded(model: Any) -> None:
        if callbacks.count("model_loaded"):
            callbacks.model_loaded(SdModelView(model, host.services.options.as_dict))

    return host.services.models.add_loaded_listener(model_loaded)
