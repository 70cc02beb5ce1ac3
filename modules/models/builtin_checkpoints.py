"""Where the shipped demo checkpoint lives (read by the composition root, never at import)."""

from __future__ import annotations

from pathlib import Path

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
DEMO_CHECKPOINT = BUILTIN_DIR / "demo-shapes.safetensors"
DEMO_IMAGE_SIZE = 128  # the demo model was trained at this size (tools/demo/model.py)
# The words and colours the demo model was trained on (tools/demo/dataset.py draws them; the demo
# interrogator, modules/interrogate/demo.py, classifies by them).
DEMO_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 135, 20),
    "yellow": (240, 220, 30),
    "green": (40, 170, 50),
    "cyan": (30, 200, 210),
    "blue": (30, 60, 220),
    "purple": (140, 50, 190),
    "pink": (245, 110, 180),
}
DEMO_SHAPES = ("circle", "square", "triangle", "star")


def builtin_checkpoints(builtin_dir: Path = BUILTIN_DIR) -> tuple[Path, ...]:
    """The shipped checkpoint files present on disk (the demo model; none if it was deleted)."""
    return tuple(sorted(builtin_dir.glob("*.safetensors"))) if builtin_dir.is_dir() else ()
