"""A1111's `modules.scripts` for extensions: the Script base class and the script runners.

`scripts_txt2img` / `scripts_img2img` are the bound app's per-tab script sets (A1111's
ScriptRunner attributes: scripts, alwayson_scripts, selectable_scripts, titles, inputs...).
"""

from __future__ import annotations

import os
from collections import namedtuple
from typing import Any

from modules.core.paths import REPO_ROOT
from modules.extension_host.facade import Lazy, current
from modules.extension_host.loader import basedir, list_script_files
from modules.extension_host.metadata import topological_sort
from modules.extension_host.script_base import (
    AlwaysVisible,
    MaskBlendArgs,
    OnComponent,
    PostprocessBatchListArgs,
    PostprocessImageArgs,
    PostProcessMaskOverlayArgs,
    PostSampleArgs,
    Script,
    ScriptBuiltinUI,
)

__all__ = [
    "AlwaysVisible",
    "MaskBlendArgs",
    "OnComponent",
    "PostProcessMaskOverlayArgs",
    "PostSampleArgs",
    "PostprocessBatchListArgs",
    "PostprocessImageArgs",
    "Script",
    "ScriptBuiltinUI",
    "ScriptFile",
    "basedir",
    "list_files_with_name",
    "list_scripts",
    "scripts_img2img",
    "scripts_postproc",
    "scripts_txt2img",
    "topological_sort",
]

ScriptFile = namedtuple("ScriptFile", ["basedir", "filename", "path"])
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])

scripts_txt2img = Lazy(lambda: current().runner.tab("txt2img"))
scripts_img2img = Lazy(lambda: current().runner.tab("img2img"))
scripts_postproc = Lazy(lambda: current().postprocessing)


def __getattr__(name: str) -> Any:
    if name == "scripts_data":
        host = current()
        return [ScriptClassData(c.cls, str(c.file.path), str(c.file.basedir), None) for c in host.loaded.scripts]
    if name == "postprocessing_scripts_data":
        host = current()
        return [ScriptClassData(c.cls, str(c.file.path), str(c.file.basedir), None) for c in host.loaded.postprocessing]
    raise AttributeError(f"module 'modules.scripts' has no attribute {name!r}")


def list_scripts(scriptdirname: str, extension: str, *, include_extensions: bool = True) -> list[ScriptFile]:
    """Files `<dir>/*<extension>` of the web UI root and the active extensions, in load order."""
    host = current()
    exts = host.active() if include_extensions else []
    files = list_script_files(exts, host.problems, core_dir=REPO_ROOT / scriptdirname, subdir=scriptdirname)
    return [
        ScriptFile(str(f.basedir), f.filename, str(f.path))
        for f in files
        if os.path.splitext(f.filename)[1].lower() == extension.lower()
    ]


def list_files_with_name(filename: str) -> list[str]:
    """`filename` in the web UI root and in every active extension folder, where it exists."""
    folders = [str(REPO_ROOT)] + [str(e.path) for e in current().active()]
    return [os.path.join(d, filename) for d in folders if os.path.isfile(os.path.join(d, filename))]
