"""The script runner: A1111's ScriptRunner split into per-tab state and per-request hooks.

`TabScripts` holds one tab's script instances (txt2img or img2img), their UI and the layout of
the flat argument list (position 0 = chosen dropdown script, 0 = none; each script's values at
`args[args_from:args_to]`). `RequestScripts` is what one job gets: a `ScriptHooks` the engine
calls at A1111's hook points, dispatching to every always-on script that overrides the hook,
in order (metadata.ini, then `prioritized_callbacks_script_<hook>`), each call isolated.
`ScriptRunner` is the engine-facing entry: `for_request(tab, script_name, script_args,
alwayson_scripts)` for API requests, `for_ui(tab, values)` for the UI.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modules.core.jobs import JobControl
from modules.extension_host.compat_sampler import cfg_wrap_for
from modules.extension_host.generation_hooks import GenerationCallbacks  # script_callbacks of a job
from modules.extension_host.gradio_compat import gradio3_calls
from modules.extension_host.job_context import job_context
from modules.extension_host.loader import ScriptClass
from modules.extension_host.metadata import CallbackOrder, order_by_instructions
from modules.extension_host.problems import ProblemLog
from modules.extension_host.script_base import AlwaysVisible, OnComponent, Script
from modules.generation.hooks import CFGWrap, ScriptHooks

TABS = ("txt2img", "img2img")


class ScriptNotFound(ValueError):
    """API named a script that does not exist (A1111 answers 422)."""


class ScriptRunError(RuntimeError):
    """The chosen dropdown script failed; the message names it and its extension."""


class ScriptInputError(ScriptRunError, ValueError):
    """The chosen script refused its arguments (it raised ValueError): the API answers 400, not 500."""


@dataclass(frozen=True)
class HookOrdering:
    """Where hook order comes from: metadata.ini instructions and the user's priority setting."""

    instructions: Callable[[], Sequence[CallbackOrder]] = tuple
    prioritized: Callable[[str], Sequence[str]] = lambda _c: ()


def _safe_title(script: Script) -> str:
    try:
        return str(script.title())
    except Exception:  # a broken title() still gets a name
        return str(script.filename or type(script).__name__)


class TabScripts:
    """Scripts of one tab and the layout of their arguments."""

    def __init__(
        self,
        tab: str,
        classes: Sequence[ScriptClass],
        problems: ProblemLog,
        ordering: HookOrdering | None = None,
    ):
        if tab not in TABS:
            raise ValueError(f"unknown tab {tab!r}; expected one of {TABS}")
        self.tab = tab
        self.is_img2img = tab == "img2img"
        self.problems = problems
        self.ordering = ordering or HookOrdering()
        self.scripts: list[Script] = []
        self.alwayson_scripts: list[Script] = []
        self.selectable_scripts: list[Script] = []
        self.extension_of: dict[int, str] = {}
        self.inputs: list[Any] = [None]
        self.defaults: list[Any] = [0]
        self.infotext_fields: list[Any] = []
        self.paste_field_names: list[str] = []
        self._laid_out = False
        self._lock = threading.RLock()
        for item in classes:
            self._instantiate(item)

    def _instantiate(self, item: ScriptClass) -> None:
        try:
            script = item.cls()
            script.filename = str(item.file.path)
            script.is_txt2img = not self.is_img2img
            script.is_img2img = self.is_img2img
            script.tabname = self.tab
            visibility = script.show(self.is_img2img)
        except Exception as exc:  # boundary: a broken constructor/show() drops only this script
            self.problems.report(item.file.extension, f"create {item.cls.__name__} ({self.tab})", exc)
            return
        self.extension_of[id(script)] = item.file.extension
        if visibility is AlwaysVisible:
            script.alwayson = True
            self.scripts.append(script)
            self.alwayson_scripts.append(script)
        elif visibility:
            self.scripts.append(script)
            self.selectable_scripts.append(script)
        script.name = _safe_title(script).lower()

    # --- names ------------------------------------------------------------------------------
    def extension(self, script: Script) -> str:
        return self.extension_of.get(id(script), "core")

    @property
    def titles(self) -> list[str]:
        return [_safe_title(s) for s in self.selectable_scripts]

    def script(self, title: str) -> Script | None:
        wanted = title.lower()
        return next((s for s in self.scripts if _safe_title(s).lower() == wanted), None)

    # --- UI and argument layout -------------------------------------------------------------
    def create_ui(self) -> list[Any]:
        """Build the scripts' components inside the caller's Gradio Blocks; returns all inputs
        (position 0 = the Script dropdown). Always-on scripts first, then the dropdown scripts."""
        import gradio as gr

        with self._lock:
            self.inputs, self.defaults = [None], [0]
            self.infotext_fields, self.paste_field_names = [], []
            for script in sorted(self.alwayson_scripts, key=lambda s: s.sorting_priority):
                self._script_group(gr, script, visible=True)
            dropdown = gr.Dropdown(
                label="Script",
                elem_id=f"{self.tab}_script_list",
                choices=["None", *self.titles],
                value="None",
                type="index",
            )
            self.inputs[0] = dropdown
            for script in self.selectable_scripts:
                self._script_group(gr, script, visible=False)
            groups = [s.group for s in self.selectable_scripts]
            if groups:
                dropdown.change(fn=_visibility_switch(len(groups)), inputs=[dropdown], outputs=groups)
            self._laid_out = True
            return list(self.inputs)

    def _script_group(self, gr: Any, script: Script, *, visible: bool) -> None:
        if script.create_group:
            with gr.Group(visible=visible) as group:
                self._script_controls(script)
            script.group = group
        else:
            self._script_controls(script)

    def _script_controls(self, script: Script) -> None:
        script.args_from = script.args_to = len(self.inputs)
        try:
            with gradio3_calls():  # extension UI code: Gradio 3 keywords accepted
                controls = list(script.ui(self.is_img2img) or [])
        except Exception as exc:  # boundary
            self.problems.report(self.extension(script), f"ui ({type(script).__name__}, {self.tab})", exc)
            controls = []
        script.controls = controls
        script.api_info = {
            "name": script.name,
            "is_img2img": self.is_img2img,
            "is_alwayson": script.alwayson,
            "args": [_arg_info(c) for c in controls],
        }
        self.infotext_fields.extend(script.infotext_fields or [])
        self.paste_field_names.extend(script.paste_field_names or [])
        self.inputs.extend(controls)
        self.defaults.extend(getattr(c, "value", None) for c in controls)
        script.args_to = len(self.inputs)

    def ensure_layout(self) -> None:
        """Lay the arguments out without a page (API-only): build the UI into a throwaway Blocks."""
        with self._lock:
            if self._laid_out or not self.scripts:
                return
            import gradio as gr

            with gr.Blocks():
                self.create_ui()

    def refresh_defaults(self) -> None:
        """Re-read the controls' values as the API defaults (after the UI applied ui-config.json)."""
        with self._lock:
            self.defaults = [0, *(getattr(c, "value", None) for c in self.inputs[1:])]

    def default_args(self) -> list[Any]:
        self.ensure_layout()
        return list(self.defaults)

    # --- argument lists --------------------------------------------------------------------
    def api_args(
        self, script_name: str | None, script_args: Sequence[Any], alwayson: Mapping[str, Sequence[Any]]
    ) -> tuple[list[Any], Script | None]:
        """A1111's init_script_args: defaults, the dropdown script's slice, always-on overrides."""
        args = self.default_args()
        selected = None
        if script_name:
            selected = next((s for s in self.selectable_scripts if s.name == script_name.lower()), None)
            if selected is None:
                raise ScriptNotFound(f"Script '{script_name}' not found for {self.tab}")
            start, end = selected.args_from or 0, selected.args_to or 0
            for offset, value in enumerate(list(script_args)[: end - start]):
                args[start + offset] = value  # a short list keeps the defaults, never shifts other scripts
            args[0] = self.selectable_scripts.index(selected) + 1
        for title, values in alwayson.items():
            script = self.script(title)
            if script is None:
                raise ScriptNotFound(f"always on script {title} not found")
            if not script.alwayson:
                raise ScriptNotFound("Cannot have a selectable script in the always on scripts params")
            start, end = script.args_from or 0, script.args_to or 0
            for offset, value in enumerate(list(values)[: end - start]):
                args[start + offset] = value
        return args, selected

    def ui_args(self, values: Sequence[Any]) -> tuple[list[Any], Script | None]:
        args = list(values)
        index = int(args[0] or 0) if args else 0
        selected = self.selectable_scripts[index - 1] if 0 < index <= len(self.selectable_scripts) else None
        return args, selected

    # --- hook order --------------------------------------------------------------------------
    def ordered(self, method: str) -> list[Script]:
        """Always-on scripts overriding `method` (all scripts for component hooks), in order."""
        pool = self.scripts if method in ("before_component", "after_component") else self.alwayson_scripts
        base = getattr(Script, method, None)
        candidates = [s for s in pool if getattr(type(s), method, None) is not base]
        if len(candidates) < 2:
            return candidates
        names: dict[str, Script] = {}
        for script in candidates:
            file = (script.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
            key = f"{self.extension(script)}/{file}/script_{method}/{type(script).__name__}"
            while key in names:
                key += "-1"
            names[key] = script
        order = order_by_instructions(
            list(names), self.ordering.instructions(), self.ordering.prioritized(f"script_{method}")
        )
        return [names[n] for n in order]

    # --- component callbacks (UI build) ------------------------------------------------------
    def before_component(self, component: Any, **kwargs: Any) -> None:
        self._component_hook("before", component, kwargs.get("elem_id"), kwargs)

    def after_component(self, component: Any, **kwargs: Any) -> None:
        self._component_hook("after", component, getattr(component, "elem_id", None), kwargs)

    def _component_hook(self, when: str, component: Any, elem_id: Any, kwargs: dict[str, Any]) -> None:
        calls: list[tuple[Script, str, Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
        for script in self.scripts:
            for wanted, callback in getattr(script, f"on_{when}_component_elem_id") or []:
                if wanted == elem_id:
                    calls.append((script, f"on_{when}_component", callback, (OnComponent(component),), {}))
        for script in self.ordered(f"{when}_component"):
            method = getattr(script, f"{when}_component")
            calls.append((script, f"{when}_component", method, (component,), kwargs))
        if not calls:
            return
        with gradio3_calls():  # extension UI code: Gradio 3 keywords accepted
            for script, where, fn, args, call_kwargs in calls:
                self._guard(script, where, fn, *args, **call_kwargs)

    def _guard(self, script: Script, where: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # boundary: isolate extension code
            self.problems.report(self.extension(script), f"{where} ({type(script).__name__})", exc)
            return None


def _visibility_switch(count: int) -> Callable[[int | None], Any]:
    """Dropdown index -> show the chosen script's group only (1-based; 0 = "None")."""
    import gradio as gr

    def show(index: int | None) -> Any:
        updates = [gr.update(visible=(index or 0) == i + 1) for i in range(count)]
        return updates if count > 1 else updates[0]  # Gradio takes a one-output return value as is

    return show


def _arg_info(component: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"label": getattr(component, "label", None) or ""}
    for name in ("value", "minimum", "maximum", "step"):
        value = getattr(component, name, None)
        if value is not None and not callable(value):
            info[name] = value
    choices = getattr(component, "choices", None)
    if choices is not None:
        info["choices"] = [c[0] if isinstance(c, (tuple, list)) else c for c in choices]
    return info


class RequestScripts(GenerationCallbacks, ScriptHooks):
    """Hooks of one job. Looks like A1111's ScriptRunner to scripts reading `p.scripts`."""

    def __init__(
        self,
        tab: TabScripts,
        args: list[Any],
        selected: Script | None,
        *,
        is_api: bool,
        prepare_p: Callable[[Any], None] = lambda _p: None,
        wrap_processed: Callable[[Any], Any] = lambda r: r,
        unwrap_processed: Callable[[Any], Any] = lambda r: r,
    ):
        self.tab = tab
        self.args = args
        self.selected = selected
        self.is_api = is_api
        self.control: JobControl | None = None
        self._prepare_p = prepare_p
        self._wrap = wrap_processed
        self._unwrap = unwrap_processed
        self._alwayson: list[Script] | None = None  # set by an extension on a copy (adetailer)

    # A1111 ScriptRunner attributes some extensions read through p.scripts
    @property
    def scripts(self) -> list[Script]:
        return self.tab.scripts

    @property
    def alwayson_scripts(self) -> list[Script]:
        return list(self._alwayson) if self._alwayson is not None else self.tab.alwayson_scripts

    @alwayson_scripts.setter
    def alwayson_scripts(self, scripts: list[Script]) -> None:
        """adetailer's pattern: `runner = copy(p.scripts); runner.alwayson_scripts = [...]` for a
        nested job: only those always-on scripts run their hooks there."""
        self._alwayson = list(scripts)

    def _ordered(self, method: str) -> list[Script]:
        scripts = self.tab.ordered(method)
        if self._alwayson is None:
            return scripts
        kept = {id(s) for s in self._alwayson}
        return [s for s in scripts if id(s) in kept]

    @property
    def selectable_scripts(self) -> list[Script]:
        return self.tab.selectable_scripts

    @property
    def title_map(self) -> dict[str, Script]:
        return {_safe_title(s).lower(): s for s in self.tab.scripts}

    def script(self, title: str) -> Script | None:
        return self.tab.script(title)

    def for_request(self, *_: Any, **__: Any) -> ScriptHooks:
        return self

    # --- dispatch ----------------------------------------------------------------------------
    def _slice(self, p: Any, script: Script) -> list[Any]:
        args = getattr(p, "script_args", None) or self.args
        return list(args[script.args_from or 0 : script.args_to or 0])

    def _each(self, method: str, p: Any, *leading: Any, **kwargs: Any) -> None:
        self._prepare_p(p)  # p.sd_model / p.sampler once the job has loaded its model
        with job_context(p, self.control):
            for script in self._ordered(method):
                if method == "setup" and self.is_api and script.setup_for_ui_only:
                    continue
                fn = getattr(script, method)
                self.tab._guard(script, method, fn, p, *leading, *self._slice(p, script), **kwargs)

    def setup(self, p: Any) -> None:
        p.scripts = self
        p.script_args = list(self.args)
        p.is_api = self.is_api
        self._prepare_p(p)
        self._each("setup", p)

    def cfg_wrap(self, p: Any, sampler_name: str) -> CFGWrap | None:
        return cfg_wrap_for(p, sampler_name)

    def run(self, p: Any, control: JobControl) -> Any:
        """The dropdown script's run(p, *args); None when no script is chosen or it returned None."""
        self.control = control
        script = self.selected
        if script is None:
            return None
        with job_context(p, control):
            try:
                processed = script.run(p, *self._slice(p, script))
            except Exception as exc:
                problem = self.tab.problems.report(self.tab.extension(script), f"run ({_safe_title(script)})", exc)
                error = ScriptInputError if isinstance(exc, ValueError) else ScriptRunError
                raise error(f"Script '{_safe_title(script)}' failed: {problem.error}") from exc
        return None if processed is None else self._unwrap(processed)

    def before_process(self, p: Any) -> None:
        self._each("before_process", p)

    def process(self, p: Any) -> None:
        self._each("process", p)

    def before_process_batch(
        self, p: Any, *, batch_number: int, prompts: list[str], seeds: list[int], subseeds: list[int]
    ) -> None:
        self._each(
            "before_process_batch", p, batch_number=batch_number, prompts=prompts, seeds=seeds, subseeds=subseeds
        )

    def after_extra_networks_activate(self, p: Any, **kwargs: Any) -> None:
        self._each("after_extra_networks_activate", p, **kwargs)

    def process_batch(
        self, p: Any, *, batch_number: int, prompts: list[str], seeds: list[int], subseeds: list[int]
    ) -> None:
        self._each("process_batch", p, batch_number=batch_number, prompts=prompts, seeds=seeds, subseeds=subseeds)

    def process_before_every_sampling(self, p: Any, *, x: Any, noise: Any, c: Any, uc: Any) -> None:
        self._each("process_before_every_sampling", p, x=x, noise=noise, c=c, uc=uc)

    def before_hr(self, p: Any) -> None:
        self._each("before_hr", p)

    def on_mask_blend(self, p: Any, mba: Any) -> None:
        self._each("on_mask_blend", p, mba)

    def post_sample(self, p: Any, ps: Any) -> None:
        self._each("post_sample", p, ps)

    def postprocess_batch(self, p: Any, images: Any, *, batch_number: int) -> None:
        self._each("postprocess_batch", p, images=images, batch_number=batch_number)

    def postprocess_batch_list(self, p: Any, pp: Any, *, batch_number: int) -> None:
        self._each("postprocess_batch_list", p, pp, batch_number=batch_number)

    def postprocess_image(self, p: Any, pp: Any) -> None:
        self._each("postprocess_image", p, pp)

    def postprocess_maskoverlay(self, p: Any, ppmo: Any) -> None:
        self._each("postprocess_maskoverlay", p, ppmo)

    def postprocess_image_after_composite(self, p: Any, pp: Any) -> None:
        self._each("postprocess_image_after_composite", p, pp)

    def postprocess(self, p: Any, processed: Any) -> None:
        self._each("postprocess", p, self._wrap(processed))


class ScriptRunner(GenerationCallbacks, ScriptHooks):
    """Engine-facing: turns request script arguments into the `ScriptHooks` of one job."""

    def __init__(
        self,
        tabs: Mapping[str, TabScripts],
        *,
        prepare_p: Callable[[Any], None] = lambda _p: None,
        wrap_processed: Callable[[Any], Any] = lambda r: r,
        unwrap_processed: Callable[[Any], Any] = lambda r: r,
    ):
        self.tabs = dict(tabs)
        self._prepare_p = prepare_p
        self._wrap = wrap_processed
        self._unwrap = unwrap_processed

    def tab(self, tab: str) -> TabScripts:
        try:
            return self.tabs[tab]
        except KeyError:
            raise ValueError(f"unknown tab {tab!r}; expected one of {sorted(self.tabs)}") from None

    def _hooks(self, tab: TabScripts, args: list[Any], selected: Script | None, is_api: bool) -> RequestScripts:
        hooks = RequestScripts(
            tab,
            args,
            selected,
            is_api=is_api,
            prepare_p=self._prepare_p,
            wrap_processed=self._wrap,
            unwrap_processed=self._unwrap,
        )
        hooks.callbacks = self.callbacks  # generation_hooks.GenerationCallbacks
        return hooks

    def for_request(
        self,
        tab: str,
        script_name: str | None = None,
        script_args: Sequence[Any] = (),
        alwayson_scripts: Mapping[str, Any] | None = None,
    ) -> ScriptHooks:
        """Hooks for an API request (A1111 fields script_name, script_args, alwayson_scripts).

        `alwayson_scripts` values may be `{"args": [...]}` dicts, objects with `.args`, or lists.
        Unknown titles raise ScriptNotFound."""
        scripts = self.tab(tab)
        alwayson = {title: _args_of(value) for title, value in (alwayson_scripts or {}).items()}
        args, selected = scripts.api_args(script_name, list(script_args or []), alwayson)
        return self._hooks(scripts, args, selected, is_api=True)

    def for_ui(self, tab: str, values: Sequence[Any]) -> ScriptHooks:
        """Hooks for a UI request: `values` of the inputs `create_ui`/`script_ui` returned."""
        scripts = self.tab(tab)
        args, selected = scripts.ui_args(values)
        return self._hooks(scripts, args, selected, is_api=False)

    def scripts_list(self) -> dict[str, list[str]]:
        """GET /sdapi/v1/scripts."""
        return {name: [s.name for s in t.scripts if s.name] for name, t in self.tabs.items()}

    def script_info(self) -> list[dict[str, Any]]:
        """GET /sdapi/v1/script-info."""
        out: list[dict[str, Any]] = []
        for tab in self.tabs.values():
            tab.ensure_layout()
            out.extend(s.api_info for s in tab.scripts if s.api_info is not None)
        return out


def _args_of(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value.get("args", []) or [])
    if hasattr(value, "args"):
        return list(value.args or [])
    return list(value or [])
