"""Checkpoint Merger (A1111 tab "Checkpoint Merger"), streaming one tensor at a time.

Rules kept from A1111 (modules/extras.py run_modelmerger):
- Weighted sum: A·(1−M) + B·M; Add difference: A + (B−C)·M; No interpolation: A as is.
- Only keys containing "model" that exist in both A and B are merged; other keys of A are copied;
  keys only in B are dropped. With Add difference a key missing from C adds nothing.
- The CLIP position_ids buffer is never merged (copied from A).
- Inpainting (9-channel) / instruct-pix2pix (8-channel) A with a 4-channel B: the first 4 input
  channels are merged, the rest kept from A, and the name gets ".inpainting" / ".instruct-pix2pix".
  A normal A with an inpainting B is refused.
- Bake in VAE: `first_stage_model.<key>` of the result is replaced by `<key>` of the VAE file.
- Default names: "{1−M}({a}) + {M}({b})", "{a} + {M}({b} - {c})", "{a}" (rounded to 2 places).
- Metadata: copied source fields, user JSON, "format": "pt", "sd_merge_recipe", "sd_merge_models".

Deliberate differences and the memory design: docs/merger.md. In short, safetensors output
is streamed (about one tensor per input in memory); .ckpt output is a pickle of the whole dict
and holds the full result in memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from modules.merger.safetensors_stream import (
    CkptSource,
    SafetensorsReader,
    SafetensorsStreamWriter,
    TensorSource,
    TensorSpec,
)

ProgressCallback = Callable[[int, int], None]  # (tensors done, tensors total)
Sha256Fn = Callable[[Path], str]

SKIP_ON_MERGE = frozenset({"cond_stage_model.transformer.text_model.embeddings.position_ids"})
VAE_IGNORED_KEYS = frozenset({"model_ema.decay", "model_ema.num_updates"})
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")


class MergeError(ValueError):
    """A merge that cannot be done as asked; the message says why."""


class InterpMethod(StrEnum):
    NONE = "No interpolation"
    WEIGHTED_SUM = "Weighted sum"
    ADD_DIFFERENCE = "Add difference"


class MergeRequest(BaseModel):
    """A1111's merger fields, with the model names already resolved to files by the caller."""

    model_config = ConfigDict(frozen=True)

    primary_model_name: Path
    secondary_model_name: Path | None = None
    tertiary_model_name: Path | None = None
    interp_method: InterpMethod = InterpMethod.WEIGHTED_SUM
    multiplier: float = 0.3
    save_as_half: bool = False
    custom_name: str = ""
    checkpoint_format: Literal["safetensors", "ckpt"] = "safetensors"
    config_source: int = Field(default=0, ge=0, le=3)  # 0: A, B or C; 1: B; 2: C; 3: don't copy
    bake_in_vae: Path | None = None
    discard_weights: str = ""
    save_metadata: bool = True
    add_merge_recipe: bool = True
    copy_metadata_fields: bool = True
    metadata_json: str = ""
    output_dir: Path
    overwrite: bool = False


@dataclass(frozen=True)
class MergeResult:
    path: Path
    metadata: dict[str, str]  # what was stored in the file (always empty for .ckpt)
    is_inpainting: bool
    is_instruct_pix2pix: bool
    config_path: Path | None
    tensor_count: int


def open_source(path: Path, role: str) -> TensorSource:
    """Open a checkpoint or VAE file for reading; `role` names it in error messages."""
    path = Path(path)
    if not path.is_file():
        raise MergeError(f"{role} model file not found: {path}")
    if path.suffix.lower() == ".safetensors":
        try:
            return SafetensorsReader(path)
        except ValueError as e:
            raise MergeError(f"{role} model {path.name}: {e}") from e
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        try:
            return CkptSource(path)
        except ValueError as e:
            raise MergeError(f"{role} model {e}") from e
        except Exception as e:  # boundary: any unpickling failure becomes a clear message
            raise MergeError(
                f"{role} model {path.name} cannot be loaded safely (only plain weights are accepted in pickled "
                f"checkpoints; converting it to .safetensors avoids this): {_unpickling_reason(e)}"
            ) from e
    raise MergeError(f"{role} model {path.name}: unsupported file type (use .safetensors or .ckpt)")


def _unpickling_reason(error: Exception) -> str:
    """The informative part of torch's long weights-only refusal message."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    return " ".join(text.split("\n\n")[0].split()) or type(error).__name__


class Action(Enum):
    COPY_A = "copy"
    MERGE = "merge"
    MERGE_FIRST_4 = "merge first 4 input channels"
    FROM_VAE = "from VAE"


@dataclass(frozen=True)
class PlannedTensor:
    name: str
    action: Action
    out: TensorSpec
    vae_key: str = ""


@dataclass
class MergePlan:
    tensors: list[PlannedTensor] = field(default_factory=list)
    is_inpainting: bool = False
    is_instruct_pix2pix: bool = False


@dataclass
class Sources:
    a: TensorSource
    b: TensorSource | None
    c: TensorSource | None
    vae: TensorSource | None
    c_keys: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.c_keys = frozenset(self.c.tensor_names()) if self.c is not None else frozenset()

    def close(self) -> None:
        for s in (self.a, self.b, self.c, self.vae):
            if s is not None:
                s.close()


def _combine(method: InterpMethod, a: torch.Tensor, other: torch.Tensor, m: float) -> torch.Tensor:
    """A1111's formulas; for Add difference `other` is already B − C."""
    if method == InterpMethod.WEIGHTED_SUM:
        return (1 - m) * a + m * other
    return a + m * other


def _merged_dtype(method: InterpMethod, a: TensorSpec, b: TensorSpec, c: TensorSpec | None, m: float) -> torch.dtype:
    """Result dtype of the merge formula, found by running it on empty meta tensors."""
    meta = {s: torch.empty(0, dtype=s.dtype, device="meta") for s in (a, b) + ((c,) if c else ())}
    other = meta[b] - meta[c] if c is not None else meta[b]
    return _combine(method, meta[a], other, m).dtype


def _half(dtype: torch.dtype, enabled: bool) -> torch.dtype:
    return torch.float16 if enabled and dtype == torch.float32 else dtype


def _channel_mismatch(name: str, a: TensorSpec, b: TensorSpec) -> Action:
    """Decide how A1111 merges an input conv whose channel count differs (inpainting / ip2p)."""
    same_elsewhere = len(a.shape) == 4 and len(b.shape) == 4 and a.shape[:1] + a.shape[2:] == b.shape[:1] + b.shape[2:]
    if same_elsewhere and b.shape[1] == 4 and a.shape[1] in (8, 9):
        return Action.MERGE_FIRST_4
    if same_elsewhere and a.shape[1] == 4 and b.shape[1] == 9:
        raise MergeError("When merging inpainting model with a normal one, A must be the inpainting model.")
    if same_elsewhere and a.shape[1] == 4 and b.shape[1] == 8:
        raise MergeError("When merging instruct-pix2pix model with a normal one, A must be the instruct-pix2pix model.")
    raise MergeError(
        f"Models are not compatible: {name} has shape {list(a.shape)} in A and {list(b.shape)} in B/C "
        "(different architectures cannot be merged)"
    )


def _vae_keys(vae: TensorSource) -> dict[str, str]:
    """Checkpoint key → VAE file key, skipping the loss and EMA entries as A1111 does."""
    return {
        "first_stage_model." + k: k
        for k in vae.tensor_names()
        if not k.startswith("loss") and k not in VAE_IGNORED_KEYS
    }


def plan_merge(request: MergeRequest, sources: Sources) -> MergePlan:
    """Decide, from the headers alone, what each output tensor is and its dtype and shape."""
    method, m, half = request.interp_method, request.multiplier, request.save_as_half
    discard = re.compile(request.discard_weights) if request.discard_weights else None
    vae_map = _vae_keys(sources.vae) if sources.vae else {}
    b_keys = set(sources.b.tensor_names()) if sources.b else set()
    plan = MergePlan()
    for name in sources.a.tensor_names():
        if discard is not None and discard.search(name):
            continue
        a = sources.a.spec(name)
        if name in vae_map and sources.vae is not None:
            vae_spec = sources.vae.spec(vae_map[name])
            out = TensorSpec(name, _half(vae_spec.dtype, half), vae_spec.shape)
            plan.tensors.append(PlannedTensor(name, Action.FROM_VAE, out, vae_map[name]))
            continue
        if method == InterpMethod.NONE or sources.b is None or "model" not in name or name not in b_keys:
            plan.tensors.append(PlannedTensor(name, Action.COPY_A, TensorSpec(name, _half(a.dtype, half), a.shape)))
            continue
        if name in SKIP_ON_MERGE:
            plan.tensors.append(PlannedTensor(name, Action.COPY_A, TensorSpec(name, a.dtype, a.shape)))
            continue
        b = sources.b.spec(name)
        c = sources.c.spec(name) if sources.c is not None and name in sources.c_keys else None
        if c is not None and c.shape != b.shape:
            raise MergeError(f"Models B and C are not compatible: {name} is {list(b.shape)} in B, {list(c.shape)} in C")
        if a.shape == b.shape:
            dtype = _merged_dtype(method, a, b, c, m)
            plan.tensors.append(PlannedTensor(name, Action.MERGE, TensorSpec(name, _half(dtype, half), a.shape)))
            continue
        action = _channel_mismatch(name, a, b)
        plan.is_inpainting |= a.shape[1] == 9
        plan.is_instruct_pix2pix |= a.shape[1] == 8
        plan.tensors.append(PlannedTensor(name, action, TensorSpec(name, _half(a.dtype, half), a.shape)))
    return plan


def _combine_owned(
    method: InterpMethod, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None, m: float
) -> torch.Tensor:
    """A1111's formula evaluated in place on tensors the caller owns.

    Same operations in the same order as `_combine` (so the same rounding, bit for bit), without
    temporaries: this halves peak memory and runs ~1.5x faster. Mixed dtypes fall back to
    `_combine`, whose type promotion in-place ops cannot reproduce.
    """
    same_dtype = a.dtype == b.dtype and (c is None or c.dtype == a.dtype) and a.is_floating_point()
    if method == InterpMethod.ADD_DIFFERENCE:
        if c is None:  # key missing from C: A1111 adds M * 0
            return _combine(method, a, torch.zeros_like(b), m)
        if not same_dtype:
            return _combine(method, a, b - c, m)
        return a.add_(b.sub_(c).mul_(m))
    if not same_dtype:
        return _combine(method, a, b, m)
    return a.mul_(1 - m).add_(b.mul_(m))


@dataclass
class TensorInputs:
    """The source tensors one output tensor is made from (owned by the merge)."""

    a: torch.Tensor
    b: torch.Tensor | None = None
    c: torch.Tensor | None = None


def read_inputs(item: PlannedTensor, request: MergeRequest, sources: Sources) -> TensorInputs:
    """Read only what `item` needs; for a baked-in VAE tensor, `a` is the VAE's."""
    if item.action == Action.FROM_VAE and sources.vae is not None:
        return TensorInputs(sources.vae.read(item.vae_key))
    a = sources.a.read(item.name)
    if item.action == Action.COPY_A or sources.b is None:
        return TensorInputs(a)
    use_c = request.interp_method == InterpMethod.ADD_DIFFERENCE and item.name in sources.c_keys
    c = sources.c.read(item.name) if use_c and sources.c is not None else None
    return TensorInputs(a, sources.b.read(item.name), c)


def merge_inputs(item: PlannedTensor, request: MergeRequest, inputs: TensorInputs) -> torch.Tensor:
    """The output tensor for `item`, in its planned dtype."""
    a, b, c = inputs.a, inputs.b, inputs.c
    if b is None or item.action in (Action.COPY_A, Action.FROM_VAE):
        return a.to(item.out.dtype)
    method, m = request.interp_method, request.multiplier
    if item.action == Action.MERGE:
        return _combine_owned(method, a, b, c, m).to(item.out.dtype)
    a[:, 0:4, :, :] = _combine_owned(method, a[:, 0:4, :, :].clone(), b, c, m)
    return a.to(item.out.dtype)


def compute_tensor(item: PlannedTensor, request: MergeRequest, sources: Sources) -> torch.Tensor:
    return merge_inputs(item, request, read_inputs(item, request, sources))


def _model_label(path: Path, output_dir: Path) -> str:
    """A1111's checkpoint "name": the path relative to the checkpoints folder."""
    try:
        return path.resolve().relative_to(output_dir.resolve()).as_posix()
    except ValueError:
        return path.name


def _model_name(path: Path, output_dir: Path) -> str:
    """A1111's "model_name": the name without extension, folders joined with '_'."""
    return os.path.splitext(_model_label(path, output_dir).replace("/", "_"))[0]


def output_stem(request: MergeRequest) -> str:
    """Custom name, or A1111's default name for the method."""
    if request.custom_name:
        return request.custom_name
    out, m = request.output_dir, request.multiplier
    a = _model_name(request.primary_model_name, out)
    if request.interp_method == InterpMethod.NONE or request.secondary_model_name is None:
        return a
    b = _model_name(request.secondary_model_name, out)
    if request.interp_method == InterpMethod.WEIGHTED_SUM:
        return f"{round(1 - m, 2)}({a}) + {round(m, 2)}({b})"
    c = _model_name(request.tertiary_model_name, out) if request.tertiary_model_name else ""
    return f"{a} + {round(m, 2)}({b} - {c})"


def output_path(request: MergeRequest, plan: MergePlan) -> Path:
    name = output_stem(request)
    name += ".inpainting" if plan.is_inpainting else ""
    name += ".instruct-pix2pix" if plan.is_instruct_pix2pix else ""
    return request.output_dir / f"{name}.{request.checkpoint_format}"


def legacy_model_hash(path: Path) -> str:
    """A1111's old 8-hex "model hash": sha256 of 64 KiB at offset 1 MiB."""
    with Path(path).open("rb") as f:
        f.seek(0x100000)
        return hashlib.sha256(f.read(0x10000)).hexdigest()[:8]


def _sha256_hashlib(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_sha256() -> Sha256Fn:
    """The model manager's hasher (modules.models.hashes) when importable, else a hashlib one.

    Callers with a hash cache should pass their cached function to `merge_checkpoints` instead.
    """
    try:
        from modules.models.hashes import sha256_file
    except ImportError:
        return _sha256_hashlib
    return sha256_file


def _json_field(metadata: dict[str, str], key: str) -> object:
    """A metadata value that A1111 stores as a JSON string, parsed (None if absent or not JSON)."""
    value = metadata.get(key)
    if not value:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return None


def _user_metadata(text: str) -> dict[str, str]:
    if not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as e:
        raise MergeError(f"Metadata JSON is not valid: {e}") from e
    if not isinstance(parsed, dict):
        raise MergeError("Metadata JSON must be an object ({...})")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in parsed.items()}


def build_metadata(request: MergeRequest, sources: Sources, plan: MergePlan, sha256: Sha256Fn) -> dict[str, str]:
    """The safetensors metadata A1111 writes for a merge (empty when saving metadata is off)."""
    if not request.save_metadata:
        return {}
    used = [s for s in (sources.a, sources.b, sources.c) if s is not None]
    metadata: dict[str, str] = {}
    if request.copy_metadata_fields:
        for source in used:
            metadata.update(source.metadata)
    metadata.update(_user_metadata(request.metadata_json))
    metadata["format"] = "pt"
    if not request.add_merge_recipe:
        return metadata
    hashes = [sha256(s.path) for s in used]
    recipe = {
        "type": "webui",
        "primary_model_hash": hashes[0],
        "secondary_model_hash": hashes[1] if sources.b else None,
        "tertiary_model_hash": hashes[2] if sources.c else None,
        "interp_method": str(request.interp_method),
        "multiplier": request.multiplier,
        "save_as_half": request.save_as_half,
        "custom_name": request.custom_name,
        "config_source": request.config_source,
        "bake_in_vae": request.bake_in_vae.name if request.bake_in_vae else "None",
        "discard_weights": request.discard_weights,
        "is_inpainting": plan.is_inpainting,
        "is_instruct_pix2pix": plan.is_instruct_pix2pix,
    }
    merge_models: dict[str, object] = {}
    for source, digest in zip(used, hashes, strict=True):
        merge_models[digest] = {
            "name": _model_label(source.path, request.output_dir),
            "legacy_hash": legacy_model_hash(source.path),
            "sd_merge_recipe": _json_field(source.metadata, "sd_merge_recipe"),
        }
        inherited = _json_field(source.metadata, "sd_merge_models")
        if isinstance(inherited, dict):
            merge_models.update(inherited)
    metadata["sd_merge_recipe"] = json.dumps(recipe)
    metadata["sd_merge_models"] = json.dumps(merge_models)
    return metadata


def _config_file(request: MergeRequest) -> Path | None:
    """The .yaml beside A, B or C chosen by `config_source`, if it exists."""
    candidates = {
        0: [request.primary_model_name, request.secondary_model_name, request.tertiary_model_name],
        1: [request.secondary_model_name],
        2: [request.tertiary_model_name],
    }.get(request.config_source, [])
    for model in candidates:
        if model is not None and model.with_suffix(".yaml").is_file():
            return model.with_suffix(".yaml")
    return None


def _validate(request: MergeRequest) -> None:
    if request.interp_method != InterpMethod.NONE and request.secondary_model_name is None:
        raise MergeError("Failed: Merging requires a secondary model.")
    if request.interp_method == InterpMethod.ADD_DIFFERENCE and request.tertiary_model_name is None:
        raise MergeError(f"Failed: Interpolation method ({request.interp_method}) requires a tertiary model.")
    if not math.isfinite(request.multiplier):
        raise MergeError("Multiplier must be a finite number")
    name = request.custom_name
    if name and (name.strip() != name or "/" in name or "\\" in name or name in (".", "..")):
        raise MergeError(f"Custom name {name!r} must be a plain file name (no folders, no surrounding spaces)")
    if request.discard_weights:
        try:
            re.compile(request.discard_weights)
        except re.error as e:
            raise MergeError(f"Discard weights is not a valid regular expression: {e}") from e
    if not request.output_dir.is_dir():
        raise MergeError(f"Output folder does not exist: {request.output_dir}")


def _open_sources(request: MergeRequest) -> Sources:
    method = request.interp_method
    opened: list[TensorSource] = []
    try:
        a = open_source(request.primary_model_name, "Primary")
        opened.append(a)
        b = c = vae = None
        if method != InterpMethod.NONE and request.secondary_model_name is not None:
            b = open_source(request.secondary_model_name, "Secondary")
            opened.append(b)
        if method == InterpMethod.ADD_DIFFERENCE and request.tertiary_model_name is not None:
            c = open_source(request.tertiary_model_name, "Tertiary")
            opened.append(c)
        if request.bake_in_vae is not None:
            vae = open_source(request.bake_in_vae, "VAE")
        return Sources(a, b, c, vae)
    except BaseException:
        for source in opened:
            source.close()
        raise


def _write_safetensors(
    path: Path,
    plan: MergePlan,
    request: MergeRequest,
    sources: Sources,
    metadata: dict[str, str],
    progress: ProgressCallback | None,
) -> None:
    """Read tensor i+1, merge tensor i and write tensor i-1 at the same time (file I/O releases
    the GIL), holding at most three tensors' inputs; reads and writes each stay in file order."""
    items, total = plan.tensors, len(plan.tensors)
    with (
        SafetensorsStreamWriter(path, [t.out for t in items], metadata or None) as writer,
        ThreadPoolExecutor(1, thread_name_prefix="merge-read") as reader,
        ThreadPoolExecutor(1, thread_name_prefix="merge-write") as write_behind,
    ):
        next_inputs = reader.submit(read_inputs, items[0], request, sources) if items else None
        pending_write: Future[None] | None = None
        for i, item in enumerate(items):
            assert next_inputs is not None
            inputs = next_inputs.result()
            if i + 1 < total:
                next_inputs = reader.submit(read_inputs, items[i + 1], request, sources)
            tensor = merge_inputs(item, request, inputs)
            if pending_write is not None:
                pending_write.result()
                if progress is not None:
                    progress(i, total)
            pending_write = write_behind.submit(writer.write, item.name, tensor)
        if pending_write is not None:
            pending_write.result()
            if progress is not None:
                progress(total, total)


def _write_ckpt(
    path: Path, plan: MergePlan, request: MergeRequest, sources: Sources, progress: ProgressCallback | None
) -> None:
    # A pickle needs the whole dict at once: this path is not streaming (see module docstring).
    result: dict[str, torch.Tensor] = {}
    for i, item in enumerate(plan.tensors):
        result[item.name] = compute_tensor(item, request, sources)
        if progress is not None:
            progress(i + 1, len(plan.tensors))
    with path.open("xb") as f:
        torch.save(result, f)


def _publish(tmp: Path, final: Path, overwrite: bool) -> None:
    """Move the finished temp file into place; without `overwrite` never replace a file."""
    if overwrite:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)  # atomic "create only if absent"
    except FileExistsError as e:
        raise MergeError(f"Output file already exists: {final}") from e
    except OSError:  # filesystems without hard links
        if final.exists():
            raise MergeError(f"Output file already exists: {final}") from None
        os.replace(tmp, final)
        return
    tmp.unlink()


def merge_checkpoints(
    request: MergeRequest, progress: ProgressCallback | None = None, sha256: Sha256Fn | None = None
) -> MergeResult:
    """Merge A, B (and C) into a new checkpoint in `request.output_dir`.

    `progress(i, n)` is called after each output tensor; raising from it aborts the merge and
    removes the partial file. `sha256` hashes source files for the recipe (default: see
    `default_sha256`).
    """
    _validate(request)
    sources = _open_sources(request)
    try:
        plan = plan_merge(request, sources)
        final = output_path(request, plan)
        config = _config_file(request)
        config_target = final.with_suffix(".yaml")
        for target in (final, config_target) if config else (final,):
            if target.exists() and not request.overwrite:
                raise MergeError(f"Output file already exists: {target}")
        as_safetensors = request.checkpoint_format == "safetensors"
        # A1111 keeps no metadata in .ckpt files, so the source hashes are not computed for them.
        metadata = build_metadata(request, sources, plan, sha256 or default_sha256()) if as_safetensors else {}
        tmp = final.with_name(f".{final.name}.{os.getpid()}.partial")
        try:
            if as_safetensors:
                _write_safetensors(tmp, plan, request, sources, metadata, progress)
            else:
                _write_ckpt(tmp, plan, request, sources, progress)
            _publish(tmp, final, request.overwrite)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        sources.close()
    if config is not None:
        shutil.copyfile(config, config_target)
    return MergeResult(
        final,
        metadata,
        plan.is_inpainting,
        plan.is_instruct_pix2pix,
        config_target if config else None,
        len(plan.tensors),
    )
