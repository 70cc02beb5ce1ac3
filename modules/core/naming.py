"""Natural sort order for file names, safe for any Unicode name."""

from __future__ import annotations

import re

_NUMBERS = re.compile(r"([0-9]+)")


def natural_key(text: str) -> list[tuple[int, int | str]]:
    """Sort key with numbers compared as numbers ("v2" < "v10"), as A1111 sorts model lists.

    Only ASCII digits count as numbers: `str.isdigit` is also true for "²" or "①", which `int()`
    refuses, so one file named "v1²2.safetensors" used to break every listing. Items are
    (kind, value) pairs, so a number and a word at the same place never meet in a comparison.
    """
    return [(0, int(part)) if part.isascii() and part.isdigit() else (1, part.lower()) for part in _NUMBERS.split(text)]
