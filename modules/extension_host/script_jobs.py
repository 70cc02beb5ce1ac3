"""Shared by the built-in dropdown scripts that run `process_images` many times in one job
(X/Y/Z plot, Prompt matrix, Prompts from file): a private copy of `p` per run, one progress bar
over all runs, and the grids folder.

Progress: the engine reports each run's batches as job_no 0..n_iter-1 of n_iter; A1111 keeps a
script's `state.job_count` for the whole job instead. `overall_progress` makes the runs inside it
report into one count on the job's real control, so pollers see a single bar.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from modules.core.jobs import JobControl
from modules.extension_host.facade import current
from modules.extension_host.job_context import CURRENT_CONTROL

log = logging.getLogger(__name__)

_OWN = ("_control", "_total", "_done")


def copy_p(p: Any) -> Any:
    """A run's own `p`: the containers a script or the engine changes are copied, not shared."""
    pc = copy.copy(p)
    pc.styles = list(p.styles or [])
    pc.override_settings = dict(p.override_settings or {})
    pc.extra_generation_params = dict(p.extra_generation_params or {})
    pc.comments = dict(p.comments or {})
    return pc


class RunsProgress:
    """The job's control as the engine sees it during one of several runs (everything but the
    batch numbering goes straight to the real control: interrupt, skip, steps, previews)."""

    def __init__(self, control: JobControl, total: int):
        object.__setattr__(self, "_control", control)
        object.__setattr__(self, "_total", max(1, total))
        object.__setattr__(self, "_done", 0)

    def begin_batch(self, job_no: int, job_count: int, steps: int) -> None:
        total = max(self._total, self._done + job_count)
        self._control.begin_batch(self._done + job_no, total, steps)

    def finished_run(self, batches: int) -> None:
        """Call after each run with its batch count (n_iter)."""
        object.__setattr__(self, "_done", self._done + max(0, batches))

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_control"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN:
            object.__setattr__(self, name, value)
        elif name == "job_count":  # a script sizing the job (shared.state.job_count = ...)
            object.__setattr__(self, "_total", max(1, int(value)))
            setattr(self._control, name, value)
        else:
            setattr(self._control, name, value)


@contextmanager
def overall_progress(total_batches: int) -> Iterator[RunsProgress | None]:
    """Inside: runs report progress as parts of `total_batches`. Yields None outside a job."""
    control = CURRENT_CONTROL.get()
    if control is None:
        yield None
        return
    real = control._control if isinstance(control, RunsProgress) else control  # type: ignore[attr-defined]
    progress = RunsProgress(real, total_batches)
    real.job_count, real.job_no = max(1, total_batches), 0
    token = CURRENT_CONTROL.set(cast(JobControl, progress))
    try:
        yield progress
    finally:
        CURRENT_CONTROL.reset(token)


def grids_dir(p: Any, data_dir: str) -> str:
    """`p.outpath_grids`; a relative one is under the data folder, as the engine saves grids."""
    folder = str(getattr(p, "outpath_grids", "") or f"outputs/{getattr(p, 'kind', 'txt2img')}-grids")
    return folder if os.path.isabs(folder) else os.path.join(data_dir, folder)


@contextmanager
def model_restored() -> Iterator[None]:
    """Runs with their own checkpoint/VAE (override_settings) activate that model; put the model
    that was active before (with its VAE) back afterwards, so the job changes no global state."""
    models = current().services.models
    before = models.active
    checkpoint = before.checkpoint if before is not None else None
    vae = before.vae_info.name if before is not None and before.vae_info is not None else "None"
    try:
        yield
    finally:
        if checkpoint is not None:
            try:
                after = models.active
                if after is None or after.checkpoint.filename != checkpoint.filename:
                    after = models.load(checkpoint, vae=None)
                models.set_vae(after, vae)
            except Exception as exc:  # files removed meanwhile: the job's own result still stands
                log.warning("could not make %s (VAE %s) active again: %s", checkpoint.name, vae, exc)
