"""A1111's `modules.rng` for extensions: ImageRNG (per-image seeded noise) and slerp."""

from __future__ import annotations

from modules.generation.rng import ImageRNG, slerp

__all__ = ["ImageRNG", "slerp"]
