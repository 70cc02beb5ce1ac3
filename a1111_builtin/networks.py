"""A1111's `networks` module (its built-in Lora extension puts it on sys.path for extensions).

Only what extensions read: `loaded_networks`, the LoRAs of the job running now as A1111's
`Network` objects (name, te/unet multipliers, network_on_disk). It is a fresh list on each access,
built from the job's `<lora:...>` tags, so extensions may clear or edit it without effect on the
job (our networks are applied per job by modules/networks, not through this list).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from modules.extension_host.job_context import CURRENT_P


def _multiplier(params: Any, index: int, named: str, default: float) -> float:
    value = params.named.get(named) if named in params.named else None
    if value is None and len(params.positional) > index:
        value = params.positional[index]
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


def _network(params: Any) -> SimpleNamespace:
    name = str(params.positional[0]) if params.positional else ""
    te = _multiplier(params, 1, "te", 1.0)
    unet = _multiplier(params, 2, "unet", te)
    on_disk = SimpleNamespace(name=name, alias=name, filename=name)
    return SimpleNamespace(name=name, te_multiplier=te, unet_multiplier=unet, dyn_dim=None, network_on_disk=on_disk)


def _loaded_networks() -> list[SimpleNamespace]:
    p = CURRENT_P.get()
    data = getattr(p, "extra_network_data", None) or {}
    return [_network(params) for params in data.get("lora", [])]


def __getattr__(name: str) -> Any:
    if name == "loaded_networks":
        return _loaded_networks()
    raise AttributeError(f"module 'networks' has no attribute {name!r}")
