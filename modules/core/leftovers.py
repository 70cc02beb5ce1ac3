"""Files a crash (kill -9, power loss) leaves behind, removed at start.

Writers here never write a file in place: they write a hidden temp file beside it and rename it
over the target (settings and ui-config `.config.json.XXXX.tmp`, images `.saving-XXXX.png.tmp`,
trained files `.name.XXXX.tmp`, merges `.model.safetensors.<pid>.partial`, several GB with real
models). A crash before the rename leaves the temp file forever, so each start removes them from
the folders those writers use. A merge `.partial` whose process is still alive (another server on
the same folders) is kept.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from modules.core.paths import Paths

log = logging.getLogger(__name__)

_PARTIAL = re.compile(r"^\..+\.(\d+)\.partial$")


def is_leftover(name: str) -> bool:
    return name.startswith(".") and (name.endswith(".tmp") or _PARTIAL.match(name) is not None)


def _in_use_by_another_process(name: str) -> bool:
    match = _PARTIAL.match(name)
    if match is None:
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return False  # our pid from an earlier life (containers reuse pids): nothing of ours runs yet
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


# Writers put temp files in the target's folder: outputs/<tab>/<date>/ is three levels down.
# Deeper trees are not walked, so a folder setting pointing at a huge tree costs little at start.
TREE_DEPTH = 3


def _candidates(folder: Path, depth: int) -> Iterator[Path]:
    if not folder.is_dir():
        return
    base = len(folder.parts)
    for root, dirs, files in os.walk(folder):  # links are not followed
        if len(Path(root).parts) - base >= depth:
            dirs.clear()
        for name in files:
            if is_leftover(name):
                yield Path(root) / name


def remove_leftovers(top_level: Iterable[Path], trees: Iterable[Path]) -> list[Path]:
    """Remove crash leftovers directly in `top_level` folders and up to TREE_DEPTH below `trees`."""
    removed: list[Path] = []
    seen: set[Path] = set()
    folders = [(Path(f), 0) for f in top_level] + [(Path(f), TREE_DEPTH) for f in trees]
    freed = 0
    for folder, depth in folders:
        for path in _candidates(folder, depth):
            if path in seen or _in_use_by_another_process(path.name):
                continue
            seen.add(path)
            try:
                size = path.stat().st_size
                path.unlink()
            except OSError as exc:
                log.warning("could not remove the crash leftover %s: %s", path, exc)
                continue
            freed += size
            removed.append(path)
    if removed:
        log.warning(
            "removed %d temp files left by an earlier crash (%.1f MB), e.g. %s", len(removed), freed / 1e6, removed[0]
        )
    return removed


def clean_at_start(paths: Paths, settings: Mapping[str, Any]) -> list[Path]:
    """Remove crash leftovers from every folder this application writes into (composition root)."""
    top = [paths.data_dir, paths.config_file.parent, paths.ui_config_file.parent, paths.cache_dir]
    top += [style.parent for style in paths.styles_files]
    trees = [paths.outputs_dir, paths.models_dir, paths.ckpt_dir, paths.embeddings_dir, paths.hypernetwork_dir]
    for key, value in settings.items():
        if key.startswith("outdir_") and isinstance(value, str) and value.strip():
            folder = Path(value.strip())
            trees.append(folder if folder.is_absolute() else paths.data_dir / folder)
    return remove_leftovers(dict.fromkeys(top), dict.fromkeys(trees))
