"""Filename patterns ([seed]-[prompt_spaces], [date], ...) as A1111 1.10 expands them.

Rules kept from A1111's images.FilenameGenerator:
- `text[token]`: a known token is replaced by its value; a token whose value is unknown (no
  data for it, bad argument, unknown name) stays in the name literally as `[token]`;
- some tokens do not apply in a situation (e.g. [batch_number] at batch size 1) and then
  disappear together with the literal text just before them;
- values from prompts and names are sanitised (forbidden characters -> '_', cut to the
  filenames max length); arguments are written as `[token<arg><arg2>]`.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import PurePath
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from PIL import Image

INVALID_FILENAME_CHARS = '#<>:"/\\|?*\n\r\t'
UNIX_INVALID_FILENAME_CHARS = "/"
DEFAULT_TIME_FORMAT = "%Y%m%d%H%M%S"

_RE_NONLETTERS = re.compile(r"[\s" + re.escape(string.punctuation) + "]+")
_RE_PATTERN = re.compile(r"(.*?)(?:\[([^\[\]]+)\]|$)")
_RE_PATTERN_ARG = re.compile(r"(.*)<([^>]*)>$")


class _SkipWithPreviousText:
    """Token value meaning: this token does not apply; drop it and the text before it."""


SKIP = _SkipWithPreviousText()


@dataclass(frozen=True)
class Sanitizer:
    """Makes a piece of text safe inside a file name (A1111 sanitize_filename_part)."""

    max_length: int = 128
    unix: bool = False  # --unix-filenames-sanitization: only '/' is replaced

    def __call__(self, text: str | None, replace_spaces: bool = True) -> str | None:
        if text is None:
            return None
        if replace_spaces:
            text = text.replace(" ", "_")
        invalid = UNIX_INVALID_FILENAME_CHARS if self.unix else INVALID_FILENAME_CHARS
        text = text.translate({ord(c): "_" for c in invalid})
        return text.lstrip(" ")[: self.max_length].rstrip(" .")


@dataclass
class FilenameContext:
    """Per-image facts the tokens read. None means "not known here": that token stays literal.

    `prompt` is this image's prompt (styles applied); `main_prompt` / `negative_prompt` are the
    job's main prompts (A1111 p.prompt / p.negative_prompt). `scheduler` is the chosen schedule
    label; `default_scheduler` is what "Automatic" means for this sampler (e.g. "karras").
    """

    seed: int | None = None
    prompt: str | None = None
    main_prompt: str | None = None
    negative_prompt: str | None = None
    all_seeds: Sequence[int] = ()
    batch_size: int | None = None
    n_iter: int | None = None
    batch_index: int = 0
    iteration: int = 0
    steps: int | None = None
    cfg_scale: float | None = None
    sampler_name: str | None = None
    scheduler: str | None = None
    default_scheduler: str | None = None
    denoising_strength: float | None = None
    clip_skip: int | None = None
    model_hash: str | None = None
    model_name: str | None = None
    vae_file: str | None = None  # path or file name of the loaded external VAE
    styles: Sequence[str] | None = None
    style_prompts: Sequence[str] = ()  # positive prompts of the selected styles
    job_timestamp: str | None = None
    user: str | None = None
    basename: str | None = None
    zip: bool = False
    now: datetime | None = None  # fixed clock for [date]/[datetime]; None = now


TokenFn = Callable[["FilenameGenerator", list[str]], Any]


@dataclass
class FilenameGenerator:
    """Expands filename patterns for one image."""

    ctx: FilenameContext
    image: Image.Image | None = None
    max_prompt_words: int = 8
    sanitize: Sanitizer = field(default_factory=Sanitizer)

    def apply(self, pattern: str) -> str:
        out = ""
        for match in _RE_PATTERN.finditer(pattern):
            text, token = match.groups()
            if token is None:
                out += text
                continue
            name, args = _split_args(token)
            value = self._value(name, args)
            if value is SKIP:
                continue
            if value is not None:
                out += text + str(value)
                continue
            out += f"{text}[{name}]"
        return out

    def _value(self, name: str, args: list[str]) -> Any:
        entry = _TOKENS.get(name.lower())
        if entry is None:
            return None
        fn, takes_args = entry
        if args and not takes_args:
            return None
        try:
            return fn(self, args)
        except (ValueError, TypeError, IndexError):
            return None  # bad argument or missing data: the token stays literal, as in A1111

    # --- token helpers ---------------------------------------------------------------------
    def _clock(self, zone: tzinfo | None = None) -> datetime:
        return (self.ctx.now or datetime.now()).astimezone(zone)

    def datetime_token(self, args: list[str]) -> str | None:
        time_format = args[0] if args and args[0] != "" else DEFAULT_TIME_FORMAT
        zone = _zone(args[1]) if len(args) > 1 else None
        moment = self._clock(zone)
        try:
            formatted = moment.strftime(time_format)
        except (ValueError, TypeError):
            formatted = moment.strftime(DEFAULT_TIME_FORMAT)
        return self.sanitize(formatted, replace_spaces=False)

    def hasprompt(self, args: list[str]) -> str | None:
        if self.ctx.prompt is None:
            return None
        lower = self.ctx.prompt.lower()
        out = ""
        for arg in args:
            if arg == "":
                continue
            expected, _, default = arg.partition("|")
            expected = expected.lower()
            out += expected if lower.find(expected) >= 0 else default
        return self.sanitize(out)

    def prompt_no_styles(self) -> str | None:
        prompt = self.ctx.prompt
        if prompt is None or self.ctx.styles is None:
            return None
        for style in self.ctx.style_prompts:
            if not style:
                continue
            for part in style.split("{prompt}"):
                prompt = prompt.replace(part, "").replace(", ,", ",").strip().strip(",")
            prompt = prompt.replace(style, "").strip().strip(",").strip()
        return self.sanitize(prompt, replace_spaces=False)

    def prompt_words(self) -> str | None:
        words = [w for w in _RE_NONLETTERS.split(self.ctx.prompt or "") if w]
        if not words:
            words = ["empty"]
        return self.sanitize(" ".join(words[: self.max_prompt_words]), replace_spaces=False)

    def scheduler_label(self) -> str:
        label = self.ctx.scheduler or "Automatic"
        if label == "Automatic":
            label = self.ctx.default_scheduler or "Automatic"
        return label.capitalize()  # A1111 capitalises ("karras" -> "Karras")

    def sampler_scheduler(self, with_sampler: bool) -> Any:
        if self.ctx.sampler_name is None or self.ctx.scheduler is None:
            return SKIP
        text = f"{self.ctx.sampler_name} {self.scheduler_label()}" if with_sampler else self.scheduler_label()
        return self.sanitize(text, replace_spaces=False)

    def vae_filename(self) -> str:
        if self.ctx.vae_file is None:
            return "NoneType"  # what A1111 writes when no external VAE is loaded
        parts = PurePath(self.ctx.vae_file).name.split(".")
        return parts[1] if len(parts) > 1 and parts[0] == "" else parts[0]

    def image_hash(self, args: list[str]) -> str | None:
        if self.image is None:
            return None
        length = int(args[0]) if args and args[0] != "" else None
        return hashlib.sha256(self.image.tobytes()).hexdigest()[:length]


def _split_args(token: str) -> tuple[str, list[str]]:
    args: list[str] = []
    while True:
        match = _RE_PATTERN_ARG.match(token)
        if match is None:
            return token, args
        token, arg = match.groups()
        args.insert(0, arg)


def _zone(name: str) -> tzinfo | None:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # unknown or malformed zone: local time, as A1111
        return None


def string_hash(text: str | None, args: list[str]) -> str | None:
    if text is None:
        return None
    length = int(args[0]) if args and args[0] != "" else 8
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _seed_first(g: FilenameGenerator) -> Any:
    if g.ctx.batch_size is None:
        return None
    return g.ctx.seed if g.ctx.batch_size == 1 else g.ctx.all_seeds[0]


def _seed_last(g: FilenameGenerator) -> Any:
    if g.ctx.batch_size is None:
        return None
    return SKIP if g.ctx.batch_size == 1 else g.ctx.all_seeds[-1]


def _batch_number(g: FilenameGenerator) -> Any:
    if g.ctx.batch_size is None:
        return None
    return SKIP if g.ctx.batch_size == 1 or g.ctx.zip else g.ctx.batch_index + 1


def _generation_number(g: FilenameGenerator) -> Any:
    c = g.ctx
    if c.batch_size is None or c.n_iter is None:
        return None
    if (c.n_iter == 1 and c.batch_size == 1) or c.zip:
        return SKIP
    return c.iteration * c.batch_size + c.batch_index + 1


def _styles(g: FilenameGenerator) -> str | None:
    if g.ctx.styles is None:
        return None
    return g.sanitize(", ".join(s for s in g.ctx.styles if s != "None") or "None", replace_spaces=False)


def _full_prompt(g: FilenameGenerator) -> str | None:
    main = g.ctx.main_prompt if g.ctx.main_prompt is not None else g.ctx.prompt
    if main is None or g.ctx.negative_prompt is None:
        return None
    return f"{main} {g.ctx.negative_prompt}"  # the space keeps "a"+"b c" apart from "a b"+"c"


def _size(g: FilenameGenerator, index: int) -> int | None:
    return None if g.image is None else g.image.size[index]


def _plain(fn: Callable[[FilenameGenerator], Any]) -> tuple[TokenFn, bool]:
    return (lambda g, _args: fn(g)), False


def _with_args(fn: TokenFn) -> tuple[TokenFn, bool]:
    return fn, True


_TOKENS: Mapping[str, tuple[TokenFn, bool]] = MappingProxyType(
    {
        "basename": _plain(lambda g: g.ctx.basename or "img"),
        "seed": _plain(lambda g: g.ctx.seed if g.ctx.seed is not None else ""),
        "seed_first": _plain(_seed_first),
        "seed_last": _plain(_seed_last),
        "steps": _plain(lambda g: g.ctx.steps),
        "cfg": _plain(lambda g: g.ctx.cfg_scale),
        "width": _plain(lambda g: _size(g, 0)),
        "height": _plain(lambda g: _size(g, 1)),
        "styles": _plain(_styles),
        "sampler": _plain(lambda g: g.sanitize(g.ctx.sampler_name, replace_spaces=False)),
        "sampler_scheduler": _plain(lambda g: g.sampler_scheduler(True)),
        "scheduler": _plain(lambda g: g.sampler_scheduler(False)),
        "model_hash": _plain(lambda g: g.ctx.model_hash),
        "model_name": _plain(lambda g: g.sanitize(g.ctx.model_name, replace_spaces=False)),
        "date": _plain(lambda g: g._clock().strftime("%Y-%m-%d")),
        "datetime": _with_args(lambda g, args: g.datetime_token(args)),
        "job_timestamp": _plain(lambda g: g.ctx.job_timestamp),
        "prompt_hash": _with_args(lambda g, args: string_hash(g.ctx.prompt, args)),
        "negative_prompt_hash": _with_args(lambda g, args: string_hash(g.ctx.negative_prompt, args)),
        "full_prompt_hash": _with_args(lambda g, args: string_hash(_full_prompt(g), args)),
        "prompt": _plain(lambda g: g.sanitize(g.ctx.prompt)),
        "prompt_no_styles": _plain(lambda g: g.prompt_no_styles()),
        "prompt_spaces": _plain(lambda g: g.sanitize(g.ctx.prompt, replace_spaces=False)),
        "prompt_words": _plain(lambda g: g.prompt_words()),
        "batch_number": _plain(_batch_number),
        "batch_size": _plain(lambda g: g.ctx.batch_size),
        "generation_number": _plain(_generation_number),
        "hasprompt": _with_args(lambda g, args: g.hasprompt(args)),
        "clip_skip": _plain(lambda g: g.ctx.clip_skip),
        "denoising": _plain(lambda g: g.ctx.denoising_strength if g.ctx.denoising_strength else SKIP),
        "user": _plain(lambda g: g.ctx.user),
        "vae_filename": _plain(lambda g: g.vae_filename()),
        "none": _plain(lambda g: ""),  # an empty token: gives just the sequence number
        "image_hash": _with_args(lambda g, args: g.image_hash(args)),
    }
)

TOKEN_NAMES: tuple[str, ...] = tuple(_TOKENS)
