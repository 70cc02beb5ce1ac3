"""A1111's `modules.processing_scripts.comments` for extensions: strip_comments."""

from __future__ import annotations

from modules.generation.prompt_parser import strip_comments

__all__ = ["strip_comments"]
