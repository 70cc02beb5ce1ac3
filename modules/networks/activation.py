"""The service the generation engine calls: activate a batch's extra networks on a model, reversibly.

    with activator.activate(model, parsed.networks, opts=NetworkOptions.from_settings(p.opts)) as active:
        p.extra_generation_params.update(active.infotext_params())
        ... encode prompts, sample ...
    # here the model's weights are the cached originals again, bit for bit

Tags (A1111 extra_networks_lora.py, extra_networks_hypernet.py): `<lora:name:te:unet:dyn>` with
te default 1.0, unet default te, named te= unet= dyn=; `<lyco:...>` is the same; `<hypernet:name:m>`
with m default 1.0. Names resolve by file name or alias. A missing or unloadable network, or a
network whose layers do not fit the model (e.g. an SD1 LoRA on SDXL), gives a warning and the
job goes on; layers that fit are applied, the others are not.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.models.errors import ModelError
from modules.models.families import ModelFamily, is_refiner, is_sd2, is_sdxl
from modules.models.safe_load import load_state_dict
from modules.networks.catalogue import LoraInfo, NetworkCatalogue
from modules.networks.embeddings import EmbeddingDatabase, encoder_widths
from modules.networks.hypernetworks import Hypernetwork, hypernetworks_applied, load_hypernetwork
from modules.networks.infotext import LORA_HASHES, clean_name, format_hashes
from modules.networks.keymap import ModelLayers, NetworkModel, module_weight
from modules.networks.lora_formats import ParsedNetwork, parse_network
from modules.networks.lora_patch import LayerChange, PatchedLayer, compute_patch, install, is_current
from modules.networks.options import NetworkOptions
from modules.networks.types import ExtraNetworkParams

LORA_KINDS = ("lora", "lyco")
HYPERNET_KIND = "hypernet"


class NetworksAlreadyActive(RuntimeError):
    """activate() was entered again for a model whose networks are still active."""


# --------------------------------------------------------------------------------------------
# tag arguments


@dataclass(frozen=True)
class LoraRequest:
    name: str
    te_multiplier: float = 1.0
    unet_multiplier: float = 1.0
    dyn_dim: int | None = None


@dataclass(frozen=True)
class HypernetRequest:
    name: str
    multiplier: float = 1.0


def _tag(kind: str, params: ExtraNetworkParams) -> str:
    return f"<{kind}:{':'.join(params.items)}>"


def lora_request(params: ExtraNetworkParams) -> LoraRequest:
    """A1111's argument rules for one `<lora:...>` tag; ValueError for unreadable numbers."""
    pos, named = params.positional, params.named
    if not pos or not pos[0]:
        raise ValueError("no network name")
    te = float(pos[1]) if len(pos) > 1 else 1.0
    te = float(named.get("te", te))
    unet = float(pos[2]) if len(pos) > 2 else te
    unet = float(named.get("unet", unet))
    dyn = int(pos[3]) if len(pos) > 3 else None
    dyn = int(named["dyn"]) if "dyn" in named else dyn
    return LoraRequest(pos[0], te, unet, dyn or None)


def hypernet_request(params: ExtraNetworkParams) -> HypernetRequest:
    if not params.items or not params.items[0]:
        raise ValueError("no hypernetwork name")
    return HypernetRequest(params.items[0], float(params.items[1]) if len(params.items) > 1 else 1.0)


# --------------------------------------------------------------------------------------------
# results


@dataclass
class AppliedLora:
    name: str  # as written in the prompt
    path: Path
    te_multiplier: float
    unet_multiplier: float
    layers_applied: int
    layers_not_fitting: int
    shorthash: str | None


@dataclass
class AppliedHypernetwork:
    name: str
    path: Path
    multiplier: float
    widths: list[int]


@dataclass
class ActiveNetworks:
    """What one activation did; `warnings` are meant for the job's info text."""

    loras: list[AppliedLora] = field(default_factory=list)
    hypernetworks: list[AppliedHypernetwork] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lora_hashes: dict[str, str] = field(default_factory=dict)  # mentioned name -> short hash
    functional: bool = False
    layers_patched: int = 0

    def infotext_params(self) -> dict[str, str]:
        """{"Lora hashes": "name: hash, ..."} when any applied LoRA has a hash (and hashes are wanted)."""
        return {LORA_HASHES: format_hashes(self.lora_hashes)} if self.lora_hashes else {}


# --------------------------------------------------------------------------------------------


def family_group(family: ModelFamily) -> str:
    if is_refiner(family):
        return "sdxl-refiner"
    if is_sdxl(family):
        return "sdxl"
    return "sd2" if is_sd2(family) else "sd1"


@dataclass
class LayerPlan:
    """What one network does on one model: the changes, and how many layers were left out."""

    changes: list[LayerChange]
    not_fitting: int
    offloaded: int


def plan_changes(network: ParsedNetwork, layers: ModelLayers, request: LoraRequest) -> LayerPlan:
    """The layer changes one network makes on a model; layers that are missing or of another
    shape are counted, not applied. Weights offloaded to meta cannot take IA3 / DoRA updates."""
    plan = LayerPlan([], 0, 0)
    for key, update in network.updates.items():
        target = layers.find(key)
        if target is None or not update.fits(module_weight(target.module).shape):
            plan.not_fitting += 1
            continue
        if module_weight(target.module).is_meta and update.needs_weight:
            plan.offloaded += 1
            continue
        multiplier = request.te_multiplier if target.is_text_encoder else request.unet_multiplier
        plan.changes.append(LayerChange(target, update, multiplier, request.dyn_dim, request.name))
    return plan


def _fit_warnings(name: str, info: LoraInfo, network: ParsedNetwork, plan: LayerPlan, family: ModelFamily) -> list[str]:
    out = []
    total = len(network.updates) + len(network.unsupported)
    group = family_group(family)
    origin = f"; the file looks made for {info.family}" if info.family and info.family != group else ""
    if plan.not_fitting:
        if not plan.changes:
            out.append(f"LoRA '{name}': none of its {total} layers fit this {group} model{origin}; nothing applied")
        else:
            out.append(
                f"LoRA '{name}': {plan.not_fitting} of {total} layers do not fit this {group} model{origin}; "
                "those were not applied"
            )
    elif origin:
        out.append(f"LoRA '{name}' looks made for {info.family}; it was applied to this {group} model")
    for reason in sorted(set(network.unsupported.values())):
        count = sum(1 for r in network.unsupported.values() if r == reason)
        out.append(f"LoRA '{name}': {count} layers skipped ({reason})")
    if plan.offloaded:
        out.append(f"LoRA '{name}': {plan.offloaded} IA3/DoRA layers skipped (weights are offloaded)")
    return out


class NetworkActivator:
    """Applies extra networks per batch and restores the model afterwards; caches parsed files.

    One instance serves the whole application (the composition root builds it); it keeps no
    global state. Entering activate() twice for the same model without leaving raises.

    With `keep_last_patch` the patched weights of the last LoRA set stay in memory (per model,
    like A1111's weight backups), so the next batch or job with the same networks and
    multipliers swaps them in without computing; `drop_cached_patches()` frees them.
    """

    def __init__(self, catalogue: NetworkCatalogue, *, keep_last_patch: bool = True) -> None:
        self.catalogue = catalogue
        self.keep_last_patch = keep_last_patch
        self._patches: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], list[PatchedLayer]]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.RLock()
        self._networks: OrderedDict[tuple[Path, float, int], ParsedNetwork] = OrderedDict()
        self._hypernetworks: OrderedDict[tuple[Path, float, int], Hypernetwork] = OrderedDict()
        self._active: weakref.WeakSet[Any] = weakref.WeakSet()
        self._databases: weakref.WeakKeyDictionary[Any, tuple[Any, EmbeddingDatabase]] = weakref.WeakKeyDictionary()

    # --- loading ------------------------------------------------------------------------------

    @staticmethod
    def _file_key(path: Path) -> tuple[Path, float, int]:
        stat = path.stat()
        return path, stat.st_mtime, stat.st_size

    def load_network(self, info: LoraInfo) -> ParsedNetwork:
        """The parsed LoRA file (from the cache while the file is unchanged)."""
        key = self._file_key(info.path)
        with self._lock:
            cached = self._networks.get(key)
            if cached is not None:
                self._networks.move_to_end(key)
                return cached
        parsed = parse_network(load_state_dict(info.path, safe=self.catalogue.safe_unpickle))
        with self._lock:
            self._networks[key] = parsed
        return parsed

    def load_hypernetwork(self, path: Path) -> Hypernetwork:
        key = self._file_key(path)
        with self._lock:
            cached = self._hypernetworks.get(key)
            if cached is not None:
                self._hypernetworks.move_to_end(key)
                return cached
        net = load_hypernetwork(path, safe=self.catalogue.safe_unpickle)
        with self._lock:
            self._hypernetworks[key] = net
        return net

    def _trim_caches(self, used: set[tuple[Path, float, int]], limit: int) -> None:
        """Keep what this activation used plus the `limit` most recent others (A1111 lora_in_memory_limit)."""
        with self._lock:
            for cache in (self._networks, self._hypernetworks):
                others = [k for k in cache if k not in used]
                for key in others[: max(0, len(others) - limit)]:
                    del cache[key]

    # --- activation ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def activate(
        self,
        model: NetworkModel,
        networks: Mapping[str, Sequence[ExtraNetworkParams]],
        *,
        opts: NetworkOptions | None = None,
    ) -> Iterator[ActiveNetworks]:
        """Apply the networks of one batch (kind -> tag arguments, as parse_extra_network_prompts
        gives them) for the duration of the `with` block."""
        opts = opts or NetworkOptions()
        active = ActiveNetworks()
        used: set[tuple[Path, float, int]] = set()
        for kind in networks:
            if kind not in (*LORA_KINDS, HYPERNET_KIND):
                active.warnings.append(f"unknown extra network <{kind}:...> ignored")
        changes, signature = self._lora_changes(model, networks, opts, active, used)
        hypernets = self._hypernetworks_for(networks, active, used)
        with self._lock:
            if model.unet in self._active:
                raise NetworksAlreadyActive(
                    "extra networks are already active on this model; leave that activation first"
                )
            self._active.add(model.unet)
        try:
            key = (signature, opts.functional)
            layers = self._cached_patch(model, key)
            if layers is None:
                layers = compute_patch(changes, functional=opts.functional)
            patch = install(layers)
            try:
                active.functional, active.layers_patched = patch.functional, patch.layers
                with hypernetworks_applied(model.unet, hypernets):
                    yield active
            finally:
                patch.restore()
                if self.keep_last_patch and layers:
                    with self._lock:
                        self._patches[model.unet] = (key, layers)
        finally:
            with self._lock:
                self._active.discard(model.unet)
            self._trim_caches(used, opts.in_memory_limit)

    def _cached_patch(self, model: NetworkModel, key: tuple[Any, ...]) -> list[PatchedLayer] | None:
        with self._lock:
            cached = self._patches.get(model.unet)
        if cached is None or cached[0] != key or not is_current(cached[1]):
            return None
        return cached[1]

    def drop_cached_patches(self) -> None:
        """Free the kept patched weights (e.g. before loading another model on a small machine)."""
        with self._lock:
            self._patches.clear()

    def _lora_changes(
        self,
        model: NetworkModel,
        networks: Mapping[str, Sequence[ExtraNetworkParams]],
        opts: NetworkOptions,
        active: ActiveNetworks,
        used: set[tuple[Path, float, int]],
    ) -> tuple[list[LayerChange], tuple[Any, ...]]:
        """The layer changes of the batch's LoRAs, and a signature of what they were computed from."""
        params = [(kind, p) for kind in LORA_KINDS for p in networks.get(kind, ())]
        if not params:
            return [], ()
        layers = ModelLayers.of(model)
        changes: list[LayerChange] = []
        signature: list[Any] = []
        missing: list[str] = []
        for kind, tag in params:
            try:
                request = lora_request(tag)
            except ValueError as exc:
                active.warnings.append(f"{_tag(kind, tag)} ignored: {exc}")
                continue
            info = self.catalogue.find_lora(request.name)
            if info is None:
                missing.append(request.name)
                continue
            try:
                network = self.load_network(info)
                file_key = self._file_key(info.path)
                used.add(file_key)
            except (ModelError, OSError) as exc:
                active.warnings.append(f"LoRA '{request.name}' could not be loaded: {exc}")
                continue
            plan = plan_changes(network, layers, request)
            signature.append((file_key, request.te_multiplier, request.unet_multiplier, request.dyn_dim))
            active.warnings.extend(_fit_warnings(request.name, info, network, plan, model.family))
            changes.extend(plan.changes)
            shorthash = self.catalogue.lora_shorthash(info) if opts.add_lora_hashes else None
            if shorthash:
                active.lora_hashes[clean_name(request.name)] = shorthash
            active.loras.append(
                AppliedLora(
                    request.name,
                    info.path,
                    request.te_multiplier,
                    request.unet_multiplier,
                    len(plan.changes),
                    plan.not_fitting,
                    shorthash,
                )
            )
        if missing:
            active.warnings.append("Failed to find networks: " + ", ".join(missing))
        return changes, tuple(signature)

    def _hypernetworks_for(
        self,
        networks: Mapping[str, Sequence[ExtraNetworkParams]],
        active: ActiveNetworks,
        used: set[tuple[Path, float, int]],
    ) -> list[tuple[Hypernetwork, float]]:
        chosen: list[tuple[Hypernetwork, float]] = []
        for tag in networks.get(HYPERNET_KIND, ()):
            try:
                request = hypernet_request(tag)
            except ValueError as exc:
                active.warnings.append(f"{_tag(HYPERNET_KIND, tag)} ignored: {exc}")
                continue
            info = self.catalogue.find_hypernetwork(request.name)
            if info is None:
                active.warnings.append(f"hypernetwork '{request.name}' not found")
                continue
            try:
                net = self.load_hypernetwork(info.path)
                used.add(self._file_key(info.path))
            except (ModelError, OSError) as exc:
                active.warnings.append(f"hypernetwork '{request.name}' could not be loaded: {exc}")
                continue
            chosen.append((net, request.multiplier))
            active.hypernetworks.append(AppliedHypernetwork(request.name, info.path, request.multiplier, net.widths))
        return chosen

    # --- embeddings ---------------------------------------------------------------------------

    def embedding_lookup(self, model: NetworkModel) -> EmbeddingDatabase:
        """The textual-inversion lookup for this model (TextConditioner(embeddings=...)); rebuilt
        when the embeddings folder changed."""
        scan = self.catalogue.embeddings()
        widths = encoder_widths(model.family, model.text_encoders)
        tokenizer = model.tokenizers[0]
        key = (scan.signature, tuple(widths.items()), id(tokenizer))
        with self._lock:
            cached = self._databases.get(model.unet)
            if cached is not None and cached[0] == key:
                return cached[1]
        database = EmbeddingDatabase(scan.files, tokenizer, widths)
        with self._lock:
            self._databases[model.unet] = (key, database)
        return database
