"""Prompt template files for training (A1111 textual_inversion_templates/).

Each non-empty line is one prompt; `[name]` becomes the embedding's (or hypernetwork's) name and
`[filewords]` the image's caption (its .txt file, else words from its file name). Templates are
found by file name anywhere under the templates folder (A1111 keys them by file name only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modules.core.paths import REPO_ROOT
from modules.train.errors import TrainingError

DEFAULT_TEMPLATES_DIR = REPO_ROOT / "textual_inversion_templates"


def templates_dir(configured: str | Path | None) -> Path:
    """--textual-inversion-templates-dir, else the folder shipped with the program."""
    return Path(configured).resolve() if configured else DEFAULT_TEMPLATES_DIR


@dataclass(frozen=True)
class PromptTemplate:
    name: str  # file name, e.g. "style_filewords.txt"
    path: Path


def list_templates(folder: Path) -> dict[str, PromptTemplate]:
    """Template files by file name, sorted; a later duplicate name in a subfolder wins (as A1111)."""
    found: dict[str, PromptTemplate] = {}
    if not Path(folder).is_dir():
        return found
    for root, _dirs, files in sorted(os.walk(folder, followlinks=True)):
        for name in sorted(files):
            found[name] = PromptTemplate(name, Path(root) / name)
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def read_template(folder: Path, filename: str) -> list[str]:
    """The template's prompt lines (stripped, blank lines dropped); TrainingError if unusable."""
    if not filename:
        raise TrainingError("no prompt template file selected")
    template = list_templates(folder).get(filename)
    if template is None:
        raise TrainingError(f"prompt template file {filename!r} not found in {folder}")
    try:
        text = template.path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"prompt template file {filename!r} cannot be read: {exc}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise TrainingError(f"prompt template file {filename!r} has no prompt lines")
    return lines
