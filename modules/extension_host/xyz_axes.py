"""The axes of the built-in X/Y/Z plot script (scripts/xyz_grid.py): A1111 1.10's list with its
labels and order (API clients pick axes by index), how each changes a cell's `p`, how values are
checked before the first image, and restoring the active model after Checkpoint/VAE axes.

Settings an axis changes go into the cell's `override_settings`; no global option is written.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modules.core.shared_options_a1111 import COMPAT as A1111_COMPAT
from modules.extension_host.facade import current
from modules.generation import samplers
from modules.generation.xyz_values import AxisValueError, join_csv, parse_axis_values, split_values

Apply = Callable[[Any, Any, list[Any]], None]
Confirm = Callable[[Any, list[Any]], None]


@dataclass(frozen=True)
class AxisOption:
    label: str
    kind: str  # "int" | "float" | "str" | "permutations" (see xyz_values.parse_axis_values)
    apply: Apply
    format_value: Callable[[AxisOption, Any], str] | None = None  # None: "Label: value"
    confirm: Confirm | None = None
    cost: float = 0.0  # expensive axes (model switches) run in the outer loop
    choices: Callable[[], list[str]] | None = None
    tab: str | None = None  # "txt2img" / "img2img" when only one tab has it

    def format(self, value: Any) -> str:
        if self.format_value is not None:
            return self.format_value(self, value)
        if isinstance(value, float):
            value = round(value, 8)
        return f"{self.label}: {value}"


# --- how axes change a job --------------------------------------------------------------------


def apply_field(name: str) -> Apply:
    def apply(p: Any, x: Any, xs: list[Any]) -> None:
        setattr(p, name, x)

    return apply


def apply_override(key: str, *, boolean: bool = False) -> Apply:
    def apply(p: Any, x: Any, xs: list[Any]) -> None:
        p.override_settings[key] = str(x).strip().lower() == "true" if boolean else x

    return apply


def confirm_setting(key: str, label: str) -> Confirm:
    """Override axes need the setting to exist here (unknown keys would fail every cell)."""

    def confirm(p: Any, xs: list[Any]) -> None:
        info = current().services.registry.options.get(key)
        if info is None or info.section == A1111_COMPAT:  # stored for A1111 clients, no effect here
            raise AxisValueError(f"the {label!r} axis is not available in this web UI (no setting {key!r})")

    return confirm


def unsupported(label: str) -> Confirm:
    def confirm(p: Any, xs: list[Any]) -> None:
        raise AxisValueError(f"the {label!r} axis is not available in this web UI")

    return confirm


def apply_prompt(p: Any, x: Any, xs: list[Any]) -> None:
    p.prompt = p.prompt.replace(xs[0], x)
    p.negative_prompt = p.negative_prompt.replace(xs[0], x)


def confirm_prompt(p: Any, xs: list[Any]) -> None:
    if xs and xs[0] not in p.prompt and xs[0] not in p.negative_prompt:
        raise AxisValueError(f"Prompt S/R did not find {xs[0]!r} in prompt or negative prompt.")


def apply_order(p: Any, x: Any, xs: list[Any]) -> None:
    """Put the tokens `x` (one ordering of the axis values) where the tokens stood, in this order."""
    prompt = p.prompt
    positions = sorted((prompt.find(token), token) for token in x)
    pieces: list[str] = []
    for _, token in positions:
        at = prompt.find(token)
        pieces.append(prompt[:at])
        prompt = prompt[at + len(token) :]
    p.prompt = "".join(piece + token for piece, token in zip(pieces, x, strict=True)) + prompt


def confirm_order(p: Any, xs: list[Any]) -> None:
    for token in xs[0] if xs else []:
        if token not in p.prompt:
            raise AxisValueError(f"Prompt order: {token!r} is not in the prompt")


def apply_sampler(field: str) -> Apply:
    def apply(p: Any, x: Any, xs: list[Any]) -> None:
        sampler, schedule = samplers.find_sampler(x)
        setattr(p, field, sampler.name)
        if schedule is not None and field == "sampler_name":  # old names like "DPM++ 2M Karras"
            p.scheduler = schedule.label

    return apply


def confirm_samplers(p: Any, xs: list[Any]) -> None:
    for x in xs:
        try:
            samplers.find_sampler(x)
        except samplers.UnknownSamplerError:
            raise AxisValueError(f"Unknown sampler: {x}") from None


def apply_scheduler(p: Any, x: Any, xs: list[Any]) -> None:
    p.scheduler = samplers.find_scheduler(x).label


def confirm_schedulers(p: Any, xs: list[Any]) -> None:
    for x in xs:
        try:
            samplers.find_scheduler(x)
        except samplers.UnknownSchedulerError:
            raise AxisValueError(f"Unknown schedule type: {x}") from None


def _checkpoint(name: str) -> Any:
    """A checkpoint by title/name/hash, else the shortest title containing `name` (A1111)."""
    models = current().services.models
    try:
        return models.find_checkpoint(name)
    except Exception:  # ModelNotFound / LookupError: try the loose match
        pass
    matches = sorted((c for c in models.list_checkpoints() if name in c.title), key=lambda c: len(c.title))
    return matches[0] if matches else None


def apply_checkpoint(p: Any, x: Any, xs: list[Any]) -> None:
    p.override_settings["sd_model_checkpoint"] = _checkpoint(x).title


def confirm_checkpoints(p: Any, xs: list[Any]) -> None:
    for x in xs:
        if _checkpoint(x) is None:
            raise AxisValueError(f"Unknown checkpoint: {x}")


def apply_refiner(p: Any, x: Any, xs: list[Any]) -> None:
    p.refiner_checkpoint = None if x in ("", "None", "none") else _checkpoint(x).title


def confirm_refiners(p: Any, xs: list[Any]) -> None:
    confirm_checkpoints(p, [x for x in xs if x not in ("", "None", "none")])


def checkpoint_choices() -> list[str]:
    return sorted((c.title for c in current().services.models.list_checkpoints()), key=str.casefold)


def vae_choices() -> list[str]:
    return ["Automatic", "None", *(v.name for v in current().services.models.list_vaes())]


def _vae(name: str) -> str | None:
    wanted = name.strip().lower()
    if wanted in ("auto", "automatic"):
        return "Automatic"
    return next((c for c in vae_choices() if c.lower() == wanted), None)


def apply_vae(p: Any, x: Any, xs: list[Any]) -> None:
    p.override_settings["sd_vae"] = _vae(x)


def confirm_vaes(p: Any, xs: list[Any]) -> None:
    for x in xs:
        if _vae(x) is None:
            raise AxisValueError(f"Unknown VAE: {x}")


def apply_styles(p: Any, x: Any, xs: list[Any]) -> None:
    p.styles.extend(s.strip() for s in x.split(",") if s.strip())


def style_choices() -> list[str]:
    return list(current().services.generation.styles.styles)


def hires_upscaler_choices() -> list[str]:
    from modules.generation.latents import LATENT_UPSCALE_MODES
    from modules.generation.txt2img import BUILTIN_IMAGE_UPSCALERS

    return [*LATENT_UPSCALE_MODES, *BUILTIN_IMAGE_UPSCALERS]


def confirm_hires_upscalers(p: Any, xs: list[Any]) -> None:
    known = hires_upscaler_choices()
    for x in xs:
        if x not in known:
            raise AxisValueError(f"Unknown hires upscaler: {x} (known: {', '.join(known)})")


def _size(text: str) -> tuple[int, int] | None:
    width, sep, height = str(text).lower().partition("x")
    try:
        return (int(width.strip()), int(height.strip())) if sep else None
    except ValueError:
        return None


def apply_size(p: Any, x: Any, xs: list[Any]) -> None:
    p.width, p.height = _size(x) or (p.width, p.height)


def confirm_sizes(p: Any, xs: list[Any]) -> None:
    for x in xs:
        size = _size(x)
        if size is None or min(size) < 8 or size[0] % 8 or size[1] % 8:
            raise AxisValueError(f"Size: {x!r} is not WIDTHxHEIGHT with multiples of 8 (e.g. 512x768)")


def apply_uni_pc_order(p: Any, x: Any, xs: list[Any]) -> None:
    p.override_settings["uni_pc_order"] = min(x, p.steps - 1)


def do_nothing(p: Any, x: Any, xs: list[Any]) -> None:
    pass


def plain(opt: AxisOption, x: Any) -> str:
    return str(round(x, 8) if isinstance(x, float) else x)


def joined(opt: AxisOption, x: Any) -> str:
    return ", ".join(x)


def basename(opt: AxisOption, x: Any) -> str:
    return os.path.basename(str(x))


def nothing(opt: AxisOption, x: Any) -> str:
    return ""


def _override(label: str, key: str, kind: str = "float", **kw: Any) -> AxisOption:
    return AxisOption(
        label, kind, apply_override(key, boolean=kw.pop("boolean", False)), None, confirm_setting(key, label), **kw
    )


def _bool_choices() -> list[str]:
    return ["False", "True"]


# A1111 1.10's list, in its order: API clients pass x_type/y_type/z_type as an index into the
# tab's list. Axes this backend cannot vary stay listed (indexes keep their meaning) and explain
# themselves when chosen.
AXIS_OPTIONS: tuple[AxisOption, ...] = (
    AxisOption("Nothing", "str", do_nothing, nothing),
    AxisOption("Seed", "int", apply_field("seed")),
    AxisOption("Var. seed", "int", apply_field("subseed")),
    AxisOption("Var. strength", "float", apply_field("subseed_strength")),
    AxisOption("Steps", "int", apply_field("steps")),
    AxisOption("Hires steps", "int", apply_field("hr_second_pass_steps"), tab="txt2img"),
    AxisOption("CFG Scale", "float", apply_field("cfg_scale")),
    AxisOption("Image CFG Scale", "float", apply_field("image_cfg_scale"), tab="img2img"),
    AxisOption("Prompt S/R", "str", apply_prompt, plain, confirm_prompt),
    AxisOption("Prompt order", "permutations", apply_order, joined, confirm_order),
    AxisOption(
        "Sampler",
        "str",
        apply_sampler("sampler_name"),
        plain,
        confirm_samplers,
        choices=samplers.sampler_names,
        tab="txt2img",
    ),
    AxisOption(
        "Hires sampler",
        "str",
        apply_sampler("hr_sampler_name"),
        None,
        confirm_samplers,
        choices=samplers.sampler_names,
        tab="txt2img",
    ),
    AxisOption(
        "Sampler",
        "str",
        apply_sampler("sampler_name"),
        plain,
        confirm_samplers,
        choices=samplers.sampler_names,
        tab="img2img",
    ),
    AxisOption("Checkpoint name", "str", apply_checkpoint, basename, confirm_checkpoints, 1.0, checkpoint_choices),
    AxisOption("Negative Guidance minimum sigma", "float", apply_field("s_min_uncond")),
    AxisOption("Sigma Churn", "float", apply_field("s_churn")),
    AxisOption("Sigma min", "float", apply_field("s_tmin")),
    AxisOption("Sigma max", "float", apply_field("s_tmax")),
    AxisOption("Sigma noise", "float", apply_field("s_noise")),
    AxisOption("Schedule type", "str", apply_scheduler, None, confirm_schedulers, choices=samplers.scheduler_names),
    _override("Schedule min sigma", "sigma_min"),
    _override("Schedule max sigma", "sigma_max"),
    _override("Schedule rho", "rho"),
    _override("Skip Early CFG", "skip_early_cond"),
    _override("Beta schedule alpha", "beta_dist_alpha"),
    _override("Beta schedule beta", "beta_dist_beta"),
    AxisOption("Eta", "float", apply_field("eta")),
    _override("Clip skip", "CLIP_stop_at_last_layers", "int"),
    AxisOption("Denoising", "float", apply_field("denoising_strength")),
    AxisOption("Initial noise multiplier", "float", apply_field("initial_noise_multiplier")),
    _override("Extra noise", "img2img_extra_noise"),
    AxisOption(
        "Hires upscaler",
        "str",
        apply_field("hr_upscaler"),
        None,
        confirm_hires_upscalers,
        choices=hires_upscaler_choices,
        tab="txt2img",
    ),
    _override("Cond. Image Mask Weight", "inpainting_mask_weight", tab="img2img"),
    AxisOption("VAE", "str", apply_vae, None, confirm_vaes, 0.7, vae_choices),
    AxisOption("Styles", "str", apply_styles, choices=style_choices),
    AxisOption("UniPC Order", "int", apply_uni_pc_order, None, confirm_setting("uni_pc_order", "UniPC Order"), 0.5),
    AxisOption("Face restore", "str", do_nothing, plain, unsupported("Face restore")),
    _override("Token merging ratio", "token_merging_ratio"),
    _override("Token merging ratio high-res", "token_merging_ratio_hr"),
    _override(
        "Always discard next-to-last sigma",
        "always_discard_next_to_last_sigma",
        "str",
        boolean=True,
        choices=_bool_choices,
    ),
    _override("SGM noise multiplier", "sgm_noise_multiplier", "str", boolean=True, choices=_bool_choices),
    AxisOption(
        "Refiner checkpoint",
        "str",
        apply_refiner,
        basename,
        confirm_refiners,
        1.0,
        lambda: ["None", *checkpoint_choices()],
    ),
    AxisOption("Refiner switch at", "float", apply_field("refiner_switch_at")),
    _override("RNG source", "randn_source", "str", choices=lambda: ["GPU", "CPU", "NV"]),
    AxisOption("FP8 mode", "str", do_nothing, plain, unsupported("FP8 mode"), 0.9),
    AxisOption("Size", "str", apply_size, None, confirm_sizes),
)


def axis_options(is_img2img: bool) -> list[AxisOption]:
    tab = "img2img" if is_img2img else "txt2img"
    return [o for o in AXIS_OPTIONS if o.tab in (None, tab)]


@dataclass
class Axis:
    """One axis of a job: its option, the values as typed (for the infotext) and as parsed."""

    name: str  # "X" | "Y" | "Z"
    option: AxisOption
    text: str
    values: list[Any]

    @property
    def used(self) -> bool:
        return self.option.label != "Nothing"


def pick_option(options: list[AxisOption], chosen: Any, name: str) -> AxisOption:
    """The axis for an index (A1111 UI/API) or a label (lenient: `"Steps"`)."""
    if isinstance(chosen, str) and not chosen.strip().lstrip("-").isdecimal():
        found = next((o for o in options if o.label.lower() == chosen.strip().lower()), None)
        if found is None:
            raise AxisValueError(f"{name} type: unknown axis {chosen!r}")
        return found
    index = int(chosen or 0)
    if not 0 <= index < len(options):
        raise AxisValueError(f"{name} type: index {index} is not in 0..{len(options) - 1}")
    return options[index]


def read_axis(
    p: Any, name: str, option: AxisOption, text: Any, dropdown: Any, *, csv_mode: bool, fix_seeds: bool
) -> Axis:
    """Parse and check one axis' values before any image is made (errors name the axis)."""
    if option.label == "Nothing":
        return Axis(name, option, "", [0])
    picked = [str(v) for v in dropdown or []]
    if option.choices is not None and not csv_mode and picked:
        text = join_csv(picked)  # A1111: axes with choices read the dropdown unless in CSV mode
    text = "" if text is None else str(text)
    values = parse_axis_values(option.kind, split_values(text), f"{name} values ({option.label})")
    if not values:
        raise AxisValueError(f"{name} values ({option.label}): no values given")
    if fix_seeds and option.label in ("Seed", "Var. seed"):
        values = [random.randrange(4294967294) if v in (None, "", -1) else v for v in values]
    if option.confirm is not None:
        option.confirm(p, values)
    return Axis(name, option, text, values)
