"""Settings: each option declared once as data; persistence, validation and views derive from it.

`OptionInfo` is the declaration. `OptionsRegistry` holds declarations (core ones from
`modules.core.shared_options`, more from extensions through `add_option`). `Options` is the
persisted store (config.json, atomic writes, corrupt files moved aside, unknown keys kept).
`Options.view(overrides)` gives a read-only snapshot for one request: per-request
override_settings never touch the stored values.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ChoicesType = Sequence[Any] | Callable[[], Sequence[Any]] | None
# value -> the value to store, or OptionError: for settings whose valid values are only known at
# run time (model references: a listed checkpoint or VAE, never a path to some other file)
Resolver = Callable[[Any], Any]


@dataclass(frozen=True)
class OptionInfo:
    """Declaration of one setting. `component` names the UI widget kind."""

    key: str
    default: Any
    label: str
    section: tuple[str, str] = ("other", "Other")
    component: str = "auto"  # auto|checkbox|slider|number|textbox|dropdown|radio|multiselect|color
    choices: ChoicesType = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    infotext: str | None = None
    needs_reload_ui: bool = False
    needs_restart: bool = False
    restrict_api: bool = False
    comment: str = ""
    hidden: bool = False
    resolver: Resolver | None = None  # set by the composition root (OptionsRegistry.add_resolver)

    def choice_list(self) -> list[Any] | None:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)


class OptionError(ValueError):
    """A value that does not fit its option; the message names the key and what is allowed."""


class SettingsNotSaved(OSError):
    """config.json could not be written (full or read-only disk): the running settings are those
    of the last successful write, so what runs is what a restart would load."""


@dataclass
class OptionsRegistry:
    options: dict[str, OptionInfo] = field(default_factory=dict)

    def add(self, info: OptionInfo) -> None:
        self.options[info.key] = info

    def extend(self, infos: Sequence[OptionInfo]) -> None:
        for info in infos:
            self.add(info)

    def add_resolver(self, key: str, resolver: Resolver) -> None:
        """Check `key`'s values with `resolver` too, wherever they are validated (coerce_value)."""
        self.options[key] = replace(self.options[key], resolver=resolver)

    def __contains__(self, key: object) -> bool:
        return key in self.options

    def __getitem__(self, key: str) -> OptionInfo:
        return self.options[key]

    def by_infotext(self) -> dict[str, OptionInfo]:
        return {o.infotext: o for o in self.options.values() if o.infotext}

    def sections(self) -> dict[tuple[str, str], list[OptionInfo]]:
        out: dict[tuple[str, str], list[OptionInfo]] = {}
        for info in self.options.values():
            out.setdefault(info.section, []).append(info)
        return out


def coerce_value(info: OptionInfo, value: Any, check_choices: bool = True) -> Any:
    """Cast `value` to the type of the option's default, or raise OptionError."""
    default = info.default
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    value = True
                elif value.lower() in ("false", "0", "no", "off"):
                    value = False
                else:
                    raise ValueError(value)
            elif not isinstance(value, (bool, int)):
                raise ValueError(value)
            value = bool(value)
        elif isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            value = int(value)
        elif isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError(value)
            value = float(value)
        elif isinstance(default, str):
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(value)
            value = str(value)
        elif isinstance(default, list):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise ValueError(value)
            value = list(value)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"setting {info.key!r} expects {type(default).__name__}, got {value!r}") from exc
    if info.minimum is not None and isinstance(value, (int, float)) and value < info.minimum:
        raise OptionError(f"setting {info.key!r} must be >= {info.minimum}, got {value}")
    if info.maximum is not None and isinstance(value, (int, float)) and value > info.maximum:
        raise OptionError(f"setting {info.key!r} must be <= {info.maximum}, got {value}")
    choices = info.choice_list() if check_choices else None
    if choices is not None and info.component in ("dropdown", "radio") and value not in choices:
        raise OptionError(f"setting {info.key!r} must be one of {choices}, got {value!r}")
    if choices is not None and info.component == "multiselect":
        bad = [v for v in value if v not in choices]
        if bad:
            raise OptionError(f"setting {info.key!r}: unknown entries {bad}; allowed {choices}")
    if check_choices and info.resolver is not None:
        value = info.resolver(value)
    return value


class OptionsView(Mapping[str, Any]):
    """Read-only settings for one job: stored values with that job's overrides on top."""

    def __init__(self, base: Mapping[str, Any], overrides: Mapping[str, Any]):
        self._base = dict(base)
        self._overrides = dict(overrides)

    def __getitem__(self, key: str) -> Any:
        if key in self._overrides:
            return self._overrides[key]
        return self._base[key]

    def __iter__(self) -> Iterator[str]:
        return iter({**self._base, **self._overrides})

    def __len__(self) -> int:
        return len({**self._base, **self._overrides})

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    @property
    def overrides(self) -> dict[str, Any]:
        return dict(self._overrides)


class Options:
    """The stored settings (config.json). Thread-safe; writes are atomic."""

    def __init__(self, registry: OptionsRegistry, path: Path | None):
        self.registry = registry
        self.path = path
        self._data: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        self.replaced: dict[str, str] = {}  # key -> why the stored value was replaced by the default
        self._saved: dict[str, Any] = {}  # what config.json holds (last load or successful write)

    # --- reading -------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        with self._lock:
            if key in self._data:
                return self._data[key]
        if key in self.registry:
            return self.registry[key].default
        raise KeyError(f"unknown setting {key!r}")

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def as_dict(self) -> dict[str, Any]:
        """Every registered option with its current value, plus unknown keys kept from disk."""
        with self._lock:
            out = {k: info.default for k, info in self.registry.options.items()}
            out.update(self._data)
            return out

    def view(self, overrides: Mapping[str, Any] | None = None) -> OptionsView:
        """Snapshot for one job; overrides are validated but never stored."""
        checked = {}
        for key, value in (overrides or {}).items():
            if key not in self.registry:
                raise OptionError(f"unknown setting {key!r} in override_settings")
            checked[key] = self.validate(key, value)
        return OptionsView(self.as_dict(), checked)

    # --- validation ----------------------------------------------------------------------
    def add_resolver(self, key: str, resolver: Resolver) -> None:
        """Check `key`'s values with `resolver` too (set, override_settings, stored values)."""
        self.registry.add_resolver(key, resolver)

    def validate(self, key: str, value: Any) -> Any:
        """The value as it would be stored, or OptionError (type, range, choices, resolver)."""
        if key not in self.registry:
            raise OptionError(f"unknown setting {key!r}")
        return coerce_value(self.registry[key], value)

    def check_stored(self) -> dict[str, str]:
        """Replace stored values that are no longer valid (an older config.json, a deleted model)
        by the default, with a warning; call once everything the resolvers need exists.
        Returns (and keeps in `replaced`) key -> reason. The file is left as it is."""
        with self._lock:
            stored = dict(self._data)
        for key, value in stored.items():
            if key not in self.registry:
                continue
            try:
                self.validate(key, value)
            except OptionError as exc:
                log.warning(
                    "stored setting %s=%r is not valid (%s); using the default %r",
                    key,
                    value,
                    exc,
                    self.registry[key].default,
                )
                self.replaced[key] = str(exc)
                with self._lock:
                    self._data.pop(key, None)
                    self._saved.pop(key, None)  # a failed save must not bring it back
        return dict(self.replaced)

    # --- writing -------------------------------------------------------------------------
    def set(self, key: str, value: Any, *, from_api: bool = False) -> bool:
        """Validate and set; returns False when unchanged or refused for the API."""
        if key not in self.registry:
            raise OptionError(f"unknown setting {key!r}")
        info = self.registry[key]
        if from_api and info.restrict_api:
            return False
        value = self.validate(key, value)
        with self._lock:
            old = self.get(key)
            if old == value:
                return False
            self._data[key] = value
        for listener in self._listeners.get(key, []):
            listener()
        return True

    def update(self, values: Mapping[str, Any], *, from_api: bool = False) -> list[str]:
        """Validate every value, write config.json with them, then make them the running values.

        All or nothing: an invalid value (OptionError) or a failed write (OSError, e.g. a full
        disk) changes neither the file nor the running settings. Returns the changed keys;
        with `from_api`, `restrict_api` settings are left out (as `set` does)."""
        checked = {
            key: self.validate(key, value)
            for key, value in values.items()
            if not (from_api and key in self.registry and self.registry[key].restrict_api)
        }
        with self._lock:
            changed = [key for key, value in checked.items() if self.get(key) != value]
            if not changed:
                return []
            data = {**self._data, **{key: checked[key] for key in changed}}
            self._write(data)
            self._data = data
        for key in changed:
            for listener in self._listeners.get(key, []):
                listener()
        return changed

    def on_change(self, key: str, callback: Callable[[], None]) -> None:
        self._listeners.setdefault(key, []).append(callback)

    def load(self) -> None:
        """Read config.json; a corrupt file is moved aside and defaults are used."""
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("top level is not an object")
        except (OSError, ValueError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            log.warning("settings file %s is unreadable (%s); moved to %s, using defaults", self.path, exc, aside)
            return
        loaded: dict[str, Any] = {}
        for key, value in data.items():
            if key in self.registry:
                try:
                    value = coerce_value(self.registry[key], value, check_choices=False)
                except OptionError as exc:
                    log.warning("ignoring stored value: %s", exc)
                    continue
            loaded[key] = value  # unknown keys kept (an extension not loaded now may own them)
        with self._lock:
            self._data = loaded
            self._saved = dict(loaded)

    def save(self) -> None:
        """Write config.json. When the write fails, values set since the last successful write
        are rolled back (SettingsNotSaved): the running settings never differ from the file's."""
        if self.path is None:
            return
        with self._lock:
            try:
                self._write(self._data)
                return
            except SettingsNotSaved as exc:
                failure = exc
                rolled_back = [k for k in {**self._data, **self._saved} if self._data.get(k) != self._saved.get(k)]
                self._data = dict(self._saved)
        for key in rolled_back:
            for listener in self._listeners.get(key, []):
                listener()
        raise failure

    def _write(self, data: dict[str, Any]) -> None:
        """Write `data` to config.json atomically (caller holds the lock); remember it as saved."""
        if self.path is not None:
            try:
                atomic_write_text(self.path, json.dumps(data, indent=4, ensure_ascii=False))
            except OSError as exc:
                raise SettingsNotSaved(
                    f"settings unchanged: writing {self.path.name} failed ({exc.strerror or exc})"
                ) from exc
        self._saved = dict(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder + fsync + rename: a crash leaves old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
