"""Network entries of the infotext: "Lora hashes" / "TI hashes", and resolving pasted tags by hash.

Format (A1111): `Lora hashes: "name: 0123456789ab, other: ba9876543210"`; ':' and ',' are removed
from names. On paste, each `<lora:NAME:` whose NAME is listed is rewritten to the local network
with that short hash (A1111 lora_script.py infotext_pasted); unknown hashes leave the tag as is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

LORA_HASHES = "Lora hashes"
TI_HASHES = "TI hashes"
_LORA_TAG_NAME = re.compile(r"<lora:([^:]+):")


def clean_name(name: str) -> str:
    return name.replace(":", "").replace(",", "")


def format_hashes(hashes: Mapping[str, str]) -> str:
    """{name: shorthash} -> "name: hash, name2: hash2" (names cleaned)."""
    return ", ".join(f"{clean_name(name)}: {value}" for name, value in hashes.items())


def parse_hashes(text: str) -> dict[str, str]:
    """ "name: hash, name2: hash2" -> {name: hash} (entries without ':' are ignored)."""
    out: dict[str, str] = {}
    for entry in text.split(","):
        if ":" not in entry:
            continue
        name, value = entry.strip().split(":", 1)
        out[name.strip()] = value.strip()
    return out


def rewrite_tags_by_hash(
    prompt: str, lora_hashes: str | Mapping[str, str], local_name: Callable[[str], str | None]
) -> str:
    """Replace the name in `<lora:NAME:` by `local_name(hash of NAME)` when both are known."""
    hashes = parse_hashes(lora_hashes) if isinstance(lora_hashes, str) else dict(lora_hashes)
    if not hashes:
        return prompt

    def replace(match: re.Match[str]) -> str:
        shorthash = hashes.get(match.group(1))
        if shorthash is None:
            return match.group(0)
        name = local_name(shorthash)
        return match.group(0) if name is None else f"<lora:{name}:"

    return _LORA_TAG_NAME.sub(replace, prompt)
