"""A1111 hypernetworks: read the .pt files and apply them to the UNet's attention keys and values.

File (a torch pickle, read with the safe loader): {context width (int): (state dict k, state dict v),
..., "layer_structure": [1, 2, 1], "activation_func": "relu" | "linear" | None | ..., "is_layer_norm",
"use_dropout", "dropout_structure", "last_layer_dropout", "activate_output", "weight_initialization",
"name", "step", "sd_checkpoint", "sd_checkpoint_name", "optional_info"}.

Each module is A1111's HypernetworkModule: for i in the structure, Linear(w * s[i] -> w * s[i+1]),
then the activation (not after the last Linear unless activate_output), then LayerNorm if
is_layer_norm, then Dropout where the dropout structure says so (identity at inference, but it
takes an index in the state dict). Output: x + module(x) * multiplier.

Where it applies (A1111 apply_hypernetworks, called by every CrossAttention forward): the k and v
inputs of every UNet attention, cross-attention (context, e.g. 768 wide) and self-attention
(the hidden states, 320/640/1280 wide) alike, choosing the module pair by the input's width;
several hypernetworks chain. We install forward pre-hooks on each attention's `to_k` / `to_v`
for the job: a conditioning-side transform could not reach self-attention, and hooks work with
every attention processor diffusers may pick.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modules.models.errors import InvalidModelFile, ModelError
from modules.models.safe_load import load_pickle

Tensor = torch.Tensor


class UnsupportedHypernetwork(ModelError):
    """A hypernetwork file we cannot build (unknown activation, inconsistent structure)."""


def activation_classes() -> dict[str, type[torch.nn.Module]]:
    """A1111's activation names: its own short list, then every torch.nn activation class, lowercased."""
    table: dict[str, type[torch.nn.Module]] = {
        "linear": torch.nn.Identity,
        "relu": torch.nn.ReLU,
        "leakyrelu": torch.nn.LeakyReLU,
        "elu": torch.nn.ELU,
        "swish": torch.nn.Hardswish,  # A1111 maps "swish" to Hardswish; kept for identical results
        "tanh": torch.nn.Tanh,
        "sigmoid": torch.nn.Sigmoid,
    }
    for name, cls in inspect.getmembers(torch.nn.modules.activation, inspect.isclass):
        if cls.__module__ == "torch.nn.modules.activation" and issubclass(cls, torch.nn.Module):
            table[name.lower()] = cls
    return table


def dropout_structure(layer_structure: Sequence[float], use_dropout: bool, last_layer_dropout: bool) -> list[float]:
    """A1111's default dropout structure when the file has none."""
    if not use_dropout:
        return [0.0] * len(layer_structure)
    values = [0.0] + [0.3] * (len(layer_structure) - 3)
    values.append(0.3 if last_layer_dropout else 0.0)
    values.append(0.0)
    return values


@dataclass(frozen=True)
class HypernetworkStructure:
    layer_structure: tuple[float, ...] = (1.0, 2.0, 1.0)
    activation_func: str | None = None
    add_layer_norm: bool = False
    activate_output: bool = True
    dropout: tuple[float, ...] = (0.0, 0.0, 0.0)

    @classmethod
    def from_file(cls, data: Mapping[Any, Any]) -> HypernetworkStructure:
        layers = tuple(float(x) for x in (data.get("layer_structure") or (1, 2, 1)))
        given = data.get("dropout_structure")
        use_dropout = bool(any(given)) if given is not None else bool(data.get("use_dropout", False))
        if given is None:
            given = dropout_structure(layers, use_dropout, bool(data.get("last_layer_dropout", False)))
        activation = data.get("activation_func")
        return cls(
            layer_structure=layers,
            activation_func=None if activation is None else str(activation),
            add_layer_norm=bool(data.get("is_layer_norm", False)),
            activate_output=bool(data.get("activate_output", True)),
            dropout=tuple(float(x) for x in given),
        )

    def build(self, width: int) -> torch.nn.Sequential:
        """The module's layers for one context width, in A1111's order (state dict indices match)."""
        s = self.layer_structure
        if len(s) < 2 or s[0] != 1 or s[-1] != 1:
            raise UnsupportedHypernetwork(f"layer structure {list(s)} must start and end with 1")
        if len(self.dropout) < len(s):
            raise UnsupportedHypernetwork(f"dropout structure {list(self.dropout)} is shorter than {list(s)}")
        activation = self._activation()
        layers: list[torch.nn.Module] = []
        for i in range(len(s) - 1):
            layers.append(torch.nn.Linear(int(width * s[i]), int(width * s[i + 1])))
            is_last = i >= len(s) - 2
            if activation is not None and (not is_last or self.activate_output):
                layers.append(activation())
            if self.add_layer_norm:
                layers.append(torch.nn.LayerNorm(int(width * s[i + 1])))
            if self.dropout[i + 1] > 0:
                layers.append(torch.nn.Dropout(p=self.dropout[i + 1]))
        return torch.nn.Sequential(*layers)

    def _activation(self) -> type[torch.nn.Module] | None:
        name = self.activation_func
        if name is None or name == "linear":
            return None
        table = activation_classes()
        if name not in table:
            raise UnsupportedHypernetwork(
                f"hypernetwork uses an unsupported activation function {name!r}; known: {', '.join(sorted(table))}"
            )
        return table[name]


_OLD_KEYS = {
    "linear1.weight": "linear.0.weight",
    "linear1.bias": "linear.0.bias",
    "linear2.weight": "linear.1.weight",
    "linear2.bias": "linear.1.bias",
}


def _module_from_state(structure: HypernetworkStructure, width: int, state: Mapping[str, Tensor]) -> torch.nn.Module:
    state = {_OLD_KEYS.get(k, k): v for k, v in state.items()}
    state = {k.removeprefix("linear."): v for k, v in state.items()}
    sequential = structure.build(width)
    try:
        sequential.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = "; ".join(lines[1:3]) or lines[0]
        raise UnsupportedHypernetwork(f"weights for width {width} do not fit the file's structure ({detail})") from None
    return sequential.eval().requires_grad_(False)


@dataclass
class Hypernetwork:
    name: str
    path: Path
    structure: HypernetworkStructure
    modules: dict[int, tuple[torch.nn.Module, torch.nn.Module]] = field(default_factory=dict)  # width -> (k, v)
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None

    @property
    def widths(self) -> list[int]:
        return sorted(self.modules)


def load_hypernetwork(path: Path, *, safe: bool = True, name: str | None = None) -> Hypernetwork:
    """Read an A1111 hypernetwork .pt; `name` defaults to the file stem (the name prompts use)."""
    path = Path(path)
    data = load_pickle(path, safe=safe)
    if not isinstance(data, dict) or not any(isinstance(k, int) for k in data):
        raise InvalidModelFile(f"{path.name}: not an A1111 hypernetwork (no per-width modules)")
    structure = HypernetworkStructure.from_file(data)
    net = Hypernetwork(
        name=name or path.stem,
        path=path,
        structure=structure,
        step=data.get("step"),
        sd_checkpoint=data.get("sd_checkpoint"),
        sd_checkpoint_name=data.get("sd_checkpoint_name"),
    )
    for width, pair in data.items():
        if not isinstance(width, int):
            continue
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise InvalidModelFile(f"{path.name}: width {width} should hold a (k, v) pair of state dicts")
        net.modules[width] = (
            _module_from_state(structure, width, pair[0]),
            _module_from_state(structure, width, pair[1]),
        )
    return net


# --------------------------------------------------------------------------------------------
# applying


def _chain(nets: Sequence[tuple[Hypernetwork, float]], which: int) -> Any:
    def transform(x: Tensor) -> Tensor:
        for net, multiplier in nets:
            pair = net.modules.get(int(x.shape[-1]))
            if pair is None:
                continue
            module = pair[which]
            parameter = next(module.parameters())
            h = x.to(parameter.device, parameter.dtype)
            x = (h + module(h) * multiplier).to(x.device, x.dtype)
        return x

    def pre_hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (transform(args[0]), *args[1:])

    return pre_hook


def attention_modules(unet: torch.nn.Module) -> list[torch.nn.Module]:
    """The UNet's attention blocks (diffusers `Attention`: transformer attn1 / attn2)."""
    from diffusers.models.attention_processor import Attention

    return [m for m in unet.modules() if isinstance(m, Attention)]


@contextlib.contextmanager
def hypernetworks_applied(unet: torch.nn.Module, nets: Sequence[tuple[Hypernetwork, float]]) -> Iterator[int]:
    """Hook the hypernetworks (with their strengths) into every attention's k/v inputs; yields the
    number of hooked attention blocks. Strength 0 entries are left out (exactly the base output)."""
    active = [(net, multiplier) for net, multiplier in nets if multiplier != 0]
    if not active:
        yield 0
        return
    device = next(unet.parameters()).device
    if device.type != "meta":
        for net, _ in active:
            for k, v in net.modules.values():
                k.to(device)
                v.to(device)
    handles = []
    try:
        blocks = attention_modules(unet)
        for block in blocks:
            to_k: torch.nn.Module = block.to_k  # type: ignore[assignment]
            to_v: torch.nn.Module = block.to_v  # type: ignore[assignment]
            handles.append(to_k.register_forward_pre_hook(_chain(active, 0)))
            handles.append(to_v.register_forward_pre_hook(_chain(active, 1)))
        yield len(blocks)
    finally:
        for handle in handles:
            handle.remove()
