"""Read checkpoints and write safetensors files one tensor at a time.

Format: 8-byte little-endian header length N, N bytes of JSON (`{name: {dtype, shape,
data_offsets: [begin, end]}, "__metadata__": {str: str}}`, padded with spaces to an 8-byte
boundary), then the raw little-endian tensor bytes; offsets are relative to the end of the header.

Why not `safetensors.safe_open`: it memory-maps the whole file, and every page a merge touches
then counts in the process' resident set until the mapping closes, so a merge of two 2 GB files
would "use" 4 GB. Plain positioned reads keep only the tensors in hand resident.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

import torch

# The JSON header is trusted only up to this size (real checkpoints: < 1 MB); larger means corrupt.
MAX_HEADER_BYTES = 100 * 1024 * 1024

DTYPE_TO_TORCH: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "U16": torch.uint16,
    "I32": torch.int32,
    "U32": torch.uint32,
    "I64": torch.int64,
    "U64": torch.uint64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
TORCH_TO_DTYPE: dict[torch.dtype, str] = {v: k for k, v in DTYPE_TO_TORCH.items()}


class SafetensorsFormatError(ValueError):
    """The file is not a well-formed safetensors file (or uses a dtype this reader lacks)."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one tensor: enough to lay out a file before any data exists."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * _itemsize(self.dtype)


@dataclass(frozen=True)
class StoredTensor:
    """A tensor's place inside an existing file (absolute byte range)."""

    spec: TensorSpec
    start: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: dict[str, StoredTensor]  # in file order
    metadata: dict[str, str]
    data_start: int


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _require_little_endian() -> None:
    if sys.byteorder != "little":
        raise RuntimeError("safetensors streaming needs a little-endian machine")


def read_header(path: Path) -> SafetensorsHeader:
    """Parse the header of a safetensors file without reading any tensor data."""
    path = Path(path)
    file_size = path.stat().st_size
    with path.open("rb") as f:
        raw_len = f.read(8)
        if len(raw_len) != 8:
            raise SafetensorsFormatError(f"{path}: too short to be a safetensors file")
        (header_len,) = struct.unpack("<Q", raw_len)
        if header_len > MAX_HEADER_BYTES or 8 + header_len > file_size:
            raise SafetensorsFormatError(f"{path}: header length {header_len} is invalid")
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SafetensorsFormatError(f"{path}: header is not valid JSON ({e})") from e
    if not isinstance(header, dict):
        raise SafetensorsFormatError(f"{path}: header is not a JSON object")
    data_start = 8 + header_len
    metadata = header.pop("__metadata__", None) or {}
    tensors = {name: _stored_tensor(path, name, entry, data_start) for name, entry in header.items()}
    ordered = dict(sorted(tensors.items(), key=lambda item: item[1].start))
    data_end = max((t.end for t in ordered.values()), default=data_start)
    if data_end > file_size:
        raise SafetensorsFormatError(f"{path}: truncated (data ends at {data_end}, file has {file_size} bytes)")
    return SafetensorsHeader(ordered, {str(k): str(v) for k, v in metadata.items()}, data_start)


def _stored_tensor(path: Path, name: str, entry: object, data_start: int) -> StoredTensor:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise SafetensorsFormatError(f"{path}: bad header entry for {name!r}")
    dtype = DTYPE_TO_TORCH.get(entry["dtype"])
    if dtype is None:
        raise SafetensorsFormatError(f"{path}: tensor {name!r} has unsupported dtype {entry['dtype']}")
    spec = TensorSpec(name, dtype, tuple(int(d) for d in entry["shape"]))
    begin, end = (int(x) for x in entry["data_offsets"])
    if end - begin != spec.nbytes:
        raise SafetensorsFormatError(f"{path}: tensor {name!r} byte range does not match its shape and dtype")
    return StoredTensor(spec, data_start + begin, data_start + end)


class SafetensorsReader:
    """Reads single tensors from a safetensors file with positioned reads (no memory map)."""

    def __init__(self, path: Path) -> None:
        _require_little_endian()
        self.path = Path(path)
        self.header = read_header(self.path)
        self._file: io.BufferedReader | None = self.path.open("rb")

    @property
    def metadata(self) -> dict[str, str]:
        return self.header.metadata

    def tensor_names(self) -> list[str]:
        return list(self.header.tensors)

    def spec(self, name: str) -> TensorSpec:
        return self.header.tensors[name].spec

    def read(self, name: str) -> torch.Tensor:
        """A fresh CPU tensor holding `name` (raises KeyError for an unknown name)."""
        if self._file is None:
            raise ValueError(f"{self.path}: reader is closed")
        stored = self.header.tensors[name]
        buffer = torch.empty(stored.end - stored.start, dtype=torch.uint8)
        view = buffer.numpy().data
        self._file.seek(stored.start)
        got = 0
        while got < len(view):
            n = self._file.readinto(view[got:])
            if not n:
                raise SafetensorsFormatError(f"{self.path}: unexpected end of file in {name!r}")
            got += n
        spec = stored.spec
        if spec.nbytes == 0:
            return torch.empty(spec.shape, dtype=spec.dtype)
        return buffer.view(spec.dtype).reshape(spec.shape)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> SafetensorsReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def build_header(specs: Iterable[TensorSpec], metadata: Mapping[str, str] | None) -> bytes:
    """Header bytes (length prefix included, padded to 8 bytes) for tensors stored in `specs` order."""
    header: dict[str, object] = {}
    if metadata:
        bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise ValueError(f"safetensors metadata keys and values must be strings: {bad}")
        header["__metadata__"] = dict(metadata)
    offset = 0
    for spec in specs:
        if spec.name in header:
            raise ValueError(f"duplicate tensor name {spec.name!r}")
        if spec.dtype not in TORCH_TO_DTYPE:
            raise ValueError(f"tensor {spec.name!r}: dtype {spec.dtype} cannot be stored in safetensors")
        header[spec.name] = {
            "dtype": TORCH_TO_DTYPE[spec.dtype],
            "shape": list(spec.shape),
            "data_offsets": [offset, offset + spec.nbytes],
        }
        offset += spec.nbytes
    body = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    body += b" " * (-(8 + len(body)) % 8)
    return struct.pack("<Q", len(body)) + body


class SafetensorsStreamWriter:
    """Writes a safetensors file whose layout is fixed up front; tensors then arrive in order.

    The header (names, dtypes, shapes, offsets) is written on construction, so each tensor can
    go to disk as soon as it is computed and nothing larger than one tensor is held here.
    """

    def __init__(self, path: Path, specs: Iterable[TensorSpec], metadata: Mapping[str, str] | None = None) -> None:
        _require_little_endian()
        self.path = Path(path)
        self._specs = list(specs)
        header = build_header(self._specs, metadata)
        self._next = 0
        self._file: io.BufferedWriter | None = self.path.open("xb")
        self._file.write(header)

    @property
    def remaining(self) -> int:
        return len(self._specs) - self._next

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Append the next tensor; it must match the declared name, dtype and shape."""
        if self._file is None:
            raise ValueError(f"{self.path}: writer is closed")
        if self._next >= len(self._specs):
            raise ValueError(f"{self.path}: all {len(self._specs)} declared tensors were already written")
        spec = self._specs[self._next]
        if name != spec.name:
            raise ValueError(f"expected tensor {spec.name!r} next, got {name!r}")
        if tensor.dtype != spec.dtype or tuple(tensor.shape) != spec.shape:
            raise ValueError(
                f"tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, header declares {spec.dtype} {spec.shape}"
            )
        if spec.nbytes:
            data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
            self._file.write(data.numpy().data)
        self._next += 1

    def finish(self) -> None:
        """Flush to disk and close; fails if declared tensors were never written."""
        if self._file is None:
            return
        if self._next != len(self._specs):
            missing = self._specs[self._next].name
            raise ValueError(f"{self.path}: {self.remaining} declared tensors not written (next: {missing!r})")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None

    def abort(self) -> None:
        """Close without completing (the caller removes the partial file)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> SafetensorsStreamWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()


class TensorSource(Protocol):
    path: Path

    @property
    def metadata(self) -> dict[str, str]: ...
    def tensor_names(self) -> list[str]: ...
    def spec(self, name: str) -> TensorSpec: ...
    def read(self, name: str) -> torch.Tensor:
        """A tensor the caller owns (the merge works on it in place)."""
        ...

    def close(self) -> None: ...


class CkptSource:
    """A pickled checkpoint loaded with the safe loader (tensors and plain containers only).

    Uses a memory map when the file is in the zip format, so tensors are paged in on demand.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            loaded = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) pickles cannot be memory-mapped
            loaded = torch.load(self.path, map_location="cpu", weights_only=True)
        if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
            loaded = loaded["state_dict"]
        if not isinstance(loaded, dict):
            raise ValueError(f"{self.path.name}: not a checkpoint (no state dict inside)")
        self._tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}

    @property
    def metadata(self) -> dict[str, str]:
        return {}

    def tensor_names(self) -> list[str]:
        return list(self._tensors)

    def spec(self, name: str) -> TensorSpec:
        t = self._tensors[name]
        return TensorSpec(name, t.dtype, tuple(t.shape))

    def read(self, name: str) -> torch.Tensor:
        return self._tensors[name].clone()  # the memory map may be shared with the file: never write to it

    def close(self) -> None:
        self._tensors = {}
