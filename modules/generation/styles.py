"""Prompt styles: styles.csv files (name,prompt,negative_prompt), applying and recognising styles.

Rules follow A1111's modules/styles.py (1.10): a style text containing `{prompt}` wraps the user
prompt, otherwise it is appended after ", "; comments are stripped first; several files (and
wildcard patterns) can be loaded, the first file being where new styles are saved.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from modules.generation.infotext import ExtractedStyles
from modules.generation.prompt_parser import strip_comments

CSV_FIELDS = ("name", "prompt", "negative_prompt")
PROMPT_PLACEHOLDER = "{prompt}"


class StyleCsvError(ValueError):
    """A styles file that cannot be read as name,prompt,negative_prompt CSV (path and line named)."""


@dataclass(frozen=True)
class PromptStyle:
    name: str
    prompt: str = ""
    negative_prompt: str = ""
    path: Path | None = None  # the file it came from / is saved to


class StyleTextMatch(NamedTuple):
    matched: bool
    prompt: str  # with the style text removed when matched, else the prompt unchanged


def _clean(text: str, remove_comments: bool) -> str:
    return (strip_comments(text) if remove_comments else text).strip()


def apply_styles_to_prompt(prompt: str, style_texts: Iterable[str], *, remove_comments: bool = True) -> str:
    """Apply style texts in order: `{prompt}` is replaced by the prompt so far, otherwise appended."""
    prompt = _clean(prompt, remove_comments)
    for raw_style in style_texts:
        style = _clean(raw_style, remove_comments)
        if PROMPT_PLACEHOLDER in style:
            prompt = style.replace(PROMPT_PLACEHOLDER, prompt)
        elif style:
            prompt = f"{prompt}, {style}" if prompt else style
    return prompt


def extract_style_text_from_prompt(style_text: str, prompt: str, *, remove_comments: bool = True) -> StyleTextMatch:
    """Undo one style on a prompt, if the prompt looks like that style was applied to it.

    "masterpiece" on "1girl, masterpiece" -> (True, "1girl");
    "masterpiece, {prompt}" on "masterpiece, 1girl" -> (True, "1girl").
    """
    stripped_prompt = prompt.strip()
    style = _clean(style_text, remove_comments)
    if PROMPT_PLACEHOLDER in style:
        left, _, right = style.partition(PROMPT_PLACEHOLDER)
        if stripped_prompt.startswith(left) and stripped_prompt.endswith(right):
            return StyleTextMatch(True, stripped_prompt[len(left) : len(stripped_prompt) - len(right)])
    elif stripped_prompt.endswith(style):
        rest = stripped_prompt[: len(stripped_prompt) - len(style)]
        return StyleTextMatch(True, rest[:-2] if rest.endswith(", ") else rest)
    return StyleTextMatch(False, prompt)


def _extract_one(style: PromptStyle, prompt: str, negative: str, remove_comments: bool) -> tuple[str, str] | None:
    """Both prompts with `style` removed, or None if the style does not match both."""
    if not style.prompt and not style.negative_prompt:
        return None
    positive = extract_style_text_from_prompt(style.prompt, prompt, remove_comments=remove_comments)
    if not positive.matched:
        return None
    negative_match = extract_style_text_from_prompt(style.negative_prompt, negative, remove_comments=remove_comments)
    if not negative_match.matched:
        return None
    return positive.prompt, negative_match.prompt


# --------------------------------------------------------------------------------------------
# CSV files


def read_styles_csv(path: Path) -> list[PromptStyle]:
    """Read one styles file. Accepts A1111's old `name,text` header; rows whose name starts with '#' are skipped."""
    styles: list[PromptStyle] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, skipinitialspace=True, strict=True)
            header = list(reader.fieldnames or [])
            prompt_column = _check_header(path, header)
            for row in reader:
                if None in row:
                    raise StyleCsvError(
                        f"{path}, line {reader.line_num}: {len(header) + len(row[None])} fields but the header has "
                        f"{len(header)}; put prompts that contain commas in double quotes"
                    )
                name = row.get("name") or ""
                if name.startswith("#") or not any(row.values()):
                    continue
                prompt = row.get(prompt_column) or ""
                styles.append(PromptStyle(name, prompt, row.get("negative_prompt") or "", path))
    except csv.Error as error:
        raise StyleCsvError(f"{path}: not valid CSV ({error})") from error
    except UnicodeDecodeError as error:
        raise StyleCsvError(f"{path}: not UTF-8 text ({error.reason})") from error
    return styles


def _check_header(path: Path, header: list[str]) -> str:
    if not header:
        raise StyleCsvError(f"{path}: empty file; expected a header line 'name,prompt,negative_prompt'")
    if "name" not in header:
        raise StyleCsvError(f"{path}: the header {header} has no 'name' column (expected name,prompt,negative_prompt)")
    if "prompt" in header:
        return "prompt"
    if "text" in header:
        return "text"  # A1111's old two-column format
    raise StyleCsvError(f"{path}: the header {header} has no 'prompt' column (expected name,prompt,negative_prompt)")


def write_styles_csv(path: Path, styles: Iterable[PromptStyle]) -> None:
    """Write atomically (temp file + rename), keeping the previous file as `<path>.bak` like A1111."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        shutil.copy(path, f"{path}.bak")
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
            writer.writeheader()
            for style in styles:
                writer.writerow({"name": style.name, "prompt": style.prompt, "negative_prompt": style.negative_prompt})
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _is_pattern(path: Path) -> bool:
    return "*" in path.name or "?" in path.name


def expand_style_paths(paths: Sequence[str | Path]) -> tuple[Path, list[Path]]:
    """(default file for new styles, all files to read) for the --styles-file values.

    A wildcard pattern expands to the matching files (sorted); if the first value is a pattern, the
    default file is its first match, or styles.csv in its folder (A1111 rule).
    """
    if not paths:
        raise ValueError("at least one styles file path is needed")
    given = [Path(p) for p in paths]
    first = given[0]
    if _is_pattern(first):
        matches = sorted(first.parent.glob(first.name))
        default = matches[0] if matches else first.parent / "styles.csv"
        given.insert(0, default)
    else:
        default = first
    files: list[Path] = []
    for path in given:
        candidates = sorted(path.parent.glob(path.name)) if _is_pattern(path) else [path]
        files.extend(candidate for candidate in candidates if candidate not in files)
    return default, files


class StyleDatabase:
    """Styles from one or more CSV files, by name (a later file overrides an earlier name)."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self.default_path, self.files = expand_style_paths(paths)
        self._patterns = list(paths)
        self.styles: dict[str, PromptStyle] = {}
        self.load_errors: list[str] = []
        self.reload()

    def reload(self) -> None:
        """Read all files again. A malformed file is skipped and its error kept in `load_errors`."""
        self.default_path, self.files = expand_style_paths(self._patterns)
        self.styles = {}
        self.load_errors = []
        for path in self.files:
            if not path.is_file():
                continue
            try:
                loaded = read_styles_csv(path)
            except StyleCsvError as error:  # boundary: one bad file must not hide the others
                self.load_errors.append(str(error))
                continue
            self.styles.update((style.name, style) for style in loaded)

    def get_style_prompts(self, names: Sequence[str]) -> list[str]:
        return [self.styles[name].prompt if name in self.styles else "" for name in names]

    def get_negative_style_prompts(self, names: Sequence[str]) -> list[str]:
        return [self.styles[name].negative_prompt if name in self.styles else "" for name in names]

    def apply_styles_to_prompt(self, prompt: str, names: Sequence[str], *, remove_comments: bool = True) -> str:
        """Unknown style names are ignored, as in A1111."""
        return apply_styles_to_prompt(prompt, self.get_style_prompts(names), remove_comments=remove_comments)

    def apply_negative_styles_to_prompt(
        self, negative_prompt: str, names: Sequence[str], *, remove_comments: bool = True
    ) -> str:
        texts = self.get_negative_style_prompts(names)
        return apply_styles_to_prompt(negative_prompt, texts, remove_comments=remove_comments)

    def extract_styles_from_prompt(
        self, prompt: str, negative_prompt: str, *, remove_comments: bool = True
    ) -> ExtractedStyles:
        """Find styles that were applied to these prompts (for infotext pasting) and remove them.

        Styles are peeled off one at a time (last applied first) and reported in application order.
        """
        if remove_comments:
            prompt, negative_prompt = strip_comments(prompt), strip_comments(negative_prompt)
        candidates = list(self.styles.values())
        found: list[str] = []
        while True:
            for style in candidates:
                stripped = _extract_one(style, prompt, negative_prompt, remove_comments)
                if stripped is not None:
                    prompt, negative_prompt = stripped
                    candidates.remove(style)
                    found.append(style.name)
                    break
            else:
                break
        return ExtractedStyles(list(reversed(found)), prompt, negative_prompt)

    def save_style(self, style: PromptStyle) -> PromptStyle:
        """Add or replace a style (in memory); it keeps its file, or goes to the default file."""
        previous = self.styles.get(style.name)
        path = style.path or (previous.path if previous else None) or self.default_path
        stored = replace(style, path=path)
        self.styles[style.name] = stored
        return stored

    def delete_style(self, name: str) -> None:
        if name not in self.styles:
            raise KeyError(f"no style named {name!r}")
        del self.styles[name]

    def save(self) -> None:
        """Write back every styles file (loaded ones, the default one, any a style names), each atomically."""
        loaded = (path for path in self.files if path.is_file())
        paths = {self.default_path, *loaded, *(style.path for style in self.styles.values() if style.path)}
        for path in sorted(paths):
            write_styles_csv(path, (s for s in self.styles.values() if (s.path or self.default_path) == path))
