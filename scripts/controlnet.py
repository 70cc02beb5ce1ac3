"""Built-in ControlNet (issue 21): an always-on script titled "ControlNet", as sd-webui-controlnet's,
so API clients send `alwayson_scripts: {"controlnet": {"args": [unit, ...]}}` unchanged.

Arguments: from the API, unit dicts (or unit objects) in the first places; from the UI, the
controls of each unit in UNIT_FIELDS order. The work is done by the ControlNet service
(modules/controlnet/service.py); this file is the script surface and the accordion.
"""

from __future__ import annotations

import logging
from typing import Any

from modules import scripts
from modules.access.limits import LimitExceeded
from modules.controlnet.preprocessors import PreprocessorError
from modules.controlnet.units import ControlNetUnit, UnitError, decode_image, looks_like_unit, unit_from
from modules.models.errors import ModelError
from modules.workflows.controlnet import check_units

log = logging.getLogger(__name__)
UNIT_FIELDS = (
    "enabled", "image", "module", "model", "weight", "guidance_start", "guidance_end", "control_mode",
    "resize_mode", "pixel_perfect", "low_vram", "processor_res", "threshold_a", "threshold_b", "hr_option",
)  # fmt: skip


def _services() -> Any:
    from modules.extension_host.facade import current

    return current().services


def _service() -> Any:
    return _services().controlnet


def units_of(args: tuple[Any, ...] | list[Any]) -> list[ControlNetUnit]:
    """API form (unit dicts/objects first) or UI form (UNIT_FIELDS values per unit)."""
    values = list(args)
    if values and looks_like_unit(values[0]):
        return [unit_from(v) for v in values if looks_like_unit(v)]
    size = len(UNIT_FIELDS)
    units = []
    for start in range(0, len(values) - size + 1, size):
        raw = dict(zip(UNIT_FIELDS, values[start : start + size], strict=True))
        image = raw.pop("image")
        unit = unit_from({k: v for k, v in raw.items() if v is not None})
        unit.image, unit.mask = _ui_image(image)
        units.append(unit)
    return units


def _ui_image(value: Any) -> tuple[Any, Any]:
    """gr.Image gives a PIL image; gr.ImageEditor a dict with background and layers (the sketch)."""
    if isinstance(value, dict) and ("background" in value or "composite" in value):
        return value.get("composite") or value.get("background"), None
    return decode_image(value)


class _Failing:
    """A provider that fails the job at its first UNet call with the unit's error: script hooks are
    isolated (an exception in process() would only be logged), a bad unit must stop the job."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __call__(self, call: Any) -> dict[str, Any]:
        raise UnitError(str(self.error)) from self.error


class Script(scripts.Script):
    def title(self) -> str:
        return "ControlNet"

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible

    def process(self, p: Any, *args: Any) -> None:
        try:
            units = units_of(args)
            provider = None
            if any(u.active for u in units):
                services = _services()
                check_units(services.access, services.controlnet, units)  # the limits of every path
                provider = services.controlnet.prepare(p, units)
        except (UnitError, PreprocessorError, ModelError, LimitExceeded) as exc:
            log.warning("ControlNet: %s", exc)
            provider = _Failing(exc)
        if provider is not None:
            p.unet_residuals = provider

    def ui(self, is_img2img: bool) -> list[Any]:
        from modules.controlnet.ui import build_accordion

        tab = "img2img" if is_img2img else "txt2img"
        controls, paste = build_accordion(tab, _service(), UNIT_FIELDS)
        self.infotext_fields = paste
        self.paste_field_names = []
        return controls
