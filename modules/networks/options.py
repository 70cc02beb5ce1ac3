"""Settings of the extra networks (A1111 Lora extension keys), as data, and the view jobs use.

The composition root registers `NETWORK_OPTIONS` (registry.extend); `NetworkOptions.from_settings`
reads them from a job's settings view and falls back to the defaults for keys not registered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modules.core.options import OptionInfo

EXTRA_NETWORKS = ("extra_networks", "Extra Networks")
PREFERRED_NAME_CHOICES = ("Alias from file", "Filename")

NETWORK_OPTIONS: tuple[OptionInfo, ...] = (
    OptionInfo(
        "lora_preferred_name",
        "Alias from file",
        "When adding to prompt, refer to Lora by",
        EXTRA_NETWORKS,
        "radio",
        PREFERRED_NAME_CHOICES,
    ),
    OptionInfo("lora_add_hashes_to_infotext", True, "Add Lora hashes to infotext", EXTRA_NETWORKS),
    OptionInfo(
        "lora_functional",
        False,
        "Lora/Networks: use old method that takes longer when you have multiple Loras active and produces "
        "same results as kohya-ss/sd-webui-additional-networks extension",
        EXTRA_NETWORKS,
    ),
    OptionInfo(
        "lora_in_memory_limit",
        0,
        "Number of Lora networks to keep cached in memory",
        EXTRA_NETWORKS,
        "number",
    ),
)


@dataclass(frozen=True)
class NetworkOptions:
    preferred_name: str = "Alias from file"  # lora_preferred_name
    add_lora_hashes: bool = True  # lora_add_hashes_to_infotext
    add_ti_hashes: bool = True  # textual_inversion_add_hashes_to_infotext
    functional: bool = False  # lora_functional
    in_memory_limit: int = 0  # lora_in_memory_limit: parsed files kept besides the last job's

    @classmethod
    def from_settings(cls, opts: Mapping[str, Any]) -> NetworkOptions:
        defaults = cls()
        return cls(
            preferred_name=str(opts.get("lora_preferred_name", defaults.preferred_name)),
            add_lora_hashes=bool(opts.get("lora_add_hashes_to_infotext", defaults.add_lora_hashes)),
            add_ti_hashes=bool(opts.get("textual_inversion_add_hashes_to_infotext", defaults.add_ti_hashes)),
            functional=bool(opts.get("lora_functional", defaults.functional)),
            in_memory_limit=max(0, int(opts.get("lora_in_memory_limit", defaults.in_memory_limit))),
        )
