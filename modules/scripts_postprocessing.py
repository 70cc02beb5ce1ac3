"""A1111's `modules.scripts_postprocessing` for extensions: Extras-tab scripts."""

from __future__ import annotations

from modules.extension_host.postprocessing import (
    PostprocessedImage,
    PostprocessedImageSharedInfo,
    PostprocessingScripts,
    ScriptPostprocessing,
    enable_if_process,
)

ScriptPostprocessingRunner = PostprocessingScripts

__all__ = [
    "PostprocessedImage",
    "PostprocessedImageSharedInfo",
    "ScriptPostprocessing",
    "ScriptPostprocessingRunner",
    "enable_if_process",
]
