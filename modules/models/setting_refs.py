"""Settings that name a model resolve only to files the model manager listed.

`sd_model_checkpoint`, `sd_refiner_checkpoint` and `sd_vae` (stored settings and a job's
override_settings) are checked against the listings before they are stored or used: a path to
any other file (absolute, relative, an upload's temp file) is refused with the same message
whether that file exists or not, so the check neither loads nor reveals files outside the model
folders.
"""

from __future__ import annotations

from typing import Any

from modules.core.options import OptionError, Options
from modules.models.errors import ModelNotFound
from modules.models.manager import ModelManager
from modules.models.vae import AUTOMATIC, NONE, resolve_vae_choice

NO_MODEL = ("", "None", None)


def _retry_after_refresh(models: ModelManager, key: str, check: Any, value: Any) -> Any:
    """Run `check(value)`; when nothing matches, rescan the folders once (a file just copied in)."""
    try:
        check(value)
    except ModelNotFound:
        models.refresh()
        try:
            check(value)
        except ModelNotFound as exc:
            raise OptionError(f"setting {key!r}: {exc}") from None
    return value


def register_model_references(options: Options, models: ModelManager) -> None:
    """Add the resolvers for the model-naming settings (called by the composition root)."""

    def checkpoint(key: str, allow_none: bool) -> Any:
        def resolve(value: Any) -> Any:
            if value in NO_MODEL and (allow_none or value == ""):
                return value
            return _retry_after_refresh(models, key, lambda v: models.find_checkpoint(str(v)), value)

        return resolve

    def vae(value: Any) -> Any:
        if value in (AUTOMATIC, NONE, "", "auto"):
            return value
        return _retry_after_refresh(
            models, "sd_vae", lambda v: resolve_vae_choice(str(v), None, models.list_vaes()), value
        )

    options.add_resolver("sd_model_checkpoint", checkpoint("sd_model_checkpoint", allow_none=False))
    options.add_resolver("sd_refiner_checkpoint", checkpoint("sd_refiner_checkpoint", allow_none=True))
    options.add_resolver("sd_vae", vae)
