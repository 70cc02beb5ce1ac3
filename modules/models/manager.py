"""The model manager: which checkpoint is active, a RAM cache of loaded ones, VAE swaps.

One lock serialises loads, unloads and VAE changes. A failed load leaves everything as it was:
the new model is only registered after it was fully built. Cached but inactive models are
parked on the offload device (CPU RAM); the active one sits on the compute device according to
the DevicePolicy (normal, model offload for medvram, block-by-block offload for lowvram: offload.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modules.core.devices import DevicePolicy, VramMode, device_total_bytes, ram_total_bytes, torch_gc
from modules.core.paths import Paths
from modules.models.checkpoints import CheckpointInfo, CheckpointRegistry
from modules.models.errors import InvalidModelFile, ModelNotFound
from modules.models.families import ModelFamily, is_refiner, is_sdxl, native_size
from modules.models.fp8 import fp8_wanted, store_fp8
from modules.models.hashes import HashCache
from modules.models.ldm_views import diffusion_model_of, first_stage_of
from modules.models.loader import Dtypes, load_diffusers_folder, load_single_file, text_encoders_of, tokenizers_of
from modules.models.offload import BlockOffload, enable_block_offload
from modules.models.safetensors_header import read_safetensors_header
from modules.models.vae import (
    AUTOMATIC,
    VaeInfo,
    check_fits,
    list_vae_files,
    load_vae_weights,
    resolve_vae_choice,
)

log = logging.getLogger(__name__)
PARKED = "parked"


def alphas_cumprod_from(config: Any) -> torch.Tensor:
    """Cumulative alpha products of the training noise schedule (float64 maths, float32 result, as LDM)."""
    steps = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
    schedule = config.get("beta_schedule", "scaled_linear")
    if schedule == "scaled_linear":
        betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2
    elif schedule == "linear":
        betas = torch.linspace(start, end, steps, dtype=torch.float64)
    else:
        raise ValueError(f"unsupported beta schedule {schedule!r}")
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


@dataclass(eq=False)
class LoadedModel:
    """A checkpoint built into a diffusers pipeline, plus what generation code needs to know about it."""

    checkpoint: CheckpointInfo
    family: ModelFamily
    pipe: Any
    prediction_type: str  # "epsilon" | "v_prediction"
    vae_info: VaeInfo | None = None  # None: the checkpoint's own VAE
    vae_hash: str | None = None  # short sha256 (10 hex) of the external VAE file, for infotexts
    notes: list[str] = field(default_factory=list)
    alphas_cumprod: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    size_bytes: int = 0  # weights and buffers of every component (the cache's budget unit)
    fp8: bool = False  # UNet Linear/Conv weights stored in float8 (modules.models.fp8)
    _builtin_vae: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    _pins: int = field(default=0, repr=False)
    # where the pipeline sits: a VramMode once placed for compute, "parked" in RAM, None unknown
    _placement: str | None = field(default=None, repr=False)
    _offload: BlockOffload | None = field(default=None, repr=False)  # --lowvram hooks while placed

    def __post_init__(self) -> None:
        if self.alphas_cumprod.numel() == 0:
            self.alphas_cumprod = alphas_cumprod_from(self.pipe.scheduler.config)
        if self.size_bytes == 0:
            self.size_bytes = pipe_bytes(self.pipe)

    @property
    def unet(self) -> Any:
        return self.pipe.unet

    @property
    def vae(self) -> Any:
        return self.pipe.vae

    @property
    def text_encoders(self) -> list[Any]:
        """1 (SD1/SD2: CLIP-L or OpenCLIP-H; refiner: OpenCLIP-G) or 2 (SDXL: CLIP-L, OpenCLIP-G)."""
        return text_encoders_of(self.pipe)

    @property
    def tokenizers(self) -> list[Any]:
        return tokenizers_of(self.pipe)

    @property
    def is_inpaint(self) -> bool:
        return int(self.pipe.unet.config.in_channels) == 9

    @property
    def is_sdxl(self) -> bool:
        return is_sdxl(self.family)

    @property
    def is_refiner(self) -> bool:
        return is_refiner(self.family)

    @property
    def latent_scaling_factor(self) -> float:
        return float(self.pipe.vae.config.scaling_factor)

    @property
    def latent_channels(self) -> int:
        return int(self.pipe.vae.config.latent_channels)

    @property
    def in_use(self) -> bool:
        return self._pins > 0


class ModelManager:
    def __init__(
        self,
        paths: Paths,
        policy: DevicePolicy,
        hash_cache: HashCache | None,
        *,
        safe_unpickle: bool = True,
        cache_size: Callable[[], int] = lambda: 0,
        builtin_checkpoints: Sequence[Path] = (),
        budget: Callable[[], MemoryBudget] = lambda: MemoryBudget(),
        fp8_storage: Callable[[], str] = lambda: "Disable",
        builtin_native_size: int | None = None,
    ) -> None:
        """`hash_cache=None` disables hashing (--no-hashing); `cache_size` reads sd_checkpoint_cache;
        `builtin_checkpoints` are always listed, after the user's (the shipped demo model), and
        were trained at `builtin_native_size` px; `budget` gives the byte budgets per device;
        `fp8_storage` reads A1111's fp8_storage setting."""
        self.paths = paths
        self.policy = policy
        self.hash_cache = hash_cache
        self.safe_unpickle = safe_unpickle
        self.cache_size = cache_size
        self.budget = budget
        self.fp8_storage = fp8_storage
        self.registry = CheckpointRegistry(
            paths.ckpt_dir, paths.extra_ckpt_files, hash_cache, builtin_files=builtin_checkpoints
        )
        self.builtin_native_size = builtin_native_size
        self.disk_loads = 0
        self._lock = threading.RLock()
        self._cache: OrderedDict[Path, LoadedModel] = OrderedDict()
        self._active: LoadedModel | None = None
        self._loaded_listeners: list[Callable[[LoadedModel], None]] = []

    # --- listing -----------------------------------------------------------------------------

    def refresh(self) -> list[CheckpointInfo]:
        return self.registry.refresh()

    def list_checkpoints(self) -> list[CheckpointInfo]:
        return self.registry.checkpoints()

    def find_checkpoint(self, alias: str) -> CheckpointInfo:
        return self.registry.find(alias)

    def native_size(self, checkpoint: CheckpointInfo) -> int:
        """The size a checkpoint draws best at: a built-in model's own, the file's
        `modelspec.resolution` when it has one, else its family's (SD1 512, SD2-v 768, SDXL 1024)."""
        builtin = {os.path.abspath(p) for p in self.registry.builtin_files}
        if self.builtin_native_size and os.path.abspath(checkpoint.filename) in builtin:
            return self.builtin_native_size
        declared = _declared_resolution(Path(checkpoint.filename))
        if declared:
            return declared
        try:
            found = checkpoint.identify()
        except (InvalidModelFile, OSError):  # it fails clearly when loaded; the common size meanwhile
            return native_size(None)
        if found.family == ModelFamily.SD2 and found.prediction_type == "v_prediction":
            return native_size(ModelFamily.SD2_V)  # SD2 768-v, told by its sibling .yaml
        return native_size(found.family)

    def list_vaes(self) -> list[VaeInfo]:
        return list_vae_files(self.paths.vae_dir, self.paths.ckpt_dir)

    @property
    def active(self) -> LoadedModel | None:
        return self._active

    @property
    def cached(self) -> list[LoadedModel]:
        """Models held in RAM, least recently used first."""
        with self._lock:
            return list(self._cache.values())

    # --- loading -----------------------------------------------------------------------------

    def load(
        self,
        checkpoint: str | CheckpointInfo,
        *,
        vae: str | None = AUTOMATIC,
        activate: bool = True,
        fp8_storage: str | None = None,
    ) -> LoadedModel:
        """The model for a checkpoint (name/title/hash alias or info), from the RAM cache or disk.

        With activate=True it becomes `active`. `vae` is applied with `set_vae` (None: leave as
        is). Any failure (bad file, unknown VAE, VAE that does not fit) leaves `active` and the
        cache as they were.
        """
        model, switched = self._load(checkpoint, vae=vae, activate=activate, fp8_storage=fp8_storage)
        if switched:
            self._notify_loaded(model)
        return model

    def _load(
        self, checkpoint: str | CheckpointInfo, *, vae: str | None, activate: bool, fp8_storage: str | None = None
    ) -> tuple[LoadedModel, bool]:
        """-> (model, whether it just became the active model). `fp8_storage`: a job's setting (None: stored)."""
        storage = fp8_storage if fp8_storage is not None else self.fp8_storage()
        switched = False
        with self._lock:
            info = checkpoint if isinstance(checkpoint, CheckpointInfo) else self.find_checkpoint(checkpoint)
            if vae is not None:
                resolve_vae_choice(vae, info.filename, self.list_vaes())  # unknown names fail before any work
            model = self._cache.get(info.filename)
            if model is not None:
                model = self._apply_storage(model, storage)
            else:
                self._evict(reserve=_file_bytes(info.filename))  # make room before reading the file
                model = self._load_from_disk(info, storage)
            if vae is not None:
                self.set_vae(model, vae)
            self._cache[info.filename] = model
            self._cache.move_to_end(info.filename)
            if activate and model is not self._active:
                switched = True
                previous, self._active = self._active, model
                if previous is not None and not previous.in_use and previous.checkpoint.filename in self._cache:
                    self._park(previous)
                previous = None  # no reference may outlive an eviction below
            if activate or model.in_use or model is self._active:
                self._place(model)
            else:
                self._park(model)
            self._evict(keep=model)
            return model, switched

    # --- model-loaded event (A1111 on_model_loaded) ---------------------------------------------

    def add_loaded_listener(self, listener: Callable[[LoadedModel], None]) -> Callable[[], None]:
        """Call `listener(model)` whenever a model becomes the active one (load, switch, reload).
        Returns a function that removes the listener."""
        with self._lock:
            self._loaded_listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._loaded_listeners:
                    self._loaded_listeners.remove(listener)

        return remove

    def _notify_loaded(self, model: LoadedModel) -> None:
        with self._lock:
            listeners = list(self._loaded_listeners)
        for listener in listeners:
            try:
                listener(model)
            except Exception:  # boundary: a listener must not break model loading
                log.exception("model-loaded listener failed")

    def _load_from_disk(self, info: CheckpointInfo, fp8_storage: str | None = None) -> LoadedModel:
        info.calculate_shorthash(self.hash_cache)
        dtypes = Dtypes(self.policy.unet_dtype, self.policy.vae_dtype, self.policy.text_encoder_dtype)
        cache_root = self.paths.cache_dir / "tokenizers"
        if info.is_diffusers_folder:
            built = load_diffusers_folder(info.filename, tokenizer_cache=cache_root, dtypes=dtypes)
        else:
            built = load_single_file(
                info.filename,
                tokenizer_cache=cache_root,
                safe=self.safe_unpickle,
                dtypes=dtypes,
                align=self.policy.is_cpu,  # an accelerator copy realigns the weights anyway
            )
        self.disk_loads += 1
        for note in built.notes:
            log.info("%s: %s", info.name, note)
        model = LoadedModel(info, built.family, built.pipe, built.prediction_type, notes=list(built.notes))
        storage = fp8_storage if fp8_storage is not None else self.fp8_storage()
        if fp8_wanted(storage, model.is_sdxl, self.policy.device):
            self._store_fp8(model)
        return model

    def _store_fp8(self, model: LoadedModel) -> None:
        with _offload_suspended(self, model):
            layers = store_fp8(model.unet)
        model.fp8, model.size_bytes = True, pipe_bytes(model.pipe)
        log.info("%s: UNet weights stored in fp8 (%d layers)", model.checkpoint.name, layers)

    def _apply_storage(self, model: LoadedModel, storage: str) -> LoadedModel:
        """A cached model after the fp8_storage setting changed: quantise it, or read it again for full weights."""
        wanted = fp8_wanted(storage, model.is_sdxl, self.policy.device)
        if wanted == model.fp8 or model.in_use:
            return model
        if wanted:
            self._store_fp8(model)
            return model
        fresh = self._load_from_disk(model.checkpoint, storage)
        self._cache[model.checkpoint.filename] = fresh
        if self._active is model:
            self._active = fresh
        if model.vae_info is not None:
            self.set_vae(fresh, str(model.vae_info.filename))
        self._release(model)
        return fresh

    def _evict(self, keep: LoadedModel | None = None, reserve: int = 0) -> int:
        """Drop least recently used models beyond sd_checkpoint_cache or the RAM budget (with `reserve`
        bytes to spare); never the active, a pinned or `keep`. Returns how many were dropped."""
        capacity = max(1, int(self.cache_size()))
        budget = self.budget().ram_bytes
        dropped = 0
        for key in list(self._cache):
            over_count = len(self._cache) > capacity - (1 if reserve else 0)
            over_bytes = budget > 0 and self.bytes_in("ram") + reserve > budget
            if not (over_count or over_bytes):
                break
            model = self._cache[key]
            if model is self._active or model is keep or model.in_use:
                continue
            del self._cache[key]
            self._release(model)
            dropped += 1
        if dropped:
            return_freed_memory()
        return dropped

    def bytes_in(self, where: str) -> int:
        """Bytes of the cached models held in "ram" or "vram" (on the CPU everything is RAM)."""
        with self._lock:
            return sum(m.size_bytes for m in self._cache.values() if self._where(m) == where)

    def _where(self, model: LoadedModel) -> str:
        on_device = model._placement == VramMode.NORMAL and self.policy.device.type != "cpu"
        return "vram" if on_device else "ram"

    def unload(self) -> None:
        """Drop the active model from memory (A1111 "unload checkpoint"); cached others stay."""
        with self._lock:
            model, self._active = self._active, None
            if model is not None and not model.in_use:
                self._cache.pop(model.checkpoint.filename, None)
                self._release(model)
                model = None
                return_freed_memory()

    def reload(self) -> LoadedModel | None:
        """Read the active checkpoint from disk again (e.g. after the file changed)."""
        with self._lock:
            model = self._active
            if model is None:
                return None
            fresh = self._load_from_disk(model.checkpoint)
            choice = str(model.vae_info.filename) if model.vae_info is not None else "None"
            self._cache[model.checkpoint.filename] = fresh
            self._active = fresh
            if not model.in_use:
                self._release(model)
            self._place(fresh)
            self.set_vae(fresh, choice)
        self._notify_loaded(fresh)
        return fresh

    @contextlib.contextmanager
    def use(self, model: LoadedModel | str | CheckpointInfo | None = None) -> Iterator[LoadedModel]:
        """Pin a model on its compute device for the duration of a job; it cannot be evicted meanwhile.

        `model`: a LoadedModel, a checkpoint alias (loaded without becoming active, e.g. a refiner
        or hires checkpoint), or None for the active model.
        """
        with self._lock:
            if model is None:
                target = self._active
            elif isinstance(model, LoadedModel):
                target = model
            else:
                target = self.load(model, activate=False, vae=None)
            if target is None:
                raise ModelNotFound("no checkpoint is loaded")
            target._pins += 1
            self._place(target)
        try:
            yield target
        finally:
            with self._lock:
                target._pins -= 1
                if not target.in_use:
                    if target.checkpoint.filename not in self._cache and target is not self._active:
                        self._release(target)
                    elif target is not self._active:
                        self._park(target)
                    self._evict()

    # --- device placement -------------------------------------------------------------------

    def _mode(self, model: LoadedModel) -> VramMode:
        return self.policy.vram_mode_for(model.is_sdxl)

    def _place(self, model: LoadedModel) -> None:
        mode = self._mode(model)
        if model._placement == mode:
            return
        if mode == VramMode.NORMAL and not self._fits_vram(model):
            mode = VramMode.MEDVRAM
            log.info("%s: over the VRAM budget; components move to the GPU only while used", model.checkpoint.name)
        _remove_offload(model)
        if mode == VramMode.MEDVRAM:
            model.pipe.enable_model_cpu_offload(device=self.policy.device)
        elif mode == VramMode.LOWVRAM:
            # the ldm-shaped views are what generation calls (their blocks share the weights)
            views = [diffusion_model_of(model.unet), first_stage_of(model.vae)]
            components = [model.unet, model.vae, *views, *model.text_encoders]
            model._offload = enable_block_offload(components, self.policy.device, self.policy.offload_device)
        else:
            model.pipe.to(self.policy.device)
        model._placement = mode

    def _fits_vram(self, model: LoadedModel) -> bool:
        """Park idle models until `model` fits the VRAM budget; False if it still does not."""
        budget = self.budget().vram_bytes
        if budget <= 0 or self.policy.device.type == "cpu":
            return True
        for other in list(self._cache.values()):
            if self.bytes_in("vram") + model.size_bytes <= budget:
                break
            if other is not model and not other.in_use and self._where(other) == "vram":
                self._park(other)
        return self.bytes_in("vram") + model.size_bytes <= budget

    def _park(self, model: LoadedModel) -> None:
        if model._placement == PARKED:
            return
        _remove_offload(model)
        model.pipe.to(self.policy.offload_device)
        model._placement = PARKED
        if self.policy.device != self.policy.offload_device:
            torch_gc()

    def _release(self, model: LoadedModel) -> None:
        """Forget a model: off the accelerator, references dropped (memory goes once callers let go)."""
        self._park(model)
        model._builtin_vae = None
        if not self.policy.is_cpu:
            torch_gc()

    # --- VAE --------------------------------------------------------------------------------

    def set_vae_dtype(self, model: LoadedModel, dtype: torch.dtype) -> None:
        """Convert the model's VAE (the NaN fallback); it keeps this dtype until the model is reloaded."""
        with self._lock, _offload_suspended(self, model):
            model.vae.to(dtype)
            model.size_bytes = pipe_bytes(model.pipe)

    def set_vae(self, model: LoadedModel, choice: str) -> VaeInfo | None:
        """Switch the model's VAE: "Automatic", "None" (the checkpoint's own) or a VAE file name."""
        with self._lock:
            target = resolve_vae_choice(choice, model.checkpoint.filename, self.list_vaes())
            if _same_vae(target, model.vae_info):
                return model.vae_info
            with _offload_suspended(self, model):
                if target is None:
                    if model._builtin_vae is not None:
                        model.vae.load_state_dict(model._builtin_vae)
                else:
                    state = load_vae_weights(target.filename, model.vae.config, safe=self.safe_unpickle)
                    check_fits(model.vae, state, target.name)
                    if model._builtin_vae is None:
                        model._builtin_vae = {
                            k: v.detach().to("cpu", copy=True) for k, v in model.vae.state_dict().items()
                        }
                    model.vae.load_state_dict(state)
            model.vae_info = target
            model.vae_hash = None
            if target is not None and self.hash_cache is not None:
                model.vae_hash = self.hash_cache.sha256(target.hash_key, target.filename)[:10]
            return target


def return_freed_memory() -> None:
    """Give a dropped model's memory back to the OS.

    glibc keeps large freed blocks in its heaps: without a trim, every checkpoint switch without a
    RAM cache left ~3.4 GB (an SD1.5 model's fp32 weights) of freed but resident memory behind
    (bench/bench_models.py). gc first: pipelines hold reference cycles.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    trim = getattr(libc, "malloc_trim", None)  # glibc only (not musl, macOS, Windows)
    if trim is not None:
        trim(0)


@dataclass(frozen=True)
class MemoryBudget:
    """Byte budgets of the model cache per device; 0 = no byte limit (only sd_checkpoint_cache)."""

    ram_bytes: int = 0
    vram_bytes: int = 0

    @classmethod
    def from_settings(cls, policy: DevicePolicy, ram_mb: int, vram_mb: int) -> MemoryBudget:
        """MiB settings -> bytes; 0 = automatic: half the machine's RAM, 90% of the GPU's memory."""
        ram = ram_mb * 2**20 if ram_mb > 0 else (ram_total_bytes() or 0) // 2
        device_total = device_total_bytes(policy.device)
        vram = vram_mb * 2**20 if vram_mb > 0 else int((device_total or 0) * 0.9)
        return cls(ram, vram)


def pipe_bytes(pipe: Any) -> int:
    """Bytes of every component's parameters and buffers (each tensor counted once)."""
    seen: set[int] = set()
    total = 0
    for component in getattr(pipe, "components", {}).values():
        if not isinstance(component, torch.nn.Module):
            continue
        for tensor in (*component.parameters(), *component.buffers()):
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


def _file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def _same_vae(a: VaeInfo | None, b: VaeInfo | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.filename == b.filename


def _remove_offload(model: LoadedModel) -> None:
    if model._placement == VramMode.MEDVRAM:
        model.pipe.remove_all_hooks()
    if model._offload is not None:
        model._offload.remove()
        model._offload = None
    model._placement = None


@contextlib.contextmanager
def _offload_suspended(manager: ModelManager, model: LoadedModel) -> Iterator[None]:
    """Lowvram moves blocks while they run; lift it (all weights in RAM) while weights are replaced."""
    if model._placement != VramMode.LOWVRAM:
        yield
        return
    _remove_offload(model)
    try:
        yield
    finally:
        manager._place(model)


def _declared_resolution(path: Path) -> int | None:
    """`modelspec.resolution` ("1024x1024") from a .safetensors header; the larger side."""
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return None
    try:
        meta = read_safetensors_header(path).get("__metadata__") or {}
        sides = [int(v) for v in str(meta.get("modelspec.resolution", "")).lower().split("x") if v.strip()]
    except (InvalidModelFile, OSError, ValueError):
        return None
    return max(sides) if sides and all(64 <= v <= 8192 for v in sides) else None
