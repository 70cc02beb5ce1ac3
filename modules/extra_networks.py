"""A1111's `modules.extra_networks` for extensions: `<name:args>` prompt tags handled by
extension-registered `ExtraNetwork` objects (the engine calls `activate` per batch)."""

from __future__ import annotations

from typing import Any

from modules.extension_host.extra_networks import ExtraNetwork, ExtraNetworkParams, parse_prompt, parse_prompts
from modules.extension_host.facade import caller_file, current

__all__ = [
    "ExtraNetwork",
    "ExtraNetworkParams",
    "activate",
    "deactivate",
    "lookup_extra_networks",
    "parse_prompt",
    "parse_prompts",
    "register_extra_network",
    "register_extra_network_alias",
]


def register_extra_network(extra_network: ExtraNetwork) -> None:
    host = current()
    owner = host._extension_name_of(caller_file(2)) or "base"
    host.extra_networks.register(extra_network, owner=owner)


def register_extra_network_alias(extra_network: ExtraNetwork, alias: str) -> None:
    current().extra_networks.register_alias(extra_network, alias)


def register_default_extra_networks() -> None:
    pass  # our built-in networks are not ExtraNetwork objects


def lookup_extra_networks(extra_network_data: dict[str, list[ExtraNetworkParams]]) -> dict[ExtraNetwork, list[Any]]:
    registry = current().extra_networks
    found: dict[ExtraNetwork, list[Any]] = {}
    for name, params in extra_network_data.items():
        network = registry.get(name)
        if network is not None:
            found.setdefault(network, []).extend(params)
    return found


def activate(p: Any, extra_network_data: dict[str, list[ExtraNetworkParams]]) -> None:
    current().extra_networks.activate(p, extra_network_data)


def deactivate(p: Any, extra_network_data: dict[str, list[ExtraNetworkParams]] | None = None) -> None:
    current().extra_networks.deactivate(p)


def get_user_metadata(filename: str | None, lister: Any = None) -> dict[str, Any]:
    """The `<file>.json` next to a network file (A1111's user metadata), {} when absent."""
    import json
    import os

    if filename is None:
        return {}
    path = os.path.splitext(filename)[0] + ".json"
    try:
        with open(path, encoding="utf8") as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
