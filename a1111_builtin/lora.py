"""A1111's `lora` module (its built-in Lora extension's pre-1.5 name for `networks`).

`loaded_loras` is `networks.loaded_networks`; `assign_lora_names_to_compvis_modules` is absent on
purpose: extensions test for it to tell A1111 before 1.5 (whose names differ) from later ones.
"""

from __future__ import annotations

from typing import Any

import networks


def __getattr__(name: str) -> Any:
    if name == "loaded_loras":
        return networks.loaded_networks
    raise AttributeError(f"module 'lora' has no attribute {name!r}")
