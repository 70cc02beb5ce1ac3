"""Changing global settings and the loaded checkpoint: one path for the Settings tab, the
quicksettings row and `POST /sdapi/v1/options`.

Every change is validated, then checked against the access policy as a whole (a refused change
stores nothing), then a new checkpoint is loaded in the job queue and stored only once it loaded,
then the other values are stored and config.json is written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modules.access.policy import AccessPolicy, Caller
from modules.core.jobs import Job
from modules.core.options import OptionError, Options
from modules.models.checkpoints import CheckpointInfo
from modules.models.errors import ModelError
from modules.models.manager import ModelManager
from modules.workflows.runner import JobKind, JobRunner

CHECKPOINT = "sd_model_checkpoint"


@dataclass
class SettingsChange:
    """A checked change: the values to store, per-key validation errors, the checkpoint to load."""

    caller: Caller
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    checkpoint: CheckpointInfo | None = None


@dataclass
class ApplyResult:
    changed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    needs_reload_ui: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)


class SettingsService:
    def __init__(
        self,
        options: Options,
        models: ModelManager,
        runner: JobRunner,
        access: AccessPolicy,
        *,
        load_models: bool = True,
    ):
        self.options = options
        self.models = models
        self.runner = runner
        self.access = access
        # False on a scale-out front end: the workers load checkpoints, this process only stores the choice
        self.load_models = load_models

    def prepare(
        self, caller: Caller, values: Mapping[str, Any], *, from_api: bool = False, strict: bool = False
    ) -> SettingsChange:
        """Validate `values` (None = unchanged), keep those that differ, and check the caller may
        change them all (`AccessDenied` otherwise). `strict`: the first invalid value raises
        (the API); else invalid values are reported per key and the rest goes on (the Settings tab).
        `from_api`: settings marked restrict_api are skipped (a client cannot lift its own limits)."""
        change = SettingsChange(caller)
        registry = self.options.registry
        if from_api:  # a client who may change nothing hears that before any validation
            self.access.require_settings_access(caller)
        for key, value in values.items():
            if value is None or (from_api and key in registry and registry[key].restrict_api):
                continue
            try:
                coerced = self.options.validate(key, value)  # type, range, choices, listed models only
                if key == CHECKPOINT and coerced:
                    change.checkpoint = self.models.find_checkpoint(str(coerced))  # unknown: ModelNotFound
                    coerced = change.checkpoint.title
            except (OptionError, ModelError) as exc:
                if strict:
                    raise
                change.errors[key] = str(exc)
                continue
            if coerced != self.options.get(key):
                change.values[key] = coerced
        if change.checkpoint is not None and CHECKPOINT not in change.values:
            change.checkpoint = None
        self.access.check_settings_change(caller, change.values, "settings")
        return change

    def load_checkpoint(self, change: SettingsChange) -> Job | None:
        """Queue the checkpoint load of a prepared change (None: no checkpoint to load). The job
        loads first and stores `sd_model_checkpoint` only after the model loaded."""
        info = change.checkpoint
        if info is None:
            return None
        return self.runner.submit(change.caller, JobKind.LOAD_MODEL, lambda _: self._load_and_store(info))

    def _load_and_store(self, info: CheckpointInfo) -> str:
        if not self.load_models:
            self.options.update({CHECKPOINT: info.title})
            return str(info.title)
        loaded = self.models.load(info)
        self.options.update({CHECKPOINT: loaded.checkpoint.title})  # the title with its hash once known
        return str(loaded.checkpoint.title)

    def store(self, change: SettingsChange) -> ApplyResult:
        """Store the prepared values other than the checkpoint (load_checkpoint stores that one).
        All or nothing: a failed write (OSError) leaves the file and the running values as they were."""
        values = {k: v for k, v in change.values.items() if not (k == CHECKPOINT and change.checkpoint is not None)}
        result = ApplyResult(changed=self.options.update(values), errors=dict(change.errors))
        for key in result.changed:
            info = self.options.registry[key]
            if info.needs_reload_ui:
                result.needs_reload_ui.append(info.label)
            if info.needs_restart:
                result.needs_restart.append(info.label)
        if change.checkpoint is not None:
            result.changed.append(CHECKPOINT)
        return result

    def apply(self, caller: Caller, values: Mapping[str, Any]) -> ApplyResult:
        """The Settings tab in one call: prepare, load a new checkpoint (waiting for it), store."""
        change = self.prepare(caller, values)
        job = self.load_checkpoint(change)
        if job is not None:
            job.wait()
        try:
            return self.store(change)
        except OSError as exc:
            errors = {**change.errors, "config.json": str(exc)}  # SettingsNotSaved says why
            return ApplyResult(errors=errors)
