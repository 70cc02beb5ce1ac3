"""Procedural training data for the demo model: one plain shape on a plain or two-tone background.

A scene is a shape (circle, square, triangle, star) in one of eight saturated colours, with a size
and a position, on a neutral background (white, black, gray, or two of them split in halves).
Backgrounds are neutral so that "the shape's colour" is always the saturated part of the image:
that keeps the learning problem and the adherence judge simple. Captions come from a small
grammar; parts (size, background, position) are left out at random so short prompts ("a red
circle") work too, with the left-out attribute then random in the image.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from modules.models.builtin_checkpoints import DEMO_COLOURS, DEMO_SHAPES

COLOURS = DEMO_COLOURS  # the demo model's vocabulary (modules/models/builtin_checkpoints.py)
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
}
SHAPES = DEMO_SHAPES
SIZES: dict[str, float] = {"small": 0.15, "large": 0.27}  # shape radius as a fraction of the image side
POSITIONS: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5),
    "top left": (0.3, 0.3),
    "top right": (0.7, 0.3),
    "bottom left": (0.3, 0.7),
    "bottom right": (0.7, 0.7),
}
SUPERSAMPLE = 4  # drawn larger, then reduced: anti-aliased edges like a real image


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    size: str
    position: str
    background: str  # a BACKGROUNDS name
    background2: str | None = None  # second half of a two-tone background
    split_vertical: bool = True  # two-tone: left/right halves (else top/bottom)
    jitter_x: float = 0.0  # small offsets (fractions of the side) so positions are not pixel-exact
    jitter_y: float = 0.0
    scale: float = 1.0  # size jitter

    def __post_init__(self) -> None:
        checks = (
            (self.shape, SHAPES, "shape"),
            (self.colour, COLOURS, "colour"),
            (self.size, SIZES, "size"),
            (self.position, POSITIONS, "position"),
            (self.background, BACKGROUNDS, "background"),
        )
        for value, allowed, what in checks:
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}; valid: {list(allowed)}")
        if self.background2 is not None and self.background2 not in BACKGROUNDS:
            raise ValueError(f"unknown background {self.background2!r}; valid: {list(BACKGROUNDS)}")


def random_scene(rng: random.Random) -> Scene:
    background = rng.choice(list(BACKGROUNDS))
    two_tone = rng.random() < 0.25
    second = rng.choice([b for b in BACKGROUNDS if b != background]) if two_tone else None
    return Scene(
        shape=rng.choice(SHAPES),
        colour=rng.choice(list(COLOURS)),
        size=rng.choice(list(SIZES)),
        position=rng.choice(list(POSITIONS)),
        background=background,
        background2=second,
        split_vertical=rng.random() < 0.5,
        jitter_x=rng.uniform(-0.04, 0.04),
        jitter_y=rng.uniform(-0.04, 0.04),
        scale=rng.uniform(0.88, 1.12),
    )


def caption(scene: Scene, rng: random.Random | None = None, colour_rate: float = 1.0) -> str:
    """'a large red circle on a white background, top left'; with `rng`, optional parts may be left out.

    `colour_rate` < 1 (with `rng`) also leaves the colour out at times ("a circle ..."), so that
    prompts naming only the shape are ones the model has seen.
    """

    def keep(probability: float) -> bool:
        return rng is None or rng.random() < probability

    size = f"{scene.size} " if keep(0.6) else ""
    colour = f"{scene.colour} " if colour_rate >= 1.0 or keep(colour_rate) else ""
    text = f"a {size}{colour}{scene.shape}"
    if keep(0.7):
        ground = scene.background if scene.background2 is None else f"{scene.background} and {scene.background2}"
        text += f" on a {ground} background"
    if keep(0.7):
        text += f", {scene.position}"
    return text


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        s = r * 0.86  # about the circle's area, so sizes read alike
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        corners = [-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)]
        shift = r * 0.25  # centre the bounding box rather than the centroid
        return [(cx + r * 1.1 * math.cos(a), cy + shift + r * 1.1 * math.sin(a)) for a in corners]
    if shape == "star":
        points = []
        for k in range(10):
            radius = r * 1.15 if k % 2 == 0 else r * 0.47
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    raise ValueError(f"not a polygon shape: {shape!r}")


def shape_centre(scene: Scene, size: int) -> tuple[float, float]:
    """Centre of the shape in pixels."""
    fx, fy = POSITIONS[scene.position]
    return (fx + scene.jitter_x) * size, (fy + scene.jitter_y) * size


def render(scene: Scene, size: int) -> Image.Image:
    """The scene as an RGB image of size x size pixels."""
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    if scene.background2 is not None:
        half = (big // 2, 0, big, big) if scene.split_vertical else (0, big // 2, big, big)
        draw.rectangle(half, fill=BACKGROUNDS[scene.background2])
    cx, cy = shape_centre(scene, big)
    r = SIZES[scene.size] * scene.scale * big
    fill = COLOURS[scene.colour]
    if scene.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon(_polygon(scene.shape, cx, cy, r), fill=fill)
    return image.resize((size, size), Image.Resampling.LANCZOS)


@dataclass(frozen=True)
class Sample:
    scene: Scene
    caption: str
    image: Image.Image


def make_samples(count: int, size: int, seed: int) -> list[Sample]:
    """`count` random scenes with captions (parts randomly left out), deterministic for a seed."""
    rng = random.Random(seed)
    samples = []
    for _ in range(count):
        scene = random_scene(rng)
        samples.append(Sample(scene, caption(scene, rng), render(scene, size)))
    return samples
