"""Session-scoped tiny model files for model tests (a plugin of tests/conftest.py: the `tiny_models` fixture is available everywhere).

The files are written once per test session into a temporary folder by
tools.tiny_models (a few seconds). Tests that need an A1111-style data folder build
one with `models_home()` and symlink the files they need into it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from modules.core.cmd_args import build_parser
from modules.core.paths import Paths
from modules.models.families import ModelFamily

__all__ = ["TinyModelFiles", "link_into", "models_home", "tiny_models"]


@dataclass(frozen=True)
class TinyModelFiles:
    root: Path
    files: dict[str, Path]

    def checkpoint(self, family: ModelFamily | str) -> Path:
        return self.files[ModelFamily(family).value]

    @property
    def vae(self) -> Path:
        return self.files["vae"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModelFiles:
    """tiny-<family>.safetensors for sd1, sd1-inpaint, sd2, sd2-v (+ .yaml), sdxl, sdxl-refiner; tiny.vae.safetensors.

    Every test module that star-imports this fixture gets its own fixture instance, so the files
    are written once per session into a fixed folder of the session's temp dir and reused.
    """
    from tools.tiny_models import DEFAULT_FAMILIES, write_all

    root = tmp_path_factory.getbasetemp() / "tiny-models"
    done = root / ".complete"
    if done.is_file():
        files = {f.value: root / f"tiny-{f.value}.safetensors" for f in DEFAULT_FAMILIES}
        files["vae"] = root / "tiny.vae.safetensors"
    else:
        files = write_all(root)
        done.touch()
    return TinyModelFiles(root, files)


def models_home(root: Path, *extra_args: str) -> Paths:
    """An A1111-style data folder under `root` (models/Stable-diffusion, models/VAE, cache ...)."""
    paths = Paths.from_args(build_parser().parse_args(["--data-dir", str(root), *extra_args]))
    paths.ensure()
    return paths


def link_into(folder: Path, source: Path, name: str | None = None) -> Path:
    """Symlink `source` into `folder` (optionally under another name); returns the link."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / (name or source.name)
    os.symlink(source, link)
    return link
