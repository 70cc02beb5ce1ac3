"""A1111's `modules.shared` for extensions: views onto the running app (docs/extensions.md).

No state lives here: every name resolves through modules.extension_host.facade to the bound app.
`opts` reads the job's settings inside a job; `state` is the current job's progress/control.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

from modules.core.paths import REPO_ROOT
from modules.extension_host import compat_lists
from modules.extension_host.compat_options import OptionHTML, OptionInfo, OptionsTemplates, options_section
from modules.extension_host.compat_runtime import StateView as State
from modules.extension_host.facade import Lazy, current
from modules.extension_host.host import ExtensionHost
from modules.generation.latents import LATENT_UPSCALE_MODES

__all__ = [
    "OptionHTML",
    "OptionInfo",
    "State",
    "list_checkpoint_tiles",
    "cmd_opts",
    "listfiles",
    "natural_sort_key",
    "options_section",
    "options_templates",
    "opts",
    "prompt_styles",
    "state",
    "total_tqdm",
    "walk_files",
]

opts = Lazy(lambda: current().opts)
cmd_opts = Lazy(lambda: current().cmd_opts)
state = Lazy(lambda: current().state)
options_templates = Lazy(lambda: OptionsTemplates(current().opts))
prompt_styles = Lazy(lambda: current().services.generation.styles)
settings_components = Lazy(lambda: current().settings_components)

script_path = str(REPO_ROOT)
log = logging.getLogger("extensions")
progress_print_out = sys.stdout
latent_upscale_default_mode = "Latent"
latent_upscale_modes = {name: {"mode": mode, "antialias": aa} for name, (mode, aa) in LATENT_UPSCALE_MODES.items()}
parallel_processing_allowed = True
xformers_available = False
batch_cond_uncond = True

_DYNAMIC: dict[str, Callable[[ExtensionHost], Any]] = {
    "sd_model": lambda h: h.sd_model(),
    "device": lambda h: h.services.policy.device,
    "weight_load_location": lambda h: None,
    "demo": lambda h: h.demo,
    "data_path": lambda h: str(h.services.paths.data_dir),
    "models_path": lambda h: str(h.services.paths.models_dir),
    "sd_upscalers": lambda h: compat_lists.sd_upscalers(h.services.upscalers),
    "face_restorers": lambda h: compat_lists.face_restorers(h.services),
    "hypernetworks": lambda h: compat_lists.hypernetworks(h.services),
    "loaded_hypernetworks": lambda h: [],
    "mem_mon": lambda h: h.mem_mon,
    "hide_dirs": lambda h: {"visible": not h.services.args.hide_ui_dir_config},
    "config_filename": lambda h: str(h.services.paths.config_file),
    "styles_filename": lambda h: [str(p) for p in h.services.paths.styles_files],
}


def __getattr__(name: str) -> Any:
    if name in _DYNAMIC:
        return _DYNAMIC[name](current())
    raise AttributeError(f"module 'modules.shared' has no attribute {name!r}")


class _TotalProgress:
    """A1111's console progress bar over all jobs; progress is reported per job here."""

    def update(self) -> None:
        pass

    def updateTotal(self, new_total: int) -> None:
        pass

    def clear(self) -> None:
        pass


total_tqdm = _TotalProgress()


def natural_sort_key(s: str, regex: re.Pattern[str] = re.compile("([0-9]+)")) -> list[Any]:
    # isascii: "²".isdigit() is true but int("²") fails (a file named "v1²2" broke listings)
    return [int(text) if text.isascii() and text.isdigit() else text.lower() for text in regex.split(s)]


def listfiles(dirname: str) -> list[str]:
    names = [f for f in sorted(os.listdir(dirname), key=natural_sort_key) if not f.startswith(".")]
    return [os.path.join(dirname, f) for f in names if not os.path.isdir(os.path.join(dirname, f))]


def walk_files(path: str, allowed_extensions: list[str] | None = None) -> Iterator[str]:
    if not os.path.exists(path):
        return
    allowed = {e.lower() for e in allowed_extensions} if allowed_extensions is not None else None
    for root, _dirs, files in os.walk(path, followlinks=True):
        for filename in sorted(files, key=natural_sort_key):
            if allowed is not None and os.path.splitext(filename)[1].lower() not in allowed:
                continue
            yield os.path.join(root, filename)


def refresh_checkpoints() -> None:
    current().services.models.refresh()


def reload_gradio_theme(theme_name: str | None = None) -> None:
    pass


def list_checkpoint_tiles(use_short: bool = False) -> list[str]:
    from modules.sd_models import checkpoint_tiles

    return checkpoint_tiles(use_short)
