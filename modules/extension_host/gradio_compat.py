"""Gradio 3/4 calls in extension code, translated to Gradio 6.

A1111 extensions are written for Gradio 3.41: `.click(_js=...)`, `gr.Dropdown.update(...)`,
`gr.Image(source="upload", tool="sketch")`, `.style(full_width=True)`, `gr.Box()`. Two tiers:

- `install_aliases()`: names Gradio 6 lacks (`gr.Box`, `gr.X.update`, `Block.style`,
  `gradio.components.IOComponent`), added while extensions are loaded and removed by the undo it
  returns (also: no .pyi stubs written next to component subclasses made outside Gradio). They are only added where absent, so code written for Gradio 6 (ours) never sees a
  difference; extension event handlers can call `gr.X.update` at any time.
- `gradio3_calls()`: while extension UI code runs (script `ui()`, on_ui_tabs, component callbacks)
  and in the event handlers it registers (request time), constructors and event listeners accept
  Gradio 3 keywords: known ones are renamed (`_js` -> `js`, `source` -> `sources`), the rest that
  Gradio 6 no longer has are dropped with a log line. Outside, the classes are Gradio's own.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

log = logging.getLogger(__name__)

_LOCK = threading.RLock()
_ACTIVE: ContextVar[bool] = ContextVar("gradio3_calls", default=False)
_state: dict[str, Any] = {"depth": 0, "undo": []}
_WRAPPED: dict[Callable[..., Any], Callable[..., Any]] = {}  # Gradio's listener -> its wrapper

# Gradio 3 names for keywords Gradio 6 spells differently (constructor, .style() and update()).
_RENAMED = {"_js": "js", "grid": "columns", "source": "sources"}
# Gradio 3 positional parameters (after the value/choices ones Gradio 6 still takes by position).
_GRADIO3_POSITIONAL = {
    "Dropdown": ("choices", "value", "type", "multiselect"),
    "Radio": ("choices", "value", "type"),
    "CheckboxGroup": ("choices", "value", "type"),
    "Textbox": ("value", "lines", "max_lines", "placeholder", "label"),
    "Slider": ("minimum", "maximum", "value", "step"),
    "Checkbox": ("value", "label"),
    "Button": ("value", "variant"),
    "Number": ("value", "label"),
    "Image": ("value", "shape", "height", "width", "image_mode", "invert_colors", "source", "tool"),
}
_EVENT_POSITIONAL = ("fn", "inputs", "outputs", "api_name", "status_tracker", "scroll_to_output", "show_progress")


# --- translation of arguments ------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _accepted(cls: type) -> set[str] | None:
    """Keyword names `cls(...)` accepts; None when it takes **kwargs all the way down."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params: list[inspect.Parameter] = []
        while init is not None:  # `@wraps(gr.Checkbox.__init__)` hides the wrapper's own keywords
            params = list(inspect.signature(init, follow_wrapped=False).parameters.values())
            names.update(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
            init = getattr(init, "__wrapped__", None)
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None


def _value_of(key: str, value: Any, event: bool) -> Any:
    if key == "sources" and isinstance(value, str):
        return [value] if value in ("upload", "webcam", "clipboard", "microphone") else None
    if key == "columns" and isinstance(value, (list, tuple)):
        return value[-1] if value else None
    if event and key == "show_progress" and isinstance(value, bool):
        return "full" if value else "hidden"
    return value


def translate_kwargs(
    owner: str, accepted: set[str] | None, kwargs: dict[str, Any], *, event: bool = False
) -> dict[str, Any]:
    """Rename Gradio 3 keywords and drop those `accepted` lacks (logged, naming `owner`)."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        new = _RENAMED.get(key, key)
        if accepted is not None and new not in accepted:
            if key == "full_width" and "scale" in accepted and value:
                out.setdefault("scale", 1)
                continue
            log.info("Gradio 3 argument %s=%r of %s is not in Gradio 6; ignored", key, value, owner)
            continue
        new_value = _value_of(new, value, event)
        if new_value is not None or value is None:
            out[new] = new_value
    return out


def _constructor_args(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict]:
    accepted = _accepted(cls)
    positional = _positional_count(cls)
    if positional is not None and len(args) > positional:
        base = next((k.__name__ for k in cls.__mro__ if k.__name__ in _GRADIO3_POSITIONAL), None)
        names = _GRADIO3_POSITIONAL.get(base or "", ())
        extra = dict(zip(names[positional:], args[positional:], strict=False))
        args, kwargs = args[:positional], {**extra, **kwargs}
    return args, translate_kwargs(cls.__name__, accepted, kwargs)


@functools.lru_cache(maxsize=1024)
def _positional_count(cls: type) -> int | None:
    init = cls.__init__  # type: ignore[misc]
    params = list(inspect.signature(init).parameters.values())[1:]
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return None
    return sum(1 for p in params if p.kind == p.POSITIONAL_OR_KEYWORD)


def _event_args(args: tuple[Any, ...], kwargs: dict[str, Any], accepted: set[str]) -> tuple[tuple, dict]:
    if len(args) > 3:  # Gradio 3 took api_name, status_tracker, ... by position
        kwargs = {**dict(zip(_EVENT_POSITIONAL[3:], args[3:], strict=False)), **kwargs}
        args = args[:3]
    if kwargs.get("api_name") is False or kwargs.pop("show_api", True) is False:
        kwargs["api_name"] = None
        kwargs["api_visibility"] = "undocumented"
    return args, translate_kwargs("event listener", accepted, kwargs, event=True)


def update(**kwargs: Any) -> dict[str, Any]:
    """Gradio 3's `gr.Component.update(...)`: a Gradio 6 `gr.update(...)` dict."""
    import gradio as gr

    return gr.update(**translate_kwargs("update()", None, kwargs))  # type: ignore[no-any-return]


def style(self: Any, **kwargs: Any) -> Any:
    """Gradio 3's `.style(...)`: sets what Gradio 6 has as constructor arguments; returns self."""
    cls: type = type(self)
    accepted = _accepted(cls) or set()
    for key, value in translate_kwargs(f"{cls.__name__}.style()", accepted, kwargs).items():
        setattr(self, key, value)
    return self


def gradio_base(cls: type) -> type:
    """The nearest class in `cls`'s MRO that Gradio itself defines (the front-end component)."""
    return next(k for k in cls.__mro__ if k.__module__.split(".")[0] == "gradio")


def keep_gradio_identity(block: Any) -> None:
    """A subclass made outside Gradio (A1111 style: `class ToolButton(gr.Button)` with
    `__init__(self, **kwargs)`) still renders as its Gradio component with all its props:
    Gradio 6 names the front-end component after the class and reads the props from the
    class's `__init__` signature, which such subclasses hide."""
    from gradio.blocks import Block

    cls = type(block)
    base = gradio_base(cls)
    if base is cls:
        return
    if cls.get_block_name is Block.get_block_name:
        name = base.__name__.lower()
        block.get_block_name = lambda: name
    params = inspect.signature(cls.__init__).parameters.values()  # type: ignore[misc]
    if any(p.kind == p.VAR_KEYWORD for p in params) and "get_config" not in vars(block):
        own = block.get_config
        block.get_config = lambda: with_gradio_props(block, own())


def with_gradio_props(block: Any, config: dict[str, Any]) -> dict[str, Any]:
    """`config` plus the props of `block`'s Gradio component (read by Gradio's own serializer
    against that component's `__init__` signature)."""
    from gradio.blocks import Block

    return {**Block.get_config(block, gradio_base(type(block))), **config}


# --- the aliases (while extensions are loaded) -------------------------------------------------


def _set_absent(owner: Any, name: str, value: Any, undo: list[Callable[[], None]]) -> None:
    if name in vars(owner) or hasattr(owner, name):
        return
    setattr(owner, name, value)
    undo.append(lambda: delattr(owner, name) if name in vars(owner) else None)


def install_aliases() -> Callable[[], None]:
    """Add the Gradio 3 names that Gradio 6 lacks; returns the function that removes them."""
    import gradio as gr
    import gradio.components as components
    from gradio.blocks import Block, BlockContext
    from gradio.components.base import Component

    undo: list[Callable[[], None]] = []
    _set_absent(gr, "Box", gr.Group, undo)
    _set_absent(gr, "Variable", gr.State, undo)
    _set_absent(components, "IOComponent", Component, undo)
    _set_absent(components, "Box", gr.Group, undo)
    for owner in (Component, BlockContext):
        _set_absent(owner, "update", staticmethod(update), undo)
    _set_absent(Block, "style", style, undo)
    _no_stub_files_for_extensions(undo)

    def remove() -> None:
        for step in reversed(undo):
            step()

    return remove


def _no_stub_files_for_extensions(undo: list[Callable[[], None]]) -> None:
    """Gradio writes a .pyi stub next to the source of each component subclass it sees defined;
    A1111 turned that off, and extension folders (and ours) must not gain files at start."""
    from gradio import component_meta

    original = component_meta.create_or_modify_pyi

    def create_or_modify_pyi(component_class: type, *args: Any, **kwargs: Any) -> None:
        if component_class.__module__.split(".")[0] == "gradio":
            original(component_class, *args, **kwargs)

    component_meta.create_or_modify_pyi = create_or_modify_pyi
    undo.append(functools.partial(setattr, component_meta, "create_or_modify_pyi", original))


# --- keyword translation while extension UI code runs ------------------------------------------


def _all_block_classes() -> list[type]:
    from gradio.blocks import Block

    seen: list[type] = []
    stack = [Block]
    while stack:
        cls = stack.pop()
        if cls not in seen:
            seen.append(cls)
            stack.extend(cls.__subclasses__())
    return seen


def _wrap_listener(listener: Callable[..., Any]) -> Callable[..., Any]:
    accepted = set(inspect.signature(listener).parameters) - {"block"}

    @functools.wraps(listener)
    def event_trigger(block: Any, *args: Any, **kwargs: Any) -> Any:
        if not _ACTIVE.get():  # our own code in another thread while extension code runs
            return listener(block, *args, **kwargs)
        args, kwargs = _event_args(args, kwargs, accepted)
        if args and callable(args[0]):
            args = (_handler_in_gradio3_calls(args[0]), *args[1:])
        elif callable(kwargs.get("fn")):
            kwargs["fn"] = _handler_in_gradio3_calls(kwargs["fn"])
        dependency = listener(block, *args, **kwargs)
        _wrap_dependency(dependency)
        return dependency

    event_trigger.__gradio3_compat__ = True  # type: ignore[attr-defined]
    return event_trigger


def _wrap_dependency(dependency: Any) -> None:
    """`.then(_js=...)` / `.success(...)` on what a listener returned (partials per instance)."""
    for name in ("then", "success", "failure"):
        chained = getattr(dependency, name, None)
        if isinstance(chained, functools.partial) and not getattr(chained.func, "__gradio3_compat__", False):
            setattr(dependency, name, functools.partial(_wrap_listener(chained.func), *chained.args))


def _patch_classes(undo: list[Callable[[], None]]) -> None:
    from gradio.blocks_events import BlocksMeta
    from gradio.component_meta import ComponentMeta

    for meta in (ComponentMeta, BlocksMeta):
        original_call = meta.__dict__.get("__call__")

        def call(cls: type, *args: Any, _next: Any = original_call or type.__call__, **kwargs: Any) -> Any:
            if not _ACTIVE.get():  # our own code in another thread while extension code runs
                return _next(cls, *args, **kwargs)
            args, kwargs = _constructor_args(cls, args, kwargs)
            _file_independent_class_id(cls)
            block = _next(cls, *args, **kwargs)
            keep_gradio_identity(block)
            return block

        meta.__call__ = call  # type: ignore[method-assign,assignment]
        undo.append(functools.partial(_restore, meta, "__call__", original_call))
    for cls in _all_block_classes():
        for name, value in list(vars(cls).items()):
            if callable(value) and getattr(value, "__name__", "") == "event_trigger":
                if value not in _WRAPPED:
                    _WRAPPED[value] = _wrap_listener(value)
                setattr(cls, name, _WRAPPED[value])
                undo.append(functools.partial(setattr, cls, name, value))


def _file_independent_class_id(cls: type) -> None:
    """Gradio ids a component class by its source file and fails (TypeError) when its
    `__module__` names no loaded file: extensions set `Impl.__module__ = "modules.ui_components"`
    (Forge's Gradio 4 trick), and that module may not be imported. Such a class (the extension's
    own, never Gradio's) gets an id from its name and module instead."""
    if "get_component_class_id" in vars(cls) or gradio_base(cls) is cls:
        return
    try:
        inspect.getfile(cls)
    except TypeError:

        def class_id(klass: type) -> str:
            return hashlib.sha256(f"{klass.__name__}_{klass.__module__}".encode()).hexdigest()

        cls.get_component_class_id = classmethod(class_id)  # type: ignore[attr-defined]


def _restore(owner: Any, name: str, original: Any) -> None:
    if original is None:
        delattr(owner, name)
    else:
        setattr(owner, name, original)


@contextmanager
def gradio3_calls() -> Iterator[None]:
    """Run extension code with Gradio 3 keywords accepted (reentrant, any thread). The classes are
    patched while any thread is inside; the translation applies only in this context (a
    ContextVar), so our own code running meanwhile in another thread sees Gradio as it is."""
    token = _ACTIVE.set(True)
    with _LOCK:
        if _state["depth"] == 0:
            undo: list[Callable[[], None]] = []
            _patch_classes(undo)
            _state["undo"] = undo
        _state["depth"] += 1
    try:
        yield
    finally:
        _ACTIVE.reset(token)
        with _LOCK:
            _state["depth"] -= 1
            if _state["depth"] == 0:
                for step in reversed(_state["undo"]):
                    step()
                _state["undo"] = []


def _handler_in_gradio3_calls(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An extension's event handler run with Gradio 3 keywords accepted at request time (it may
    answer with `gr.Image(source=..., tool=...)` as an update). Generators step by step (each
    step may run in another worker thread), coroutines in their task; Gradio reads the kind of
    function and its signature (gr.Request, SelectData parameters), so both are kept."""
    if getattr(fn, "__gradio3_handler__", False) or inspect.isasyncgenfunction(fn):
        return fn
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            with gradio3_calls():
                return await fn(*args, **kwargs)

        wrapped: Callable[..., Any] = run_async
    elif inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def run_steps(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with gradio3_calls():
                steps = fn(*args, **kwargs)
            while True:
                with gradio3_calls():
                    try:
                        item = next(steps)
                    except StopIteration:
                        return
                yield item

        wrapped = run_steps
    else:

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with gradio3_calls():
                return fn(*args, **kwargs)

        wrapped = run
    wrapped.__gradio3_handler__ = True  # type: ignore[attr-defined]
    return wrapped


def in_gradio3_calls(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` run inside `gradio3_calls()` (for extension callbacks the host calls)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with gradio3_calls():
            return fn(*args, **kwargs)

    return run
