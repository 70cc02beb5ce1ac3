"""A1111 runtime objects as views onto our services: shared.state, shared.cmd_opts, shared.sd_model.

`shared.state` is per job: while extension code runs for a job it is that job's JobControl;
elsewhere it is the job the queue is running, and with no job an idle state whose
interrupt()/skip() do nothing (A1111 had one global state for everyone).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from modules.core.cmd_args import is_non_local
from modules.core.jobs import Job, JobControl
from modules.extension_host.job_context import CURRENT_CONTROL
from modules.generation.ldm_model import sd_model_for

_EXTRA_PREFIX = "a1111_"


class StateView:
    """`shared.state` (A1111's modules.shared_state.State surface)."""

    __slots__ = ("_current_job",)

    def __init__(self, current_job: Callable[[], Job | None]):
        object.__setattr__(self, "_current_job", current_job)

    def _job(self) -> tuple[JobControl | None, str]:
        control = CURRENT_CONTROL.get()
        job = self._current_job()
        if control is None and job is not None:
            control = job.control
        job_id = job.id if job is not None and job.control is control else ""
        return control, job_id

    # --- read ----------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        control, job_id = self._job()
        if control is None:
            return _IDLE.get(name)
        getters: dict[str, Callable[[], Any]] = {
            "interrupted": control.interrupted.is_set,
            "skipped": control.skipped.is_set,
            "stopping_generation": control.stopping_after_current.is_set,
            "job": lambda: job_id,
            "job_no": lambda: control.job_no,
            "job_count": lambda: control.job_count,
            "sampling_step": lambda: control.sampling_step,
            "sampling_steps": lambda: control.sampling_steps,
            "textinfo": lambda: control.textinfo,
            "current_image": lambda: control.preview,
            "id_live_preview": lambda: control.preview_id,
            "time_start": lambda: control.started_at,
        }
        if name in getters:
            return getters[name]()
        return getattr(control, _EXTRA_PREFIX + name, _IDLE.get(name))

    def __setattr__(self, name: str, value: Any) -> None:
        control, _ = self._job()
        if control is None:
            return  # no job: nothing to report progress on
        if name in ("job_no", "job_count", "sampling_step", "sampling_steps", "textinfo"):
            setattr(control, name, value)
        elif name == "interrupted" and value:
            control.interrupt()
        elif name == "skipped" and value:
            control.skip()
        else:
            setattr(control, _EXTRA_PREFIX + name, value)

    # --- A1111 methods ----------------------------------------------------------------------
    def interrupt(self) -> None:
        control, _ = self._job()
        if control is not None:
            control.interrupt()

    def skip(self) -> None:
        control, _ = self._job()
        if control is not None:
            control.skip()

    def stop_generating(self) -> None:
        control, _ = self._job()
        if control is not None:
            control.stop_after_current()

    def nextjob(self) -> None:
        control, _ = self._job()
        if control is not None:
            control.job_no += 1
            control.sampling_step = 0

    def begin(self, job: str = "(unknown)") -> None:
        pass  # jobs begin in the queue

    def end(self) -> None:
        pass

    def set_current_image(self) -> None:
        pass  # previews are produced by the sampler loop

    def assign_current_image(self, image: Any) -> None:
        control, _ = self._job()
        if control is not None:
            control.set_preview(image)

    def do_set_current_image(self) -> None:
        pass

    def dict(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in (
                "skipped",
                "interrupted",
                "stopping_generation",
                "job",
                "job_count",
                "job_timestamp",
                "job_no",
                "sampling_step",
                "sampling_steps",
            )
        }


_IDLE: dict[str, Any] = {
    "interrupted": False,
    "skipped": False,
    "stopping_generation": False,
    "job": "",
    "job_no": 0,
    "job_count": 0,
    "job_timestamp": "0",
    "sampling_step": 0,
    "sampling_steps": 0,
    "current_latent": None,
    "current_image": None,
    "current_image_sampling_step": 0,
    "id_live_preview": 0,
    "textinfo": None,
    "time_start": None,
    "server_start": time.time(),
    "processing_has_refined_job_count": False,
    "server_command": None,
}


class CmdOptsView:
    """`shared.cmd_opts`: the parsed flags (incl. preload.py ones) plus A1111's derived two.

    Folder flags left empty on the command line read as the folder in use (A1111 fills their
    defaults, e.g. `cmd_opts.lora_dir` is models/Lora): `defaults(flag)` gives it."""

    __slots__ = ("_args", "_defaults")

    def __init__(self, args: argparse.Namespace, defaults: Callable[[str], Any] | None = None):
        object.__setattr__(self, "_args", args)
        object.__setattr__(self, "_defaults", defaults or (lambda flag: None))

    def __getattr__(self, name: str) -> Any:
        if name == "webui_is_non_local":
            return is_non_local(self._args)
        if name == "disable_extension_access":
            return is_non_local(self._args) and not getattr(self._args, "enable_insecure_extension_access", False)
        value = getattr(self._args, name, None)
        if value is None:
            value = self._defaults(name)
        if value is None and not hasattr(self._args, name):
            raise AttributeError(f"no command-line flag {name!r}")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._args, name, value)

    def __contains__(self, name: str) -> bool:
        return hasattr(self._args, name) or self._defaults(name) is not None

    def __repr__(self) -> str:
        return f"cmd_opts({vars(self._args)!r})"


class CheckpointInfoView:
    """A1111's CheckpointInfo over ours (filename as str, name_for_extra, shorthash...)."""

    def __init__(self, info: Any):
        self._info = info

    def __getattr__(self, name: str) -> Any:
        return getattr(self._info, name)

    @property
    def filename(self) -> str:
        return str(self._info.filename)

    @property
    def name(self) -> str:
        return str(self._info.name)

    @property
    def hash(self) -> str | None:
        return self._info.legacy_hash

    @property
    def model_name(self) -> str:
        return str(self._info.model_name)

    @property
    def ids(self) -> list[str]:
        return list(self._info.aliases)


# A1111 model attributes served by the ldm/sgm model object (generation runs through its
# model.diffusion_model and first_stage_model, so what extensions patch there takes effect)
LDM_ATTRIBUTES = frozenset(
    {
        "model",
        "first_stage_model",
        "cond_stage_model",
        "conditioner",
        "get_learned_conditioning",
        "decode_first_stage",
        "encode_first_stage",
        "get_first_stage_encoding",
        "apply_model",
        "parameterization",
        "scale_factor",
        "num_timesteps",
        "conditioning_key",
        "cond_stage_key",
    }
)


class SdModelView:
    """`shared.sd_model` / `p.sd_model`: the loaded model with A1111's attribute names.

    `settings` gives the current settings (clip skip, emphasis) for get_learned_conditioning."""

    def __init__(self, loaded: Any, settings: Callable[[], Mapping[str, Any]] = dict):
        self._loaded = loaded
        self._settings = settings

    def __getattr__(self, name: str) -> Any:
        if name in LDM_ATTRIBUTES or name in vars(self.ldm):
            return getattr(self.ldm, name)
        return getattr(self._loaded, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # `shared.sd_model.apply_model = hijack` (Tiled Diffusion) must outlive this view object:
        # it lands on the model object generation consults
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.ldm, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self.ldm, name)

    @property
    def ldm(self) -> Any:
        """The model as ldm's LatentDiffusion (sgm's DiffusionEngine for SDXL)."""
        return sd_model_for(self._loaded, self._settings)

    @property
    def loaded_model(self) -> Any:
        return self._loaded

    @property
    def sd_checkpoint_info(self) -> CheckpointInfoView:
        return CheckpointInfoView(self._loaded.checkpoint)

    @property
    def sd_model_hash(self) -> str | None:
        return self._loaded.checkpoint.shorthash

    @property
    def sd_model_checkpoint(self) -> str:
        return str(Path(self._loaded.checkpoint.filename))

    @property
    def is_sdxl(self) -> bool:
        return bool(self._loaded.is_sdxl)

    @property
    def is_sd1(self) -> bool:
        return getattr(self._loaded.family, "value", "").startswith("sd1")

    @property
    def is_sd2(self) -> bool:
        return getattr(self._loaded.family, "value", "").startswith("sd2")

    @property
    def is_sd3(self) -> bool:
        return False

    @property
    def is_ssd(self) -> bool:
        return False
