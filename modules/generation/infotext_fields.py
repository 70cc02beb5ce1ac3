"""Applying a parsed infotext: request fields (API `infotext`, UI paste button) and override settings.

Mirrors A1111 1.10's paste fields (ui.py txt2img/img2img + the Seed, Sampler and Refiner
scripts' `infotext_fields`) and `infotext_utils.get_override_settings`. Settings whose
`OptionInfo.infotext` label appears in the infotext become override settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modules.core.options import OptionError, OptionsRegistry, coerce_value

Tab = Literal["txt2img", "img2img"]
Converter = Callable[[Any], Any]

MASK_MODES = ("Inpaint masked", "Inpaint not masked")
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")
INPAINT_AREAS = ("Whole picture", "Only masked")


def _to_int(value: Any) -> int:
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


def _index_of(choices: tuple[str, ...]) -> Converter:
    def convert(value: Any) -> int:
        if isinstance(value, str) and value in choices:
            return choices.index(value)
        return _to_int(value)  # already an index

    return convert


def _styles(params: Mapping[str, Any]) -> Any:
    styles = params.get("Styles array")
    return styles if isinstance(styles, list) else None


def _enable_hr(params: Mapping[str, Any]) -> bool:
    # A1111's rule; "Hires resize-1" is always filled by the parser, so Denoising strength decides.
    return "Denoising strength" in params and any(
        key in params for key in ("Hires upscale", "Hires upscaler", "Hires resize-1")
    )


@dataclass(frozen=True)
class PasteField:
    """One request field filled from an infotext key (or computed from the whole dict)."""

    api: str
    source: str | Callable[[Mapping[str, Any]], Any]
    convert: Converter = str
    tabs: tuple[Tab, ...] = ("txt2img", "img2img")

    def value_from(self, params: Mapping[str, Any]) -> Any:
        raw = self.source(params) if callable(self.source) else params.get(self.source)
        return None if raw is None else self.convert(raw)


_BOTH: tuple[Tab, ...] = ("txt2img", "img2img")
_T2I: tuple[Tab, ...] = ("txt2img",)
_I2I: tuple[Tab, ...] = ("img2img",)

PASTE_FIELDS: tuple[PasteField, ...] = (
    PasteField("prompt", "Prompt"),
    PasteField("negative_prompt", "Negative prompt"),
    PasteField("cfg_scale", "CFG scale", float),
    PasteField("image_cfg_scale", "Image CFG scale", float, _I2I),
    PasteField("width", "Size-1", _to_int),
    PasteField("height", "Size-2", _to_int),
    PasteField("batch_size", "Batch size", _to_int),
    PasteField("styles", _styles, list),
    PasteField("denoising_strength", "Denoising strength", float),
    # txt2img hires fix
    PasteField("enable_hr", _enable_hr, bool, _T2I),
    PasteField("hr_scale", "Hires upscale", float, _T2I),
    PasteField("hr_upscaler", "Hires upscaler", str, _T2I),
    PasteField("hr_second_pass_steps", "Hires steps", _to_int, _T2I),
    PasteField("hr_resize_x", "Hires resize-1", _to_int, _T2I),
    PasteField("hr_resize_y", "Hires resize-2", _to_int, _T2I),
    PasteField("hr_checkpoint_name", "Hires checkpoint", str, _T2I),
    PasteField("hr_sampler_name", "Hires sampler", str, _T2I),
    PasteField("hr_scheduler", "Hires schedule type", str, _T2I),
    PasteField("hr_prompt", "Hires prompt", str, _T2I),
    PasteField("hr_negative_prompt", "Hires negative prompt", str, _T2I),
    # img2img inpainting (A1111's radios use the choice index)
    PasteField("mask_blur", "Mask blur", _to_int, _I2I),
    PasteField("inpainting_mask_invert", "Mask mode", _index_of(MASK_MODES), _I2I),
    PasteField("inpainting_fill", "Masked content", _index_of(MASKED_CONTENT), _I2I),
    PasteField("inpaint_full_res", "Inpaint area", lambda v: bool(_index_of(INPAINT_AREAS)(v)), _I2I),
    PasteField("inpaint_full_res_padding", "Masked area padding", _to_int, _I2I),
    # Seed script
    PasteField("seed", "Seed", _to_int),
    PasteField("subseed", "Variation seed", _to_int),
    PasteField("subseed_strength", "Variation seed strength", float),
    PasteField("seed_resize_from_w", "Seed resize from-1", _to_int),
    PasteField("seed_resize_from_h", "Seed resize from-2", _to_int),
    # Sampler script: names are passed through; old combined names ("DPM++ 2M Karras") are split
    # later by the sampler lookup, as A1111's API does after applying the infotext.
    PasteField("steps", "Steps", _to_int),
    PasteField("sampler_name", "Sampler"),
    PasteField("scheduler", "Schedule type"),
    # Refiner script
    PasteField("refiner_checkpoint", "Refiner"),
    PasteField("refiner_switch_at", "Refiner switch at", float),
)

CHECKPOINT_SETTING = "sd_model_checkpoint"


@dataclass(frozen=True)
class OverrideSetting:
    """One setting an infotext asks for: its infotext label, the setting key and the typed value."""

    label: str
    key: str
    value: Any


@dataclass
class InfotextRequestFields:
    """What an infotext contributes to a generation request."""

    fields: dict[str, Any] = field(default_factory=dict)
    override_settings: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # infotext key -> why it was not used


def override_settings_from_infotext(
    params: Mapping[str, Any],
    registry: OptionsRegistry,
    *,
    current_settings: Mapping[str, Any] | None = None,
    skip_labels: Iterable[str] = (),
    disable_weights_auto_swap: bool = True,
    skipped: dict[str, str] | None = None,
) -> list[OverrideSetting]:
    """Settings with an infotext label found in params, cast to the setting's type (A1111
    get_override_settings): unchanged values, skipped labels and, when auto swap is disabled,
    the checkpoint are left out; values that do not fit the setting are reported in `skipped`."""
    skip = set(skip_labels)
    out: list[OverrideSetting] = []
    for key, info in registry.options.items():
        label = info.infotext
        if not label or label in skip or params.get(label) is None:
            continue
        if key == CHECKPOINT_SETTING and disable_weights_auto_swap:
            continue
        try:
            value = coerce_value(info, params[label])
        except OptionError as exc:
            if skipped is not None:
                skipped[label] = str(exc)
            continue
        if current_settings is not None and current_settings.get(key) == value:
            continue
        out.append(OverrideSetting(label, key, value))
    return out


def infotext_to_request_fields(
    params: Mapping[str, Any],
    registry: OptionsRegistry,
    *,
    tab: Tab = "txt2img",
    current_settings: Mapping[str, Any] | None = None,
    disable_weights_auto_swap: bool = True,
) -> InfotextRequestFields:
    """Request fields and override settings from a parsed infotext (`parse_generation_parameters`).

    Only fields of the given tab are filled. A value that cannot be converted (e.g. "Steps: abc")
    is left out and listed in `skipped`; the caller decides which fields the client already set.
    """
    result = InfotextRequestFields()
    for paste in PASTE_FIELDS:
        if tab not in paste.tabs:
            continue
        try:
            value = paste.value_from(params)
        except (TypeError, ValueError) as exc:
            label = paste.source if isinstance(paste.source, str) else paste.api
            result.skipped[label] = f"cannot use {params.get(label)!r} for {paste.api}: {exc}"
            continue
        if value is not None:
            result.fields[paste.api] = value

    overrides = override_settings_from_infotext(
        params,
        registry,
        current_settings=current_settings,
        disable_weights_auto_swap=disable_weights_auto_swap,
        skipped=result.skipped,
    )
    result.override_settings = {o.key: o.value for o in overrides}
    return result
