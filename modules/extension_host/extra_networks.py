"""Extra networks registered by extensions (`modules.extra_networks`): `<name:args>` prompt tags.

An extension subclasses `ExtraNetwork(name)` and registers it (usually in on_before_ui). Per
batch the engine calls `ExtraNetworkRegistry.activate(p, networks)` with the tags parsed from
the first prompt of the batch: every registered network gets its list of params, an empty list
when the prompt does not mention it (meaning "switch off"). `deactivate(p)` runs after the job.
Failures are reported per extension; generation goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from modules.extension_host.problems import ProblemLog
from modules.generation.prompt_parser import parse_extra_network_prompts, parse_extra_network_tags


class ExtraNetworkParams:
    """Arguments of one tag: `items`, split into `positional` and `named` (key=value)."""

    def __init__(self, items: Sequence[Any] | None = None):
        self.items: list[Any] = list(items or [])
        self.positional: list[Any] = []
        self.named: dict[str, Any] = {}
        for item in self.items:
            parts = item.split("=", 2) if isinstance(item, str) else [item]
            if len(parts) == 2:
                self.named[parts[0]] = parts[1]
            else:
                self.positional.append(item)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExtraNetworkParams) and self.items == other.items

    def __hash__(self) -> int:
        return hash(tuple(map(str, self.items)))

    def __repr__(self) -> str:
        return f"ExtraNetworkParams(items={self.items!r})"


class ExtraNetwork:
    def __init__(self, name: str):
        self.name = name

    def activate(self, p: Any, params_list: list[ExtraNetworkParams]) -> None:
        raise NotImplementedError

    def deactivate(self, p: Any) -> None:
        raise NotImplementedError


NetworkData = dict[str, list[ExtraNetworkParams]]


def parse_prompt(prompt: str) -> tuple[str, NetworkData]:
    parsed = parse_extra_network_tags(prompt)
    return parsed.prompt, {k: [ExtraNetworkParams(list(p.items)) for p in v] for k, v in parsed.networks.items()}


def parse_prompts(prompts: Sequence[str]) -> tuple[list[str], NetworkData]:
    """A1111's batch rule: all prompts cleaned, the first prompt's tags activated."""
    parsed = parse_extra_network_prompts(prompts)
    networks = {k: [ExtraNetworkParams(list(p.items)) for p in v] for k, v in parsed.networks.items()}
    return list(parsed.prompts), networks


class ExtraNetworkRegistry:
    def __init__(self, problems: ProblemLog):
        self.problems = problems
        self._networks: dict[str, ExtraNetwork] = {}
        self._aliases: dict[str, ExtraNetwork] = {}
        self._owners: dict[int, str] = {}
        self._lock = threading.Lock()

    def register(self, network: ExtraNetwork, *, owner: str = "base") -> None:
        with self._lock:
            self._networks[network.name] = network
            self._owners[id(network)] = owner

    def register_alias(self, network: ExtraNetwork, alias: str) -> None:
        with self._lock:
            self._aliases[alias] = network

    def unregister_all(self) -> None:
        with self._lock:
            self._networks.clear()
            self._aliases.clear()
            self._owners.clear()

    def names(self) -> list[str]:
        with self._lock:
            return list(self._networks)

    def get(self, name: str) -> ExtraNetwork | None:
        with self._lock:
            return self._networks.get(name) or self._aliases.get(name)

    def _owner(self, network: ExtraNetwork) -> str:
        return self._owners.get(id(network), "base")

    def activate(self, p: Any, networks: Mapping[str, Sequence[Any]]) -> list[str]:
        """Activate mentioned networks with their params and the rest with []; returns unknown tag kinds."""
        with self._lock:
            registered = dict(self._networks)
            aliases = dict(self._aliases)
        done: set[str] = set()
        unknown = []
        for kind, params in networks.items():
            network = registered.get(kind) or aliases.get(kind)
            if network is None:
                unknown.append(kind)
                continue
            self._call(network, "activate", p, [_as_params(x) for x in params])
            done.add(network.name)
        for name, network in registered.items():
            if name not in done:
                self._call(network, "activate", p, [])
        return unknown

    def deactivate(self, p: Any) -> None:
        with self._lock:
            registered = list(self._networks.values())
        for network in registered:
            self._call(network, "deactivate", p)

    def _call(self, network: ExtraNetwork, method: str, *args: Any) -> None:
        try:
            getattr(network, method)(*args)
        except Exception as exc:  # boundary
            self.problems.report(self._owner(network), f"extra network {network.name}.{method}", exc)


def _as_params(value: Any) -> ExtraNetworkParams:
    if isinstance(value, ExtraNetworkParams):
        return value
    return ExtraNetworkParams(list(getattr(value, "items", value)))
