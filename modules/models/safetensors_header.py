"""Reading a .safetensors header without loading the tensors (our own parser: 8-byte
little-endian length, then JSON). A leaf module: the identifier and the safe loader both use it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modules.models.errors import InvalidModelFile

MAX_HEADER_BYTES = 100_000_000  # the limit the safetensors library itself applies


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file (tensor name -> dtype/shape/offsets, plus __metadata__).

    Raises InvalidModelFile for files that are not safetensors, have an absurd header size, or are
    shorter than the header says (truncated downloads).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise InvalidModelFile(f"{path.name}: not a safetensors file (only {size} bytes)")
            length = int.from_bytes(prefix, "little")
            if length < 2 or length > MAX_HEADER_BYTES or 8 + length > size:
                raise InvalidModelFile(
                    f"{path.name}: not a safetensors file (header length {length} does not fit a {size}-byte file)"
                )
            raw = handle.read(length)
    except OSError as exc:
        raise InvalidModelFile(f"{path}: cannot read ({exc.strerror})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidModelFile(f"{path.name}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise InvalidModelFile(f"{path.name}: not a safetensors file (header is not a JSON object)")
    _check_offsets(path, header, size - 8 - length)
    return header


def _check_offsets(path: Path, header: dict[str, Any], data_size: int) -> None:
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = entry["data_offsets"]
            shape = [int(d) for d in entry["shape"]]
            str(entry["dtype"])
        except (TypeError, KeyError, ValueError):
            raise InvalidModelFile(f"{path.name}: damaged safetensors header (entry {name!r})") from None
        if not (0 <= start <= stop) or any(d < 0 for d in shape):
            raise InvalidModelFile(f"{path.name}: damaged safetensors header (entry {name!r})")
        end = max(end, stop)
    if end > data_size:
        raise InvalidModelFile(
            f"{path.name}: truncated file: the header needs {end} bytes of tensor data, the file has {data_size}"
        )
