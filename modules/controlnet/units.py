"""ControlNet units: sd-webui-controlnet's unit fields, read from API dicts, objects or UI values,
and the infotext entries (`ControlNet 0: "Module: canny, Model: ..., Weight: 1, ..."`) both ways.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass, field, fields
from typing import Any

from PIL import Image

RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
HR_OPTIONS = ("Both", "Low res only", "High res only")
MAX_UNITS = 8


class UnitError(ValueError):
    """A unit field a user sent is not valid (HTTP 422 / a UI message)."""


@dataclass
class ControlNetUnit:
    enabled: bool = True
    module: str = "none"
    model: str = "None"
    weight: float = 1.0
    image: Image.Image | None = None
    mask: Image.Image | None = None
    resize_mode: str = "Crop and Resize"
    low_vram: bool = False
    processor_res: int = 512
    threshold_a: float = -1.0
    threshold_b: float = -1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: str = "Balanced"
    hr_option: str = "Both"

    @property
    def active(self) -> bool:
        return self.enabled and self.model not in ("", "None", None) and self.weight != 0

    def validate(self) -> ControlNetUnit:
        if not 0.0 <= self.guidance_start <= 1.0 or not 0.0 <= self.guidance_end <= 1.0:
            raise UnitError("ControlNet guidance_start and guidance_end must lie in [0, 1]")
        if not -10.0 <= self.weight <= 10.0:
            raise UnitError(f"ControlNet weight {self.weight} is out of range [-10, 10]")
        if not 0 <= self.processor_res <= 4096:
            raise UnitError(f"ControlNet processor_res {self.processor_res} is out of range [0, 4096]")
        return self


def _choice(value: Any, names: tuple[str, ...], what: str) -> str:
    if isinstance(value, bool):
        raise UnitError(f"ControlNet {what}: {value!r} is not one of {list(names)}")
    if isinstance(value, int | float) and int(value) == value and 0 <= int(value) < len(names):
        return names[int(value)]
    text = str(value).strip()
    aliases = {"Just Resize": ("just resize", "resize", "inner fit"), "Crop and Resize": ("crop and resize", "inner fit (scale to fit)"),
               "Resize and Fill": ("resize and fill", "outer fit (shrink to fit)"), "Balanced": ("balanced",),
               "My prompt is more important": ("my prompt is more important", "prompt"),
               "ControlNet is more important": ("controlnet is more important", "controlnet")}  # fmt: skip
    for name in names:
        if text.lower() == name.lower() or text.lower() in aliases.get(name, ()):
            return name
    # the extension's enum reprs, e.g. "ResizeMode.RESIZE"
    enum_names = {"RESIZE": "Just Resize", "INNER_FIT": "Crop and Resize", "OUTER_FIT": "Resize and Fill",
                  "BALANCED": "Balanced", "PROMPT": "My prompt is more important", "CONTROL": "ControlNet is more important"}  # fmt: skip
    tail = text.rsplit(".", 1)[-1].upper()
    if enum_names.get(tail) in names:
        return enum_names[tail]
    raise UnitError(f"ControlNet {what}: {value!r} is not one of {list(names)}")


def decode_image(value: Any) -> tuple[Image.Image | None, Image.Image | None]:
    """(image, mask) from the API's forms: base64 (data URL or raw), {"image", "mask"}, PIL, numpy."""
    if value is None or value == "":
        return None, None
    if isinstance(value, Image.Image):
        return value, None
    if isinstance(value, dict):
        image, _ = decode_image(value.get("image"))
        mask, _ = decode_image(value.get("mask"))
        return image, mask
    if hasattr(value, "shape"):  # numpy array from an extension
        import numpy as np

        return Image.fromarray(np.asarray(value).astype("uint8")), None
    if isinstance(value, str):
        data = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            return Image.open(io.BytesIO(base64.b64decode(data, validate=False))).convert("RGB"), None
        except Exception:  # boundary: any undecodable payload is the user's input error
            raise UnitError("ControlNet image is not a valid base64-encoded image") from None
    raise UnitError(f"ControlNet image of type {type(value).__name__} is not understood")


_FIELD_NAMES = {f.name for f in fields(ControlNetUnit)}
_LEGACY = {"guessmode": "control_mode", "input_image": "image", "processor_resolution": "processor_res"}


def unit_from(value: Any) -> ControlNetUnit:
    """A unit from an API dict, an object with the unit's attributes (the extension's or webuiapi's)."""
    if isinstance(value, ControlNetUnit):
        return value.validate()
    raw = dict(value) if isinstance(value, dict) else {k: getattr(value, k) for k in _FIELD_NAMES if hasattr(value, k)}
    for old, new in _LEGACY.items():
        if old in raw and new not in raw:
            raw[new] = raw.pop(old)
    unit = ControlNetUnit()
    for key, item in raw.items():
        if key not in _FIELD_NAMES or item is None:
            continue
        if key == "image":
            image, mask = decode_image(item)
            unit.image = image
            unit.mask = mask or unit.mask
        elif key == "mask":
            unit.mask = decode_image(item)[0]
        elif key == "resize_mode":
            unit.resize_mode = _choice(item, RESIZE_MODES, "resize_mode")
        elif key == "control_mode":
            unit.control_mode = _choice(item, CONTROL_MODES, "control_mode")
        elif key == "hr_option":
            unit.hr_option = _choice(item, HR_OPTIONS, "hr_option")
        elif key in ("enabled", "low_vram", "pixel_perfect"):
            setattr(unit, key, item if isinstance(item, bool) else str(item).lower() in ("1", "true", "yes"))
        elif key in ("module", "model"):
            setattr(unit, key, str(item))
        else:
            try:
                setattr(unit, key, int(item) if key == "processor_res" else float(item))
            except (TypeError, ValueError):
                raise UnitError(f"ControlNet {key}: {item!r} is not a number") from None
    return unit.validate()


def looks_like_unit(value: Any) -> bool:
    return isinstance(value, ControlNetUnit | dict) or (hasattr(value, "module") and hasattr(value, "model"))


# --- infotext -------------------------------------------------------------------------------------


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(round(value, 4))


def infotext_entry(unit: ControlNetUnit, model_title: str) -> str:
    parts = {
        "Module": unit.module,
        "Model": model_title,
        "Weight": _number(unit.weight),
        "Resize Mode": unit.resize_mode,
        "Processor Res": str(unit.processor_res),
        "Threshold A": _number(unit.threshold_a),
        "Threshold B": _number(unit.threshold_b),
        "Guidance Start": _number(unit.guidance_start),
        "Guidance End": _number(unit.guidance_end),
        "Pixel Perfect": str(unit.pixel_perfect),
        "Control Mode": unit.control_mode,
        "Low Vram": str(unit.low_vram),
        "Hr Option": unit.hr_option,
    }
    return ", ".join(f"{k}: {v}" for k, v in parts.items())


_KEYS = {"Module": "module", "Model": "model", "Weight": "weight", "Resize Mode": "resize_mode",
         "Processor Res": "processor_res", "Threshold A": "threshold_a", "Threshold B": "threshold_b",
         "Guidance Start": "guidance_start", "Guidance End": "guidance_end", "Pixel Perfect": "pixel_perfect",
         "Control Mode": "control_mode", "Low Vram": "low_vram", "Hr Option": "hr_option"}  # fmt: skip


def parse_entry(text: str) -> ControlNetUnit:
    """One `ControlNet N` infotext value back into a unit (no image: the user gives it again)."""
    raw: dict[str, Any] = {}
    for part in re.split(r",\s*(?=[A-Z][A-Za-z ]*:)", text):
        if ":" not in part:
            continue
        key, value = part.split(":", 1)
        name = _KEYS.get(key.strip())
        if name is not None:
            raw[name] = value.strip()
    return unit_from(raw)


def units_from_infotext(params: dict[str, Any]) -> dict[int, ControlNetUnit]:
    found: dict[int, ControlNetUnit] = {}
    for key, value in params.items():
        match = re.fullmatch(r"ControlNet (\d+)", str(key))
        if match and isinstance(value, str):
            try:
                found[int(match.group(1))] = parse_entry(value)
            except UnitError:
                continue  # a damaged entry restores nothing, the rest still pastes
    return found


@dataclass
class UnitList:
    units: list[ControlNetUnit] = field(default_factory=list)

    @property
    def active(self) -> list[tuple[int, ControlNetUnit]]:
        return [(i, u) for i, u in enumerate(self.units) if u.active]
