"""LoRA-family network files -> one weight update per layer, with A1111's maths.

Key layouts (a layer name, then the part):
- kohya / LyCORIS: `lora_unet_<layer>.<part>`, `lora_te[12]_<layer>.<part>`; parts `lora_down.weight`,
  `lora_up.weight`, `lora_mid.weight` (Tucker), `alpha`, `dora_scale`; LoHa `hada_w1_a/b`, `hada_w2_a/b`,
  `hada_t1/t2`; LoKr `lokr_w1` | `lokr_w1_a/b`, `lokr_w2` | `lokr_w2_a/b`, `lokr_t2`; IA3 `weight` +
  `on_input`; full `diff` (+ `diff_b`); norm `w_norm` + `b_norm`.
- diffusers / PEFT: `unet.<module>.lora_A.weight` / `lora_B.weight` (also `lora.down/up`,
  `lora_linear_layer.down/up`, old `processor.to_q_lora.down`), PEFT DoRA `lora_magnitude_vector`.

Update rules (A1111 extensions-builtin/Lora network_*.py): delta = raw * scale, scale = `scale` key,
else alpha / dim (dim = rank of the down / w1_b / w2_b matrix), else 1; DoRA re-normalises
W0 + delta to the stored magnitudes; the user's multiplier multiplies the result. A1111's DoRA
normalises per input column (kohya / old LyCORIS `dora_scale` [1, in]); LyCORIS' newer [out, 1]
and PEFT's [out] magnitudes are normalised per output row, told apart by shape.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
_IGNORED_PREFIXES = ("bundle_emb.",)  # embeddings bundled into LoRA files: not applied here

# file part -> canonical part name
_PART_NAMES = {
    "lora_down.weight": "lora_down",
    "lora_up.weight": "lora_up",
    "lora_mid.weight": "lora_mid",
    "lora.down.weight": "lora_down",
    "lora.up.weight": "lora_up",
    "lora_linear_layer.down.weight": "lora_down",
    "lora_linear_layer.up.weight": "lora_up",
    "lora_A.weight": "lora_down",
    "lora_B.weight": "lora_up",
    "lora_magnitude_vector": "dora_scale",
    "lora_magnitude_vector.weight": "dora_scale",
}
_PLAIN_PARTS = (
    "alpha",
    "scale",
    "dora_scale",
    "hada_w1_a",
    "hada_w1_b",
    "hada_w2_a",
    "hada_w2_b",
    "hada_t1",
    "hada_t2",
    "lokr_w1",
    "lokr_w1_a",
    "lokr_w1_b",
    "lokr_w2",
    "lokr_w2_a",
    "lokr_w2_b",
    "lokr_t2",
    "diff",
    "diff_b",
    "w_norm",
    "b_norm",
    "on_input",
)
_DOTTED_SUFFIXES = sorted([*_PART_NAMES, *_PLAIN_PARTS], key=len, reverse=True)
_OLD_PROCESSOR = re.compile(r"^(.*)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")
_PEFT_NAMED_ADAPTER = re.compile(r"^(.*)\.lora_([AB])\.[^.]+\.weight$")


class LayerShapeMismatch(ValueError):
    """A layer update whose shape does not fit the model layer it names."""


# --------------------------------------------------------------------------------------------
# grouping keys by layer


@dataclass
class NetworkLayers:
    """A network file's tensors grouped by layer name, parts renamed to canonical names."""

    layers: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    unknown_keys: list[str] = field(default_factory=list)


def _split_dotted(key: str) -> tuple[str, str] | None:
    match = _OLD_PROCESSOR.match(key)
    if match:
        module = match.group(2) if match.group(2) != "to_out" else "to_out.0"
        return f"{match.group(1)}.{module}", f"lora_{match.group(3)}"
    match = _PEFT_NAMED_ADAPTER.match(key)
    if match:
        return match.group(1), "lora_down" if match.group(2) == "A" else "lora_up"
    for suffix in _DOTTED_SUFFIXES:
        if key.endswith("." + suffix):
            return key[: -len(suffix) - 1], _PART_NAMES.get(suffix, suffix)
    return None


def split_key(key: str) -> tuple[str, str] | None:
    """(layer name, canonical part) of one file key, or None when the key is not a layer part."""
    if key.startswith(KOHYA_PREFIXES) and "." in key:
        layer, part = key.split(".", 1)
        return layer, _PART_NAMES.get(part, part)
    return _split_dotted(key.removeprefix("base_model.model."))


def group_layers(state: Mapping[str, Tensor]) -> NetworkLayers:
    grouped = NetworkLayers()
    for key, value in state.items():
        if key.startswith(_IGNORED_PREFIXES):
            continue
        split = split_key(key)
        if split is None:
            grouped.unknown_keys.append(key)
            continue
        layer, part = split
        grouped.layers.setdefault(layer, {})[part] = value
    return grouped


# --------------------------------------------------------------------------------------------
# layer updates


def _matrix(tensor: Tensor) -> Tensor:
    return tensor.reshape(tensor.shape[0], -1).float()


def _cp(core: Tensor, wa: Tensor, wb: Tensor) -> Tensor:
    """Tucker/CP rebuild: core [r1, r2, k, l], wa [r1, out], wb [r2, in] -> [out, in, k, l]."""
    return torch.einsum("i j k l, i p, j r -> p r k l", core.float(), _matrix(wa), _matrix(wb))


def _scalar(tensor: Tensor | None) -> float | None:
    return None if tensor is None else float(tensor.float().reshape(-1)[0].item())


def fit_to_shape(delta: Tensor, shape: torch.Size) -> Tensor:
    """Reshape a delta to the layer's weight shape; an inpainting conv_in (9 input channels) gets
    zeros for the 5 extra channels of a 4-channel delta, as A1111 does."""
    if delta.numel() == math.prod(shape):
        return delta.reshape(shape)
    if len(shape) == 4 and shape[1] == 9 and delta.numel() == shape[0] * 4 * shape[2] * shape[3]:
        return F.pad(delta.reshape(shape[0], 4, shape[2], shape[3]), (0, 0, 0, 0, 0, 5))
    raise LayerShapeMismatch(f"update of {delta.numel()} values does not fit a layer of shape {tuple(shape)}")


def _numel_fits(numel: int, shape: torch.Size) -> bool:
    if numel == math.prod(shape):
        return True
    return len(shape) == 4 and shape[1] == 9 and numel == shape[0] * 4 * shape[2] * shape[3]


@dataclass(frozen=True, eq=False)
class LayerUpdate:
    """One layer's change. Subclasses give the raw delta; scaling and DoRA are shared."""

    alpha: float | None = None
    scale: float | None = None
    dora_scale: Tensor | None = None

    kind = "base"

    @property
    def rank(self) -> int | None:
        return None

    @property
    def out_features(self) -> int | None:
        return None

    @property
    def delta_numel(self) -> int:
        raise NotImplementedError

    @property
    def needs_weight(self) -> bool:
        """True when the update depends on the layer's current values (IA3, DoRA), not only its shape."""
        return self.dora_scale is not None

    def bias_delta(self) -> Tensor | None:
        return None

    def scale_factor(self) -> float:
        if self.scale is not None:
            return self.scale
        if self.alpha is not None and self.rank:
            return self.alpha / self.rank
        return 1.0

    def fits(self, shape: torch.Size) -> bool:
        if self.out_features is not None and self.out_features != shape[0]:
            return False
        if self.dora_scale is not None and not _dora_fits(self.dora_scale, shape):
            return False
        return _numel_fits(self.delta_numel, shape)

    def raw_delta(self, weight: Tensor, dyn_dim: int | None) -> Tensor:
        raise NotImplementedError

    def weight_delta(self, weight: Tensor, dyn_dim: int | None = None) -> Tensor:
        """The change for `weight` (float32, weight's shape and device), before the user's multiplier."""
        if not self.fits(weight.shape):
            raise LayerShapeMismatch(f"{self.kind} update does not fit a layer of shape {tuple(weight.shape)}")
        delta = fit_to_shape(self.raw_delta(weight, dyn_dim).to(weight.device), weight.shape) * self.scale_factor()
        if self.dora_scale is not None:
            delta = _decompose(delta, weight.float(), self.dora_scale.to(weight.device).float())
        return delta

    def add_to(self, buffer: Tensor, multiplier: float, dyn_dim: int | None = None) -> None:
        """buffer += multiplier * delta, in place (buffer: the layer's float32 weight being patched)."""
        buffer.add_(self.weight_delta(buffer, dyn_dim), alpha=multiplier)


def _dora_per_output(dora: Tensor, shape: torch.Size) -> bool:
    if dora.ndim > 1 and dora.shape[0] == 1 and dora.numel() == shape[1]:
        return False  # A1111 / kohya layout [1, in, ...]
    return dora.numel() == shape[0]


def _dora_fits(dora: Tensor, shape: torch.Size) -> bool:
    return dora.numel() in (shape[0], shape[1]) if len(shape) > 1 else False


def _decompose(delta: Tensor, weight: Tensor, dora: Tensor) -> Tensor:
    """DoRA: scale W0 + delta to the stored magnitudes; returns the resulting change of W0."""
    merged = weight + delta
    shape = weight.shape
    tail = [1] * (len(shape) - 2)
    if _dora_per_output(dora, shape):
        norm = merged.reshape(shape[0], -1).norm(dim=1).reshape(shape[0], 1, *tail)
        magnitude = dora.reshape(shape[0], 1, *tail)
    else:
        norm = merged.transpose(0, 1).reshape(shape[1], -1).norm(dim=1).reshape(1, shape[1], *tail)
        magnitude = dora.reshape(1, shape[1], *tail)
    return merged * (magnitude / norm) - weight


@dataclass(frozen=True, eq=False)
class LoraUpdate(LayerUpdate):
    """LoRA / LoCon: up @ down, or a Tucker core `lora_mid` between them (3x3 conv)."""

    up: Tensor = field(default_factory=lambda: torch.empty(0))
    down: Tensor = field(default_factory=lambda: torch.empty(0))
    mid: Tensor | None = None
    kind = "lora"

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def out_features(self) -> int:
        return int(self.up.shape[0])

    @property
    def delta_numel(self) -> int:
        if self.mid is not None:
            return self.out_features * int(self.down.shape[1]) * math.prod(self.mid.shape[2:])
        return self.out_features * math.prod(self.down.shape[1:])

    def raw_delta(self, weight: Tensor, dyn_dim: int | None) -> Tensor:
        up, down = _matrix(self.up.to(weight.device)), _matrix(self.down.to(weight.device))
        if self.mid is not None:
            return torch.einsum("n m k l, i n, m j -> i j k l", self.mid.to(weight.device).float(), up, down)
        if dyn_dim is not None:
            up, down = up[:, :dyn_dim], down[:dyn_dim]
        return up @ down

    def add_to(self, buffer: Tensor, multiplier: float, dyn_dim: int | None = None) -> None:
        # the common case without a temporary: buffer += (multiplier * scale) * up @ down
        plain = self.mid is None and self.dora_scale is None and buffer.is_contiguous()
        if not plain or self.delta_numel != buffer.numel() or not self.fits(buffer.shape):
            super().add_to(buffer, multiplier, dyn_dim)
            return
        up, down = _matrix(self.up.to(buffer.device)), _matrix(self.down.to(buffer.device))
        if dyn_dim is not None:
            up, down = up[:, :dyn_dim], down[:dyn_dim]
        buffer.view(up.shape[0], -1).addmm_(up, down, alpha=multiplier * self.scale_factor())


@dataclass(frozen=True, eq=False)
class LohaUpdate(LayerUpdate):
    """LoHa: (w1_a @ w1_b) * (w2_a @ w2_b), each factor optionally a Tucker rebuild (hada_t1/t2)."""

    w1a: Tensor = field(default_factory=lambda: torch.empty(0))
    w1b: Tensor = field(default_factory=lambda: torch.empty(0))
    w2a: Tensor = field(default_factory=lambda: torch.empty(0))
    w2b: Tensor = field(default_factory=lambda: torch.empty(0))
    t1: Tensor | None = None
    t2: Tensor | None = None
    kind = "loha"

    @property
    def rank(self) -> int:
        return int(self.w1b.shape[0])

    @property
    def out_features(self) -> int:
        return int(self.w1a.shape[1] if self.t1 is not None else self.w1a.shape[0])

    @property
    def delta_numel(self) -> int:
        if self.t1 is not None:
            return self.out_features * int(self.w1b.shape[1]) * math.prod(self.t1.shape[2:])
        return self.out_features * math.prod(self.w1b.shape[1:])

    def raw_delta(self, weight: Tensor, dyn_dim: int | None) -> Tensor:
        device = weight.device
        w1 = self._factor(self.w1a, self.w1b, self.t1, device)
        w2 = self._factor(self.w2a, self.w2b, self.t2, device)
        return w1 * w2.reshape(w1.shape)

    @staticmethod
    def _factor(wa: Tensor, wb: Tensor, core: Tensor | None, device: torch.device) -> Tensor:
        if core is not None:
            return _cp(core.to(device), wa.to(device), wb.to(device))
        return _matrix(wa.to(device)) @ _matrix(wb.to(device))


@dataclass(frozen=True, eq=False)
class LokrUpdate(LayerUpdate):
    """LoKr: kron(w1, w2); each factor stored whole or as a low-rank pair (w2 also as Tucker, lokr_t2)."""

    w1: Tensor | None = None
    w1a: Tensor | None = None
    w1b: Tensor | None = None
    w2: Tensor | None = None
    w2a: Tensor | None = None
    w2b: Tensor | None = None
    t2: Tensor | None = None
    kind = "lokr"

    @property
    def rank(self) -> int | None:
        if self.w2b is not None:
            return int(self.w2b.shape[0])
        return int(self.w1b.shape[0]) if self.w1b is not None else None

    def _w1_shape(self) -> tuple[int, int]:
        if self.w1 is not None:
            return int(self.w1.shape[0]), int(self.w1.shape[1])
        assert self.w1a is not None and self.w1b is not None
        return int(self.w1a.shape[0]), int(self.w1b.shape[1])

    def _w2_numel_out(self) -> tuple[int, int]:
        if self.w2 is not None:
            return self.w2.numel(), int(self.w2.shape[0])
        assert self.w2a is not None and self.w2b is not None
        if self.t2 is not None:
            return int(self.w2a.shape[1]) * int(self.w2b.shape[1]) * math.prod(self.t2.shape[2:]), int(
                self.w2a.shape[1]
            )
        return int(self.w2a.shape[0]) * math.prod(self.w2b.shape[1:]), int(self.w2a.shape[0])

    @property
    def out_features(self) -> int:
        return self._w1_shape()[0] * self._w2_numel_out()[1]

    @property
    def delta_numel(self) -> int:
        rows, cols = self._w1_shape()
        return rows * cols * self._w2_numel_out()[0]

    def raw_delta(self, weight: Tensor, dyn_dim: int | None) -> Tensor:
        device = weight.device
        if self.w1 is not None:
            w1 = self.w1.to(device).float()
        else:
            assert self.w1a is not None and self.w1b is not None
            w1 = _matrix(self.w1a.to(device)) @ _matrix(self.w1b.to(device))
        if self.w2 is not None:
            w2 = self.w2.to(device).float()
        else:
            assert self.w2a is not None and self.w2b is not None
            if self.t2 is not None:
                w2 = _cp(self.t2.to(device), self.w2a.to(device), self.w2b.to(device))
            else:
                w2 = _matrix(self.w2a.to(device)) @ _matrix(self.w2b.to(device))
        if w2.ndim == 4:
            w1 = w1[:, :, None, None]
        return torch.kron(w1, w2.contiguous())


@dataclass(frozen=True, eq=False)
class Ia3Update(LayerUpdate):
    """IA3: scales the layer's output rows (or input columns with on_input) by 1 + multiplier * w."""

    weight: Tensor = field(default_factory=lambda: torch.empty(0))
    on_input: bool = False
    kind = "ia3"

    @property
    def needs_weight(self) -> bool:
        return True

    @property
    def delta_numel(self) -> int:
        return -1  # follows the layer

    def fits(self, shape: torch.Size) -> bool:
        axis = 1 if self.on_input else 0
        return len(shape) > axis and self.weight.numel() == shape[axis]

    def raw_delta(self, weight: Tensor, dyn_dim: int | None) -> Tensor:
        w = self.weight.to(weight.device).float().reshape(-1)
        tail = [1] * (weight.ndim - 2)
        factor = w.reshape(1, -1, *tail) if self.on_input else w.reshape(-1, 1, *tail)
        return weight.float() * factor


@dataclass(frozen=True, eq=False)
class FullUpdate(LayerUpdate):
    """A full weight difference (`diff`, optional bias difference `diff_b`)."""

    diff: Tensor = field(default_factory=lambda: torch.empty(0))
    diff_b: Tensor | None = None
    kind = "full"

    @property
    def out_features(self) -> int:
        return int(self.diff.shape[0])

    @property
    def delta_numel(self) -> int:
        return self.diff.numel()

    def bias_delta(self) -> Tensor | None:
        return self.diff_b

    def raw_delta(self, weight: Tensor, dyn_dim: int | None) -> Tensor:
        return self.diff.to(weight.device).float()


@dataclass(frozen=True, eq=False)
class NormUpdate(LayerUpdate):
    """Changes of a LayerNorm / GroupNorm's weight (`w_norm`) and bias (`b_norm`)."""

    w_norm: Tensor = field(default_factory=lambda: torch.empty(0))
    b_norm: Tensor | None = None
    kind = "norm"

    @property
    def delta_numel(self) -> int:
        return self.w_norm.numel()

    def bias_delta(self) -> Tensor | None:
        return self.b_norm

    def raw_delta(self, weight: Tensor, dyn_dim: int | None) -> Tensor:
        return self.w_norm.to(weight.device).float()


# --------------------------------------------------------------------------------------------
# parts -> update


_UNSUPPORTED_MARKERS = {"oft_blocks": "OFT", "oft_diag": "OFT", "a1.weight": "GLoRA", "b1.weight": "GLoRA"}


class _Common(TypedDict):
    alpha: float | None
    scale: float | None
    dora_scale: Tensor | None


def _common(parts: Mapping[str, Tensor]) -> _Common:
    return {
        "alpha": _scalar(parts.get("alpha")),
        "scale": _scalar(parts.get("scale")),
        "dora_scale": parts.get("dora_scale"),
    }


def _has(parts: Mapping[str, Tensor], *names: str) -> bool:
    return all(name in parts for name in names)


def build_update(parts: Mapping[str, Tensor]) -> LayerUpdate | str:
    """The update a layer's parts describe (same precedence as A1111's module types), or why none."""
    common = _common(parts)
    if _has(parts, "lora_up", "lora_down"):
        return LoraUpdate(up=parts["lora_up"], down=parts["lora_down"], mid=parts.get("lora_mid"), **common)
    if _has(parts, "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"):
        return LohaUpdate(
            w1a=parts["hada_w1_a"],
            w1b=parts["hada_w1_b"],
            w2a=parts["hada_w2_a"],
            w2b=parts["hada_w2_b"],
            t1=parts.get("hada_t1"),
            t2=parts.get("hada_t2"),
            **common,
        )
    if "weight" in parts:
        on_input = parts.get("on_input")
        return Ia3Update(weight=parts["weight"], on_input=bool(on_input is not None and on_input.any()), **common)
    has_w1 = "lokr_w1" in parts or _has(parts, "lokr_w1_a", "lokr_w1_b")
    has_w2 = "lokr_w2" in parts or _has(parts, "lokr_w2_a", "lokr_w2_b")
    if has_w1 and has_w2:
        return LokrUpdate(
            w1=parts.get("lokr_w1"),
            w1a=parts.get("lokr_w1_a"),
            w1b=parts.get("lokr_w1_b"),
            w2=parts.get("lokr_w2"),
            w2a=parts.get("lokr_w2_a"),
            w2b=parts.get("lokr_w2_b"),
            t2=parts.get("lokr_t2"),
            **common,
        )
    if "diff" in parts:
        return FullUpdate(diff=parts["diff"], diff_b=parts.get("diff_b"), **common)
    if "w_norm" in parts:
        return NormUpdate(w_norm=parts["w_norm"], b_norm=parts.get("b_norm"), **common)
    for marker, kind in _UNSUPPORTED_MARKERS.items():
        if any(part.startswith(marker) for part in parts):
            return f"{kind} layers are not supported"
    return f"no known network type has the parts {sorted(parts)}"


@dataclass
class ParsedNetwork:
    """A network file as layer updates, keyed by the layer name the file uses."""

    updates: dict[str, LayerUpdate] = field(default_factory=dict)
    unsupported: dict[str, str] = field(default_factory=dict)  # layer -> reason
    unknown_keys: list[str] = field(default_factory=list)

    @property
    def kinds(self) -> set[str]:
        return {update.kind for update in self.updates.values()}


def parse_network(state: Mapping[str, Tensor]) -> ParsedNetwork:
    grouped = group_layers(state)
    parsed = ParsedNetwork(unknown_keys=grouped.unknown_keys)
    for layer, parts in grouped.layers.items():
        update = build_update(parts)
        if isinstance(update, str):
            parsed.unsupported[layer] = update
        else:
            parsed.updates[layer] = update
    return parsed
