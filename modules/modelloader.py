"""A1111's `modules.modelloader` for extensions: load_file_from_url and load_models.

`load_file_from_url` downloads only when the file is not there yet (A1111); with the file placed
by hand (the usual case offline) it just returns its path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

__all__ = ["friendly_name", "load_file_from_url", "load_models"]


def load_file_from_url(
    url: str, *, model_dir: str, progress: bool = True, file_name: str | None = None, hash_prefix: str | None = None
) -> str:
    os.makedirs(model_dir, exist_ok=True)
    if not file_name:
        file_name = os.path.basename(urllib.parse.urlparse(url).path)
    target = Path(model_dir) / file_name
    if target.is_file():
        return str(target)
    print(f'Downloading: "{url}" to {target}\n')
    with urllib.request.urlopen(url) as response, tempfile.NamedTemporaryFile(dir=model_dir, delete=False) as tmp:
        shutil.copyfileobj(response, tmp)
    if hash_prefix:
        import hashlib

        digest = hashlib.sha256(Path(tmp.name).read_bytes()).hexdigest()
        if not digest.startswith(hash_prefix):
            os.unlink(tmp.name)
            raise ValueError(f"{file_name}: sha256 {digest[:10]} does not start with {hash_prefix}")
    os.replace(tmp.name, target)
    return str(target)


def load_models(
    model_path: str,
    model_url: str | None = None,
    command_path: str | None = None,
    ext_filter: list[str] | None = None,
    download_name: str | None = None,
    ext_blacklist: list[str] | None = None,
    hash_prefix: str | None = None,
) -> list[str]:
    """Model files in `command_path` (if given) or `model_path` with one of `ext_filter`'s suffixes;
    downloads `model_url` when none is found (A1111)."""
    places = [p for p in (command_path, model_path) if p and os.path.isdir(p)]
    output = []
    for place in places[:1]:
        for root, _dirs, files in os.walk(place, followlinks=True):
            for name in sorted(files):
                full = os.path.join(root, name)
                if ext_filter and not any(name.lower().endswith(e.lower()) for e in ext_filter):
                    continue
                if ext_blacklist and any(name.lower().endswith(e.lower()) for e in ext_blacklist):
                    continue
                output.append(full)
    if model_url is not None and not output:
        name = download_name or os.path.basename(urllib.parse.urlparse(model_url).path)
        output.append(
            load_file_from_url(
                model_url, model_dir=places[0] if places else model_path, file_name=name, hash_prefix=hash_prefix
            )
        )
    return output


def friendly_name(file: str) -> str:
    if file.startswith("http"):
        file = urllib.parse.urlparse(file).path
    return os.path.splitext(os.path.basename(file))[0]
