"""Infotext ("generation parameters"): the A1111 text written into every image, and its parser.

Layout (A1111 1.10, processing.create_infotext):

    <prompt, may span lines>
    Negative prompt: <negative prompt, may span lines>     (only when not empty)
    Key: value, Key: value, ...                            (one last line)

`ordered_generation_params` builds the key/value part in A1111's order and with its inclusion
rules from a typed `GenerationFacts`; `format_infotext` writes the text; `parse_generation_parameters`
reads it back into the dict that /sdapi/v1/png-info returns. Applying a parsed dict to a request
lives in `modules.generation.infotext_fields`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from packaging import version as packaging_version

log = logging.getLogger(__name__)

# A1111's regex for one "Key: value" pair of the last line; a value is a JSON string or runs to the next comma.
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")
NEGATIVE_PROMPT_PREFIX = "Negative prompt:"

StylesExtractor = Callable[[str, str], "ExtractedStyles"]


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def quote(value: Any) -> Any:
    """A value holding ',', ':' or a newline is written as a JSON string; anything else raw."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return value
    return json.dumps(value, ensure_ascii=False)


def unquote(text: str) -> Any:
    """Inverse of `quote` for one raw value (a broken JSON string stays as written)."""
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def format_params_line(params: Mapping[str, Any]) -> str:
    """The "Key: value, ..." line: None dropped, a value equal to its key written as the bare key."""
    return ", ".join(k if k == v else f"{k}: {quote(v)}" for k, v in params.items() if v is not None)


def format_infotext(prompt: str, negative_prompt: str, params: Mapping[str, Any]) -> str:
    """Full infotext in A1111's layout (params in insertion order)."""
    negative_text = f"\n{NEGATIVE_PROMPT_PREFIX} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative_text}\n{format_params_line(params)}".strip()


@dataclass(frozen=True)
class InfotextFlags:
    """The infotext settings (add_*_to_info); `from_settings` reads them from an options mapping."""

    add_model_hash: bool = True
    add_model_name: bool = True
    add_vae_hash: bool = True
    add_vae_name: bool = True
    add_version: bool = True
    add_user_name: bool = False

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> InfotextFlags:
        return cls(
            add_model_hash=bool(settings.get("add_model_hash_to_info", True)),
            add_model_name=bool(settings.get("add_model_name_to_info", True)),
            add_vae_hash=bool(settings.get("add_vae_hash_to_info", True)),
            add_vae_name=bool(settings.get("add_vae_name_to_info", True)),
            add_version=bool(settings.get("add_version_to_infotext", True)),
            add_user_name=bool(settings.get("add_user_name_to_info", False)),
        )


@dataclass
class GenerationFacts:
    """What one image's infotext records, filled by name by the generation pipeline.

    Values are written as given (`cfg_scale=7` -> "7", `7.0` -> "7.0"). Optional facts left None
    are omitted. `extra` is A1111's `extra_generation_params`: insertion order kept; a value may be
    a list (one entry per image, picked by `index`) or a callable taking `index`.
    """

    steps: int
    sampler_name: str | None
    cfg_scale: float
    seed: int
    width: int
    height: int
    schedule_type: str | None = None
    distilled_cfg_scale: float | None = None
    image_cfg_scale: float | None = None
    face_restoration: str | None = None  # the face restoration model's name, when it was used
    model_hash: str | None = None
    model_name: str | None = None
    fp8_weight: str | None = None
    cache_fp16_weight_for_lora: bool | None = None
    vae_hash: str | None = None
    vae_name: str | None = None
    subseed: int | None = None
    subseed_strength: float = 0.0
    seed_resize_from_w: int = 0
    seed_resize_from_h: int = 0
    denoising_strength: float | None = None
    conditional_mask_weight: float | None = None  # only for inpainting-conditioned models
    clip_skip: int = 1
    eta_noise_seed_delta: int = 0
    sampler_uses_ensd: bool = False  # the sampler draws noise after the start (A1111 uses_ensd)
    token_merging_ratio: float = 0.0
    token_merging_ratio_hr: float = 0.0
    enable_hr: bool = False
    init_image_hash: str | None = None
    rng: str = "GPU"
    tiling: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    version: str | None = None
    user: str | None = None
    index: int = 0
    flags: InfotextFlags = field(default_factory=InfotextFlags)


def ordered_generation_params(facts: GenerationFacts) -> dict[str, Any]:
    """Key/value pairs in A1111 1.10's order, with its inclusion rules; None values removed."""
    f, flags = facts, facts.flags
    varies = f.subseed_strength != 0
    params: dict[str, Any] = {
        "Steps": f.steps,
        "Sampler": f.sampler_name,
        "Schedule type": f.schedule_type,
        "CFG scale": f.cfg_scale,
        "Distilled CFG Scale": f.distilled_cfg_scale,
        "Image CFG scale": f.image_cfg_scale,
        "Seed": f.seed,
        "Face restoration": f.face_restoration,
        "Size": f"{f.width}x{f.height}",
        "Model hash": f.model_hash if flags.add_model_hash else None,
        "Model": f.model_name if flags.add_model_name else None,
        "FP8 weight": f.fp8_weight,
        "Cache FP16 weight for LoRA": f.cache_fp16_weight_for_lora if f.fp8_weight else None,
        "VAE hash": f.vae_hash if flags.add_vae_hash else None,
        "VAE": f.vae_name if flags.add_vae_name else None,
        "Variation seed": f.subseed if varies else None,
        "Variation seed strength": f.subseed_strength if varies else None,
        "Seed resize from": (
            f"{f.seed_resize_from_w}x{f.seed_resize_from_h}"
            if f.seed_resize_from_w > 0 and f.seed_resize_from_h > 0
            else None
        ),
        "Denoising strength": f.denoising_strength,
        "Conditional mask weight": f.conditional_mask_weight,
        "Clip skip": f.clip_skip if f.clip_skip > 1 else None,
        "ENSD": f.eta_noise_seed_delta if f.eta_noise_seed_delta != 0 and f.sampler_uses_ensd else None,
        "Token merging ratio": f.token_merging_ratio or None,
        "Token merging ratio hr": f.token_merging_ratio_hr if f.enable_hr and f.token_merging_ratio_hr else None,
        "Init image hash": f.init_image_hash,
        "RNG": f.rng if f.rng != "GPU" else None,
        "Tiling": "True" if f.tiling else None,
    }
    # A key already present keeps its position and takes the new value (dict semantics, as in A1111).
    for key, value in f.extra.items():
        params[key] = value
    params["Version"] = f.version if flags.add_version else None
    params["User"] = f.user if flags.add_user_name else None

    resolved = {key: _resolve_per_image(value, f.index) for key, value in params.items()}
    return {key: value for key, value in resolved.items() if value is not None}


def _resolve_per_image(value: Any, index: int) -> Any:
    if isinstance(value, list):
        return value[index] if index < len(value) else None
    if callable(value):
        return value(index)
    return value


def create_infotext(prompt: str, negative_prompt: str, facts: GenerationFacts) -> str:
    """Convenience: `format_infotext` over `ordered_generation_params`."""
    return format_infotext(prompt, negative_prompt, ordered_generation_params(facts))


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractedStyles:
    """What a styles extractor found: style names and the prompts with those styles removed."""

    styles: list[str]
    prompt: str
    negative_prompt: str


@dataclass(frozen=True)
class ParseOptions:
    """Settings that steer parsing (A1111 reads these from opts)."""

    infotext_styles: str = "Apply if any"  # Ignore / Apply / Discard / Apply if any
    use_old_hires_fix_width_height: bool = False
    auto_backcompat: bool = True


@dataclass(frozen=True)
class InfotextParts:
    """An infotext cut into its three parts (params_line is "" when the text has none)."""

    prompt: str
    negative_prompt: str
    params_line: str


def split_infotext(text: str) -> InfotextParts:
    """Prompt, negative prompt and params line. The last line is params only with >= 3 pairs."""
    *lines, last_line = text.strip().split("\n")
    if len(RE_PARAM.findall(last_line)) < 3:
        lines.append(last_line)
        last_line = ""

    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for raw in lines:
        line = raw.strip()
        if line.startswith(NEGATIVE_PROMPT_PREFIX):
            in_negative = True
            line = line[len(NEGATIVE_PROMPT_PREFIX) :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    return InfotextParts(_join_lines(prompt_lines), _join_lines(negative_lines), last_line)


def _join_lines(lines: list[str]) -> str:
    # A1111 joins with "\n" but skips the separator while the text so far is empty.
    text = ""
    for line in lines:
        text += ("" if text == "" else "\n") + line
    return text


def parse_params_line(line: str) -> dict[str, Any]:
    """'Key: value, ...' -> dict; quoted values JSON-decoded, 'WxH' values split into Key-1/Key-2."""
    res: dict[str, Any] = {}
    for key, raw in RE_PARAM.findall(line):
        if raw == "":
            continue  # A1111 fails on an empty value and skips that key
        value = unquote(raw) if raw[0] == '"' and raw[-1] == '"' else raw
        size = RE_IMAGESIZE.match(value) if isinstance(value, str) else None
        if size is not None:
            res[f"{key}-1"] = size.group(1)
            res[f"{key}-2"] = size.group(2)
        else:
            res[key] = value
    return res


def parse_generation_parameters(
    text: str,
    skip_fields: Iterable[str] = (),
    *,
    extract_styles: StylesExtractor | None = None,
    options: ParseOptions | None = None,
    prompt_uses_emphasis: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Parse an infotext the way A1111 1.10 does (infotext_utils.parse_generation_parameters).

    Values read from the text stay strings ("20", "7", "512"); defaults added for missing keys
    have A1111's types (0, 32, False, "1"). `extract_styles` recognises styles in the prompts
    (A1111: shared.prompt_styles.extract_styles_from_prompt); without it styles are not inferred.
    `prompt_uses_emphasis` defaults to this module's check of A1111's attention syntax.
    """
    opts = options or ParseOptions()
    parts = split_infotext(text)
    prompt, negative_prompt = parts.prompt, parts.negative_prompt
    res = parse_params_line(parts.params_line)

    if extract_styles is not None and opts.infotext_styles != "Ignore":
        prompt, negative_prompt = _apply_styles(res, prompt, negative_prompt, extract_styles, opts)

    res["Prompt"] = prompt
    res["Negative prompt"] = negative_prompt
    _add_defaults(res, prompt, negative_prompt, opts, prompt_uses_emphasis or uses_emphasis)
    if opts.auto_backcompat:
        apply_version_backcompat(res)
    for key in skip_fields:
        res.pop(key, None)
    return res


def _apply_styles(
    res: dict[str, Any], prompt: str, negative: str, extract: StylesExtractor, opts: ParseOptions
) -> tuple[str, str]:
    found = extract(prompt, negative)
    same_hr_styles = True
    has_hr_prompts = "Hires prompt" in res or "Hires negative prompt" in res
    infotext_version = parse_version(res.get("Version"))
    if has_hr_prompts and (infotext_version is None or infotext_version > V180_HR_STYLES):
        hr_found = extract(res.get("Hires prompt", prompt), res.get("Hires negative prompt", negative))
        same_hr_styles = found.styles == hr_found.styles
        if same_hr_styles:
            res["Hires prompt"] = "" if hr_found.prompt == found.prompt else hr_found.prompt
            res["Hires negative prompt"] = (
                "" if hr_found.negative_prompt == found.negative_prompt else hr_found.negative_prompt
            )
    if not same_hr_styles:
        return prompt, negative
    if opts.infotext_styles == "Apply" or (opts.infotext_styles == "Apply if any" and found.styles):
        res["Styles array"] = found.styles
    return found.prompt, found.negative_prompt


# Defaults for keys missing from an infotext, in A1111's order (after Clip skip, Hypernet, hires and
# inpaint keys, old hires conversion).
_HIRES_AND_INPAINT_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("Hires sampler", "Use same sampler"),
    ("Hires schedule type", "Use same scheduler"),
    ("Hires checkpoint", "Use same checkpoint"),
    ("Hires prompt", ""),
    ("Hires negative prompt", ""),
    ("Mask mode", "Inpaint masked"),
    ("Masked content", "original"),
    ("Inpaint area", "Whole picture"),
    ("Masked area padding", 32),
)
_LATE_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("RNG", "GPU"),
    ("Schedule type", "Automatic"),
    ("Schedule max sigma", 0),
    ("Schedule min sigma", 0),
    ("Schedule rho", 0),
    ("VAE Encoder", "Full"),
    ("VAE Decoder", "Full"),
    ("FP8 weight", "Disable"),
)


def _add_defaults(
    res: dict[str, Any], prompt: str, negative: str, opts: ParseOptions, emphasis_check: Callable[[str], bool]
) -> None:
    res.setdefault("Clip skip", "1")  # a missing Clip skip means the default, 1
    hypernet = res.get("Hypernet")
    if hypernet is not None:
        res["Prompt"] += f"<hypernet:{hypernet}:{res.get('Hypernet strength', '1.0')}>"
    if "Hires resize-1" not in res:
        res["Hires resize-1"] = 0
        res["Hires resize-2"] = 0
    for key, value in _HIRES_AND_INPAINT_DEFAULTS:
        res.setdefault(key, value)
    restore_old_hires_fix_params(res, opts.use_old_hires_fix_width_height)
    for key, value in _LATE_DEFAULTS:
        res.setdefault(key, value)
    if "Cache FP16 weight for LoRA" not in res and res["FP8 weight"] != "Disable":
        res["Cache FP16 weight for LoRA"] = False
    if "Emphasis" not in res and (emphasis_check(prompt) or emphasis_check(negative)):
        res["Emphasis"] = "Original"
    res.setdefault("Refiner switch by sampling steps", False)


def old_hires_fix_first_pass_dimensions(width: int, height: int) -> tuple[int, int]:
    """A1111's pre-1.0 automatic first-pass size: about 512x512 pixels, rounded up to 64."""
    scale = math.sqrt(512 * 512 / (width * height))
    return math.ceil(scale * width / 64) * 64, math.ceil(scale * height / 64) * 64


def restore_old_hires_fix_params(res: dict[str, Any], use_old_hires_fix_width_height: bool = False) -> None:
    """Convert old 'First pass size' infotexts into Size + Hires resize (in place)."""
    if use_old_hires_fix_width_height:
        hires_width = int(res.get("Hires resize-1", 0))
        hires_height = int(res.get("Hires resize-2", 0))
        if hires_width and hires_height:
            res["Size-1"] = hires_width
            res["Size-2"] = hires_height
            return

    first_w, first_h = res.get("First pass size-1"), res.get("First pass size-2")
    if first_w is None or first_h is None:
        return
    first_width, first_height = int(first_w), int(first_h)
    width = int(res.get("Size-1", 512))
    height = int(res.get("Size-2", 512))
    if first_width == 0 or first_height == 0:
        first_width, first_height = old_hires_fix_first_pass_dimensions(width, height)
    res["Size-1"] = first_width
    res["Size-2"] = first_height
    res["Hires resize-1"] = width
    res["Hires resize-2"] = height


# --- Version-dependent compatibility flags (A1111 infotext_versions.backcompat) ---------------

V160 = packaging_version.parse("1.6.0")
V170_TSNR = packaging_version.parse("v1.7.0-225")
V180 = packaging_version.parse("1.8.0")
V180_HR_STYLES = packaging_version.parse("1.8.0-139")


def parse_version(text: Any) -> packaging_version.Version | None:
    """'v1.8.0-139-gabcdef' -> 1.8.0.post139; anything unparseable -> None."""
    if not isinstance(text, str):
        return None
    match = re.match(r"([^-]+-[^-]+)-.*", text)
    if match:
        text = match.group(1)
    try:
        return packaging_version.parse(text)
    except packaging_version.InvalidVersion:
        return None


def apply_version_backcompat(res: dict[str, Any]) -> None:
    """Infotexts from older versions switch on the settings that reproduce those versions."""
    ver = parse_version(res.get("Version"))
    if ver is None:
        return
    if ver < V160 and "[" in res.get("Prompt", ""):
        res["Old prompt editing timelines"] = True
    if ver < V160 and res.get("Sampler", "") in ("DDIM", "PLMS"):
        res["Pad conds v0"] = True
    if ver < V170_TSNR:
        res["Downcast alphas_cumprod"] = True
    if ver < V180 and res.get("Refiner"):
        res["Refiner switch by sampling steps"] = True


# --- Emphasis detection (A1111 prompt_parser.parse_prompt_attention weights) ------------------

_RE_ATTENTION = re.compile(
    r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:
""",
    re.X,
)
_RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_ROUND, _SQUARE = 1.1, 1 / 1.1


def attention_weights(text: str) -> list[tuple[str, float]]:
    """(text, weight) pieces of a prompt per A1111's attention syntax (BREAK has weight -1)."""
    pieces: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply_from(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _RE_ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            pieces.append([token[1:], 1.0])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open:
            multiply_from(round_open.pop(), _as_float(weight, 1.0))
        elif token == ")" and round_open:
            multiply_from(round_open.pop(), _ROUND)
        elif token == "]" and square_open:
            multiply_from(square_open.pop(), _SQUARE)
        else:
            for i, part in enumerate(_RE_BREAK.split(token)):
                if i > 0:
                    pieces.append(["BREAK", -1.0])
                pieces.append([part, 1.0])
    for start in round_open:
        multiply_from(start, _ROUND)
    for start in square_open:
        multiply_from(start, _SQUARE)
    return [(str(t), float(w)) for t, w in pieces]


def _as_float(text: str, fallback: float) -> float:
    try:
        return float(text)
    except ValueError:
        return fallback


def uses_emphasis(prompt: str) -> bool:
    """True when some part of the prompt has a weight other than 1 (BREAK ignored)."""
    return any(weight != 1.0 for text, weight in attention_weights(prompt) if text != "BREAK")
