"""What the listing routes report from disk: LoRAs, hypernetworks, embeddings, extensions, memory.

Plain folder scans, done on each request (so the refresh-* routes have nothing to do). The
network listings are a fallback for when no extra-networks service (modules.networks) is
configured; with one, the routes ask its catalogue.
"""

from __future__ import annotations

import configparser
import json
import struct
from pathlib import Path
from typing import Any

from modules.api.schemas import EmbeddingItem, ExtensionItem, HypernetworkItem, LoraItem

NETWORK_SUFFIXES = (".safetensors", ".pt", ".ckpt", ".bin")
MAX_HEADER = 100 * 1024 * 1024


def _files(folders: list[Path], suffixes: tuple[str, ...]) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            found.extend(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    return sorted(found, key=lambda p: (p.stem.lower(), str(p)))


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file ({} when unreadable); reads no tensor data."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > MAX_HEADER:
                return {}
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError):
        return {}
    return header if isinstance(header, dict) else {}


def list_loras(folders: list[Path]) -> list[LoraItem]:
    items = []
    for path in _files(folders, NETWORK_SUFFIXES):
        metadata = safetensors_header(path).get("__metadata__", {}) if path.suffix == ".safetensors" else {}
        alias = str(metadata.get("ss_output_name") or path.stem) if isinstance(metadata, dict) else path.stem
        items.append(LoraItem(name=path.stem, alias=alias, path=str(path), metadata=metadata or {}))
    return items


def list_hypernetworks(folder: Path) -> list[HypernetworkItem]:
    return [HypernetworkItem(name=p.stem, path=str(p)) for p in _files([folder], (".pt", ".safetensors"))]


def embedding_item(path: Path) -> EmbeddingItem:
    """Shape and vector count from a .safetensors header; other formats are not opened (pickles)."""
    if path.suffix.lower() != ".safetensors":
        return EmbeddingItem()
    header = safetensors_header(path)
    tensors = {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    shape = next((v.get("shape") for v in tensors.values() if isinstance(v.get("shape"), list)), None)
    if not shape:
        return EmbeddingItem()
    vectors, width = (shape[0], shape[-1]) if len(shape) > 1 else (1, shape[0])
    meta = header.get("__metadata__", {})
    step = meta.get("step") if isinstance(meta, dict) else None
    return EmbeddingItem(
        step=int(step) if isinstance(step, str) and step.isdecimal() else None,
        sd_checkpoint=meta.get("sd_checkpoint") if isinstance(meta, dict) else None,
        sd_checkpoint_name=meta.get("sd_checkpoint_name") if isinstance(meta, dict) else None,
        shape=int(width),
        vectors=int(vectors),
    )


def list_embeddings(folder: Path) -> dict[str, dict[str, EmbeddingItem]]:
    loaded = {p.stem: embedding_item(p) for p in _files([folder], (".safetensors", ".pt", ".bin"))}
    return {"loaded": loaded, "skipped": {}}


def _git_info(folder: Path) -> tuple[str, str, str]:
    """(remote, branch, commit) read from .git without running git."""
    git = folder / ".git"
    if not git.is_dir():
        return "", "", ""
    config = configparser.ConfigParser()
    try:
        config.read(git / "config", encoding="utf-8")
        remote = config.get('remote "origin"', "url", fallback="")
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
    except (OSError, configparser.Error):
        return "", "", ""
    if head.startswith("ref: "):
        ref = head[5:]
        branch = ref.rsplit("/", 1)[-1]
        ref_file = git / ref
        commit = ref_file.read_text(encoding="utf-8").strip() if ref_file.is_file() else ""
    else:
        branch, commit = "", head
    return _strip_credentials(remote), branch, commit


def _strip_credentials(url: str) -> str:
    """Never show tokens embedded in remote URLs (https://user:token@host/...)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}" if sep else url


def list_extensions(folder: Path, disabled: set[str]) -> list[ExtensionItem]:
    items = []
    for path in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        if path.name.startswith("."):
            continue
        remote, branch, commit = _git_info(path)
        items.append(
            ExtensionItem(
                name=path.name,
                remote=remote,
                branch=branch,
                commit_hash=commit,
                version=commit[:8],
                commit_date=int(path.stat().st_mtime),
                enabled=path.name not in disabled,
            )
        )
    return items


def memory_stats() -> dict[str, Any]:
    """A1111's /memory: RAM from psutil, CUDA from torch when present (else an error note)."""
    import psutil
    import torch

    process = psutil.Process()
    ram = {"free": psutil.virtual_memory().available, "used": process.memory_info().rss}
    ram["total"] = psutil.virtual_memory().total
    if not torch.cuda.is_available():
        return {"ram": ram, "cuda": {"error": "unavailable"}}
    free, total = torch.cuda.mem_get_info()
    stats = torch.cuda.memory_stats()

    def pair(key: str) -> dict[str, int]:
        return {"current": int(stats.get(f"{key}.all.current", 0)), "peak": int(stats.get(f"{key}.all.peak", 0))}

    cuda = {
        "system": {"free": free, "used": total - free, "total": total},
        "active": pair("active_bytes"),
        "allocated": pair("allocated_bytes"),
        "reserved": pair("reserved_bytes"),
        "inactive": pair("inactive_split_bytes"),
        "events": {"retries": int(stats.get("num_alloc_retries", 0)), "oom": int(stats.get("num_ooms", 0))},
    }
    return {"ram": ram, "cuda": cuda}
