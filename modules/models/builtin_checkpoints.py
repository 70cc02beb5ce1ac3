"""Where the shipped demo checkpoint lives (read by the composition root, never at import)."""

from __future__ import annotations

from pathlib import Path

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
DEMO_CHECKPOINT = BUILTIN_DIR / "demo-shapes.safetensors"
DEMO_IMAGE_SIZE = 128  # the demo model was trained at this size (tools/demo/model.py)


def builtin_checkpoints(builtin_dir: Path = BUILTIN_DIR) -> tuple[Path, ...]:
    """The shipped checkpoint files present on disk (the demo model; none if it was deleted)."""
    return tuple(sorted(builtin_dir.glob("*.safetensors"))) if builtin_dir.is_dir() else ()
