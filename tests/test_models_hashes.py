"""A1111's hash algorithms, checked against hashlib on files the test writes, and the hash cache."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from modules.models.hashes import HashCache, addnet_hash_safetensors, legacy_model_hash, sha256_file


@pytest.fixture
def known_file(tmp_path: Path) -> tuple[Path, bytes]:
    """A 1.5 MiB file shaped like a safetensors file (8-byte header length, JSON, then data)."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [1_500_000], "data_offsets": [0, 1_500_000]}}).encode()
    data = bytes((i * 7 + 3) % 251 for i in range(1_500_000))
    raw = len(header).to_bytes(8, "little") + header + data
    path = tmp_path / "model.safetensors"
    path.write_bytes(raw)
    return path, raw


def test_full_sha256(known_file: tuple[Path, bytes]) -> None:
    path, raw = known_file
    assert sha256_file(path) == hashlib.sha256(raw).hexdigest()


def test_legacy_hash_reads_64k_at_one_mib(known_file: tuple[Path, bytes]) -> None:
    path, raw = known_file
    expected = hashlib.sha256(raw[0x100000 : 0x100000 + 0x10000]).hexdigest()[:8]
    assert legacy_model_hash(path) == expected
    assert len(expected) == 8


def test_legacy_hash_of_small_and_missing_files(tmp_path: Path) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 100)
    assert legacy_model_hash(small) == hashlib.sha256(b"").hexdigest()[:8]  # nothing at offset 1 MiB
    assert legacy_model_hash(tmp_path / "missing.bin") == "NOFILE"


def test_addnet_hash_skips_the_header(known_file: tuple[Path, bytes]) -> None:
    path, raw = known_file
    header_length = int.from_bytes(raw[:8], "little")
    assert addnet_hash_safetensors(path) == hashlib.sha256(raw[8 + header_length :]).hexdigest()
    assert addnet_hash_safetensors(path) != sha256_file(path)


def test_cache_serves_repeated_lookups_without_rehashing(known_file: tuple[Path, bytes], tmp_path: Path) -> None:
    path, raw = known_file
    cache = HashCache(tmp_path / "cache" / "hashes.json")
    calls: list[Path] = []

    def counting(p: Path) -> str:
        calls.append(p)
        return sha256_file(p)

    first = cache.get_or_compute("checkpoint/model.safetensors", path, counting)
    second = cache.get_or_compute("checkpoint/model.safetensors", path, counting)
    assert first == second == hashlib.sha256(raw).hexdigest()
    assert len(calls) == 1
    # a new cache object reads the same file: still no rehash
    again = HashCache(tmp_path / "cache" / "hashes.json")
    assert again.get_or_compute("checkpoint/model.safetensors", path, counting) == first
    assert len(calls) == 1
    stored = json.loads((tmp_path / "cache" / "hashes.json").read_text())
    assert stored["hashes"]["checkpoint/model.safetensors"]["sha256"] == first
    assert stored["hashes"]["checkpoint/model.safetensors"]["size"] == len(raw)


def test_cache_entry_is_stale_after_the_file_changes(known_file: tuple[Path, bytes], tmp_path: Path) -> None:
    path, _ = known_file
    cache = HashCache(tmp_path / "hashes.json")
    old = cache.sha256("checkpoint/m", path)
    path.write_bytes(b"different content")
    os.utime(path, (1_000_000, 1_000_000))
    assert cache.lookup("checkpoint/m", path) is None
    assert cache.sha256("checkpoint/m", path) == hashlib.sha256(b"different content").hexdigest() != old


def test_addnet_hashes_have_their_own_section(known_file: tuple[Path, bytes], tmp_path: Path) -> None:
    path, _ = known_file
    cache = HashCache(tmp_path / "hashes.json")
    assert cache.addnet_hash("lora/model", path) == addnet_hash_safetensors(path)
    assert cache.lookup("lora/model", path) is None  # not in the plain sha256 section
    assert cache.lookup("lora/model", path, section="hashes-addnet") == addnet_hash_safetensors(path)


def test_corrupt_cache_file_starts_empty_and_is_rewritten(known_file: tuple[Path, bytes], tmp_path: Path) -> None:
    path, raw = known_file
    cache_file = tmp_path / "hashes.json"
    cache_file.write_text("{ not json")
    cache = HashCache(cache_file)
    assert cache.sha256("checkpoint/m", path) == hashlib.sha256(raw).hexdigest()
    assert json.loads(cache_file.read_text())["hashes"]["checkpoint/m"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".hashes")] == []  # no temp files left


def test_concurrent_stores_keep_every_entry(tmp_path: Path) -> None:
    files = []
    for i in range(8):
        f = tmp_path / f"f{i}.bin"
        f.write_bytes(bytes([i]) * 10)
        files.append(f)
    cache = HashCache(tmp_path / "hashes.json")
    threads = [threading.Thread(target=cache.sha256, args=(f"checkpoint/{f.name}", f)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = json.loads((tmp_path / "hashes.json").read_text())["hashes"]
    assert {k: v["sha256"] for k, v in stored.items()} == {
        f"checkpoint/{f.name}": hashlib.sha256(f.read_bytes()).hexdigest() for f in files
    }
