"""A1111's `launch` module for extensions' install.py (is_installed, run_pip, run, python, args,
git_tag, commit_hash): the names live in modules/launch_utils.py, as in A1111. Importing it has
no side effects; `python launch.py [flags]` starts the web UI like webui.py (A1111 habit)."""

from __future__ import annotations

import sys
from typing import Any

from modules import launch_utils
from modules.launch_utils import *  # noqa: F403 - A1111's launch re-exports launch_utils
from modules.launch_utils import __all__ as __all__


def __getattr__(name: str) -> Any:
    return getattr(launch_utils, name)  # launch.args: the app's flags, read when used


if __name__ == "__main__":
    import webui

    sys.exit(webui.main(sys.argv[1:]))
