"""A1111's settings API for extensions (`shared.opts`, `shared.OptionInfo`), mapped onto ours.

`OptionInfo` keeps A1111's constructor and chainable helpers; `OptsView.add_option(key, info)`
turns it into a `modules.core.options.OptionInfo` declaration (Gradio component class -> widget
name, component_args -> choices/min/max/step, section tuple) and registers it, so it shows up
in settings, the API and config.json like a core option. Reads inside a job see that job's
settings (override_settings); writes go to the stored settings.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from modules.core.options import OptionInfo as CoreOptionInfo
from modules.core.options import Options, OptionsRegistry
from modules.extension_host.job_context import CURRENT_P

log = logging.getLogger("extensions")

_COMPONENTS = {
    "slider": "slider",
    "checkbox": "checkbox",
    "dropdown": "dropdown",
    "radio": "radio",
    "textbox": "textbox",
    "textarea": "textbox",
    "number": "number",
    "colorpicker": "color",
    "checkboxgroup": "multiselect",
}


class OptionInfo:
    """A1111's shared.OptionInfo (same arguments, same chainable helpers)."""

    def __init__(
        self,
        default: Any = None,
        label: str = "",
        component: Any = None,
        component_args: Any = None,
        onchange: Callable[[], None] | None = None,
        section: Any = None,
        refresh: Callable[[], None] | None = None,
        comment_before: str = "",
        comment_after: str = "",
        infotext: str | None = None,
        restrict_api: bool = False,
        category_id: str | None = None,
    ):
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.onchange = onchange
        self.section = section
        self.category_id = category_id
        self.refresh = refresh
        self.do_not_save = False
        self.comment_before = comment_before
        self.comment_after = comment_after
        self.infotext = infotext
        self.restrict_api = restrict_api
        self.reload_ui = False
        self.restart = False

    def link(self, label: str, url: str) -> OptionInfo:
        self.comment_before += f"[<a href='{url}' target='_blank'>{label}</a>]"
        return self

    def js(self, label: str, js_func: str) -> OptionInfo:
        self.comment_before += f"[<a onclick='{js_func}(); return false'>{label}</a>]"
        return self

    def info(self, info: str) -> OptionInfo:
        self.comment_after += f"<span class='info'>({info})</span>"
        return self

    def html(self, html: str) -> OptionInfo:
        self.comment_after += html
        return self

    def needs_restart(self) -> OptionInfo:
        self.comment_after += " <span class='info'>(requires restart)</span>"
        self.restart = True
        return self

    def needs_reload_ui(self) -> OptionInfo:
        self.comment_after += " <span class='info'>(requires Reload UI)</span>"
        self.reload_ui = True
        return self


class OptionHTML(OptionInfo):
    """A block of HTML in the settings page, not a setting."""

    def __init__(self, text: str):
        super().__init__(str(text).strip(), label="", component=None)
        self.do_not_save = True


def options_section(section_identifier: Any, options_dict: Mapping[str, OptionInfo]) -> dict[str, OptionInfo]:
    for value in options_dict.values():
        if len(section_identifier) == 2:
            value.section = section_identifier
        else:
            value.section = section_identifier[0:2]
            value.category_id = section_identifier[2]
    return dict(options_dict)


def _component_name(component: Any) -> str:
    if component is None:
        return "auto"
    name = component if isinstance(component, str) else getattr(component, "__name__", type(component).__name__)
    return _COMPONENTS.get(str(name).lower(), "auto")


def _component_args(info: OptionInfo) -> dict[str, Any]:
    args = info.component_args
    if callable(args):
        try:
            args = args()
        except Exception as exc:  # extension code; evaluated again for choices below
            log.warning("component_args of option %r failed: %s", info.label, exc)
            args = None
    return dict(args) if isinstance(args, Mapping) else {}


def to_core(key: str, info: OptionInfo) -> CoreOptionInfo:
    """Our declaration for an A1111 OptionInfo."""
    args = _component_args(info)
    choices: Any = args.get("choices")
    if callable(info.component_args):
        source = info.component_args

        def choices_now() -> list[Any]:
            value = source()
            return list(value.get("choices", []) if isinstance(value, Mapping) else [])

        choices = choices_now if "choices" in args else choices
    elif callable(choices):
        pass
    elif choices is not None:
        choices = [c[0] if isinstance(c, (tuple, list)) else c for c in choices]
    section = tuple(info.section[:2]) if info.section else ("other", "Other")
    return CoreOptionInfo(
        key=key,
        default=info.default,
        label=info.label,
        section=(str(section[0]), str(section[1])),
        component="html" if isinstance(info, OptionHTML) else _component_name(info.component),
        choices=choices,
        minimum=args.get("minimum"),
        maximum=args.get("maximum"),
        step=args.get("step"),
        infotext=info.infotext,
        needs_reload_ui=info.reload_ui,
        needs_restart=info.restart,
        restrict_api=info.restrict_api,
        comment=(info.comment_before + " " + info.comment_after).strip(),
        hidden=isinstance(info, OptionHTML),  # text for the settings page, not a value
    )


def from_core(info: CoreOptionInfo) -> OptionInfo:
    """A1111-style view of one of our declarations (for opts.data_labels)."""
    args: dict[str, Any] = {}
    choices = info.choice_list()
    if choices is not None:
        args["choices"] = choices
    for name in ("minimum", "maximum", "step"):
        if getattr(info, name) is not None:
            args[name] = getattr(info, name)
    out = OptionInfo(info.default, info.label, info.component, args or None, section=info.section)
    out.infotext, out.restrict_api = info.infotext, info.restrict_api
    return out


class _OptsData(MutableMapping[str, Any]):
    """opts.data: every current value (output folders as `opts.<key>` reads them: extensions
    such as infinite-image-browsing read `opts.data` directly); writes validate through Options.set."""

    def __init__(self, options: Options, resolve: Callable[[str, Any], Any]):
        self._options = options
        self._resolve = resolve

    def __getitem__(self, key: str) -> Any:
        return self._resolve(key, self._options.as_dict()[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self._options.set(key, value)

    def __delitem__(self, key: str) -> None:
        raise TypeError("settings cannot be deleted")

    def __iter__(self) -> Iterator[str]:
        return iter(self._options.as_dict())

    def __len__(self) -> int:
        return len(self._options.as_dict())


class OptsView:
    """`shared.opts`.

    Output folders (`outdir_*`) set to a relative path read as the folder images really go to
    (under the data folder): A1111 extensions open them from the web UI's working directory,
    where A1111 kept its outputs (infinite-image-browsing, images browser)."""

    __slots__ = ("_added", "_data_dir", "_options", "_registry")

    def __init__(self, options: Options, registry: OptionsRegistry, data_dir: Path | None = None):
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_registry", registry)
        object.__setattr__(self, "_added", {})
        object.__setattr__(self, "_data_dir", data_dir)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        p = CURRENT_P.get()
        job_opts = getattr(p, "opts", None) if p is not None else None
        if isinstance(job_opts, Mapping) and key in job_opts:
            return self._outdir(key, job_opts[key])
        try:
            return self._outdir(key, self._options.get(key))
        except KeyError:
            raise AttributeError(f"no setting named {key!r}") from None

    def _outdir(self, key: str, value: Any) -> Any:
        if self._data_dir is None or not key.startswith("outdir_") or not isinstance(value, str) or not value:
            return value
        return value if Path(value).is_absolute() else str(self._data_dir / value)

    def __setattr__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def __contains__(self, key: str) -> bool:
        return key in self._registry

    def set(self, key: str, value: Any, is_api: bool = False, run_callbacks: bool = True) -> bool:
        return self._options.set(key, value, from_api=is_api)

    def get_default(self, key: str) -> Any:
        return self._registry[key].default if key in self._registry else None

    def add_option(self, key: str, info: OptionInfo) -> None:
        if key in self._registry and key not in self._added:
            log.info("extension option %r has the name of a core setting; the core one is kept", key)
            return
        self._added[key] = info
        self._registry.add(to_core(key, info))
        if info.onchange is not None:
            self._options.on_change(key, info.onchange)

    def onchange(self, key: str, func: Callable[[], None], call: bool = True) -> None:
        self._options.on_change(key, func)
        if call:
            func()

    def save(self, filename: str | None = None) -> None:
        self._options.save()

    def dumpjson(self) -> str:
        return json.dumps(self._options.as_dict(), default=str)

    def reorder(self) -> None:
        pass

    @property
    def data(self) -> _OptsData:
        return _OptsData(self._options, self._outdir)

    @property
    def data_labels(self) -> dict[str, OptionInfo]:
        out = {k: from_core(v) for k, v in self._registry.options.items()}
        out.update(self._added)
        return out

    @property
    def added_options(self) -> dict[str, OptionInfo]:
        return dict(self._added)


class OptionsTemplates(MutableMapping[str, OptionInfo]):
    """`shared.options_templates`: `.update(options_section(...))` at import time adds options."""

    def __init__(self, opts: OptsView):
        self._opts = opts

    def __getitem__(self, key: str) -> OptionInfo:
        return self._opts.data_labels[key]

    def __setitem__(self, key: str, value: OptionInfo) -> None:
        self._opts.add_option(key, value)

    def __delitem__(self, key: str) -> None:
        raise TypeError("options cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._opts.data_labels)

    def __len__(self) -> int:
        return len(self._opts.data_labels)
