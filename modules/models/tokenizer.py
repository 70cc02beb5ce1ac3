"""Build CLIP's tokenizer files offline from the BPE vocabulary that clip-anytorch ships.

SD1/SD2/SDXL all use CLIP's 49,408-token BPE. We never download it: the merges come from
`clip/bpe_simple_vocab_16e6.txt.gz` inside the installed clip-anytorch package (found without
importing it, since its import needs pkg_resources), and vocab.json / merges.txt /
tokenizer_config.json are written into a cache folder that `from_pretrained` can read.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # transformers costs ~1 s at import: loaded with the first model, not at server start
    from transformers import CLIPTokenizer

BPE_FILE_NAME = "bpe_simple_vocab_16e6.txt.gz"
_MERGE_COUNT = 49152 - 256 - 2  # as in CLIP's own SimpleTokenizer
MODEL_MAX_LENGTH = 77


class TokenizerSourceMissing(RuntimeError):
    """The clip-anytorch package (source of the BPE vocabulary) is not installed."""


def bpe_vocab_path() -> Path:
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerSourceMissing(
            "CLIP's BPE vocabulary not found: install clip-anytorch with `pip install --no-deps clip-anytorch`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BPE_FILE_NAME
    if not path.is_file():
        raise TokenizerSourceMissing(f"{path} is missing from the clip-anytorch package")
    return path


def _bytes_to_unicode() -> list[str]:
    """CLIP's reversible byte -> printable unicode table, in CLIP's order."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def build_vocab_and_merges(bpe_path: Path) -> tuple[dict[str, int], list[str]]:
    with gzip.open(bpe_path) as handle:
        lines = handle.read().decode("utf-8").split("\n")
    merges = lines[1 : _MERGE_COUNT + 1]
    symbols = _bytes_to_unicode()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def _write_files(folder: Path, pad_token: str) -> None:
    vocab, merges = build_vocab_and_merges(bpe_vocab_path())
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "vocab.json": json.dumps(vocab, ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n",
        "tokenizer_config.json": json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": MODEL_MAX_LENGTH,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": pad_token,
                "do_lower_case": True,
            }
        ),
        "special_tokens_map.json": json.dumps(
            {
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": pad_token,
            }
        ),
    }
    for name, text in files.items():
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")  # removed at start after a crash
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, folder / name)


def tokenizer_dir(cache_root: Path, pad_token: str = "<|endoftext|>") -> Path:
    """Folder with the tokenizer files, built once per cache root and pad token.

    SD1/SD2 text encoders pad with <|endoftext|>; SDXL's second (OpenCLIP bigG) pads with "!".
    """
    name = "clip-tokenizer" if pad_token == "<|endoftext|>" else "clip-tokenizer-pad-bang"
    folder = cache_root / name
    if not (folder / "tokenizer_config.json").is_file():
        _write_files(folder, pad_token)
    return folder


@lru_cache(maxsize=4)
def _load_cached(folder: str) -> CLIPTokenizer:
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(folder)


def load_clip_tokenizer(cache_root: Path, pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
    """A ready CLIPTokenizer (shared instance per folder; tokenizers are read-only in use)."""
    return _load_cached(str(tokenizer_dir(cache_root, pad_token)))
