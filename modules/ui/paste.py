"""Infotext -> values for a tab's components, keyed by request field name (A1111's paste fields).

Used by the paste button (↙), by pasting a whole infotext into the prompt box, and by
"Send to txt2img/img2img" from PNG Info. Pure functions: the caller turns the result into
component updates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modules.core.options import OptionError, OptionsRegistry, coerce_value
from modules.generation import samplers
from modules.generation.infotext import ExtractedStyles, ParseOptions, parse_generation_parameters
from modules.generation.infotext_fields import Tab, infotext_to_request_fields
from modules.generation.styles import StyleDatabase


@dataclass
class PastedValues:
    """What an infotext sets on one tab: field values and "Override settings" entries ("Clip skip: 2")."""

    fields: dict[str, Any] = field(default_factory=dict)
    override_entries: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # the parsed infotext (for scripts' paste fields)


def parse_infotext(text: str, settings: Mapping[str, Any], styles: StyleDatabase | None) -> dict[str, Any]:
    """`parse_generation_parameters` with the user's settings (skip list, styles inference)."""

    def extract(prompt: str, negative: str) -> ExtractedStyles:
        assert styles is not None
        return styles.extract_styles_from_prompt(prompt, negative)

    return parse_generation_parameters(
        text,
        skip_fields=list(settings.get("infotext_skip_pasting") or []),
        extract_styles=extract if styles is not None and styles.styles else None,
        options=ParseOptions(infotext_styles=str(settings.get("infotext_styles", "Apply if any"))),
    )


def _split_old_sampler_name(fields: dict[str, Any]) -> None:
    """ "DPM++ 2M Karras" (A1111 < 1.9) -> sampler "DPM++ 2M" + schedule "Karras"."""
    name = fields.get("sampler_name")
    if not isinstance(name, str):
        return
    try:
        sampler, schedule = samplers.resolve_sampler(name, fields.get("scheduler"), convert_automatic=True)
    except (samplers.UnknownSamplerError, samplers.UnknownSchedulerError):
        return  # left as written: the dropdown shows it, generation reports the unknown name
    fields["sampler_name"] = sampler.name
    fields["scheduler"] = schedule.label


def infotext_to_ui_values(
    text: str,
    *,
    tab: Tab,
    registry: OptionsRegistry,
    settings: Mapping[str, Any],
    styles: StyleDatabase | None = None,
    accepted_fields: Iterable[str] | None = None,
    on_parsed: Callable[[str, dict[str, Any]], None] | None = None,
) -> PastedValues:
    """Values a pasted infotext gives the components of `tab` (only `accepted_fields` when given).
    `on_parsed(text, params)` may change the parsed params first (A1111's on_infotext_pasted)."""
    params = parse_infotext(text, settings, styles)
    if on_parsed is not None:
        on_parsed(text, params)
    found = infotext_to_request_fields(
        params,
        registry,
        tab=tab,
        current_settings=settings,
        disable_weights_auto_swap=bool(settings.get("disable_weights_auto_swap", True)),
    )
    fields = dict(found.fields)
    _split_old_sampler_name(fields)
    if accepted_fields is not None:
        wanted = set(accepted_fields)
        fields = {k: v for k, v in fields.items() if k in wanted}
    entries = [f"{registry[key].infotext}: {value}" for key, value in found.override_settings.items()]
    return PastedValues(fields, entries, dict(found.skipped), params)


def override_settings_from_entries(entries: Iterable[str], registry: OptionsRegistry) -> dict[str, Any]:
    """The "Override settings" dropdown's "Label: value" entries -> {setting key: typed value}."""
    by_label = registry.by_infotext()
    out: dict[str, Any] = {}
    for entry in entries:
        label, sep, raw = str(entry).partition(":")
        info = by_label.get(label.strip())
        if not sep or info is None:
            raise OptionError(f"override setting {entry!r} is not 'Label: value' with a known label")
        out[info.key] = coerce_value(info, raw.strip())
    return out


def looks_like_infotext(text: str) -> bool:
    """True for text whose last line is an infotext parameters line (Steps: .., Sampler: .., ...)."""
    last = text.strip().split("\n")[-1]
    return "Steps:" in last and last.count(":") >= 3


def with_refiner_toggle(fields: Mapping[str, Any], title_of: Callable[[str], str | None]) -> dict[str, Any]:
    """A1111's Refiner accordion on paste: enabled exactly when the infotext names a refiner, whose
    short title ("name [hash]") becomes the dropdown's checkpoint title when one matches."""
    out = dict(fields)
    name = out.get("refiner_checkpoint")
    out["refiner_enable"] = bool(name)
    if name:
        out["refiner_checkpoint"] = title_of(str(name)) or str(name)
    return out
