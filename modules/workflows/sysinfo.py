"""A1111's system information report (Settings → Sysinfo, `/internal/sysinfo`, `--dump-sysinfo`).

The same keys as A1111's report so that people who read bug reports find what they look for;
credentials (auth flags, settings that hold keys) and environment variables that are not on a
short list of harmless ones stay out, as in A1111 1.7+. "Checksum" is a SHA-256 over the rest,
so that `check()` can tell an edited report from a real one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from modules.core.options import Options
from modules.core.paths import REPO_ROOT, Paths
from modules.generation.processing import VERSION

SECRET_FLAGS = ("gradio_auth", "api_auth")
ENVIRONMENT_WHITELIST = (
    "GIT",
    "INDEX_URL",
    "WEBUI_LAUNCH_LIVE_OUTPUT",
    "GRADIO_ANALYTICS_ENABLED",
    "PYTHONPATH",
    "TORCH_INDEX_URL",
    "TORCH_COMMAND",
    "REQS_FILE",
    "XFORMERS_PACKAGE",
    "CLIP_PACKAGE",
    "OPENCLIP_PACKAGE",
    "COMMANDLINE_ARGS",
    "IGNORE_CMD_ARGS_ERRORS",
)
SECRET_ENDINGS = ("_key", "_token", "password", "secret", "_auth")  # not token_merging_ratio


def public_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """Command-line flags with credentials hidden (A1111 1.7 hides them from sysinfo too)."""
    shown = dict(flags)
    for key in SECRET_FLAGS:
        if shown.get(key):
            shown[key] = "<hidden>"
    return shown


def _config(options: Options) -> dict[str, Any]:
    return {
        key: ("<hidden>" if value and key.lower().endswith(SECRET_ENDINGS) else value)
        for key, value in options.as_dict().items()
    }


def _torch_info() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "torch_version": torch.__version__,
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "threads": torch.get_num_threads(),
    }


def _ram() -> dict[str, str]:
    import psutil

    memory = psutil.virtual_memory()
    return {name: f"{getattr(memory, name) / 1024**3:.2f}GB" for name in ("total", "used", "free", "available")}


def _packages() -> list[str]:
    found = {f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]}
    return sorted(found, key=str.lower)


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf8")).hexdigest()


def get_sysinfo(
    paths: Paths, args: argparse.Namespace, options: Options, extensions: Sequence[tuple[str, bool]] = ()
) -> dict[str, Any]:
    """The report as data; `extensions`: (name, enabled) of the installed extensions."""
    report: dict[str, Any] = {
        "Platform": platform.platform(),
        "Python": platform.python_version(),
        "Version": VERSION,
        "Script path": str(REPO_ROOT),
        "Data path": str(paths.data_dir),
        "Extensions dir": str(paths.extensions_dir),
        "Commandline": sys.argv,
        "Flags": public_flags(vars(args)),
        "Torch env info": _torch_info(),
        "CPU": {"model": platform.processor() or platform.machine(), "count logical": os.cpu_count()},
        "RAM": _ram(),
        "Extensions": sorted(name for name, enabled in extensions if enabled),
        "Inactive extensions": sorted(name for name, enabled in extensions if not enabled),
        "Environment": {k: os.environ[k] for k in ENVIRONMENT_WHITELIST if k in os.environ},
        "Config": _config(options),
        "Packages": _packages(),
    }
    report["Checksum"] = _checksum(json.dumps(report, indent=4, default=str, sort_keys=True))
    return report


def sysinfo_text(
    paths: Paths, args: argparse.Namespace, options: Options, extensions: Sequence[tuple[str, bool]] = ()
) -> str:
    return json.dumps(get_sysinfo(paths, args, options, extensions), indent=4, ensure_ascii=False, default=str)


def check(text: str) -> bool:
    """Whether a report is as it was written (its checksum matches the rest)."""
    try:
        report = json.loads(text)
    except ValueError:
        return False
    if not isinstance(report, dict) or not isinstance(report.get("Checksum"), str):
        return False
    written = report.pop("Checksum")
    return bool(written == _checksum(json.dumps(report, indent=4, default=str, sort_keys=True)))
