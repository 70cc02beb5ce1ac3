"""OpenVINO as the CPU compute backend for the UNet and the VAE (setting `cpu_compute_backend`).

The seam is the module's `_compiled_call_impl` slot (the one `nn.Module.compile()` uses), as for
torch.compile: whoever calls `unet(...)` or `vae.decoder(...)` gets the OpenVINO result, and on
exit the slot is put back, so the module is exactly as before. A call that cannot run compiled
(a forward hook from an extension or token merging, an extension's attention processor, inputs
the converted graph does not take such as ControlNet residuals) runs the module in PyTorch, with
one log line per job and reason.

Conversion (`openvino.convert_model`, dynamic shapes) is keyed by a fingerprint of the module's
class, config, attention processors and a strided sample of every weight: a LoRA patched into the
weights gives another fingerprint, so the patched model is converted (once) instead of the stale
one being used. The converted model is saved as IR under the cache folder by that fingerprint
(plus the exact size where one dynamic graph cannot serve it, see `_shape_variant`); per input shape and precision it is reshaped to static shapes and compiled, and OpenVINO's own
model cache (CACHE_DIR) keeps the compiled blob. First use of a model, size or precision shows as
the job's progress text. A conversion or compile that fails is logged and the module runs in
PyTorch for the rest of the process (per graph key).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modules.core.jobs import running_control

log = logging.getLogger(__name__)

PRECISIONS = ("f32", "bf16")
_SAMPLE = 64  # weight values sampled per tensor for the fingerprint
# The ldm views' pre-hooks only act under model offload, which never runs through OpenVINO.
_OFFLOAD_SHIMS = "modules.models.ldm_views"
_UNET_KWARGS = frozenset({"encoder_hidden_states", "added_cond_kwargs", "return_dict", "timestep"})


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def import_openvino() -> Any:
    """`import openvino`, without its usage telemetry.

    OpenVINO's model converter reports usage to Google Analytics unless the user opted out (no
    consent file counts as consent); with `openvino_telemetry` unimportable it uses its own stub.
    A web UI must not send data about its users' models, so the stub it is.
    """
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino


def weights_fingerprint(module: torch.nn.Module) -> str:
    """Identity of what a conversion captured: class, config, processors and sampled weights."""
    digest = hashlib.sha256(type(module).__qualname__.encode())
    config = getattr(module, "config", None)
    if config is not None:
        digest.update(repr(sorted(dict(config).items())).encode())
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // _SAMPLE)][:_SAMPLE].to(torch.float32).cpu()
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(sample.numpy().tobytes())
    for name, sub in module.named_modules():
        processor = getattr(sub, "processor", None)
        if processor is not None:
            digest.update(f"{name}:{type(processor).__qualname__}".encode())
    return digest.hexdigest()[:24]


def fallback_reason(module: torch.nn.Module) -> str | None:
    """Why `module` cannot run as a converted graph now (hooks, foreign processors), or None."""
    if torch.nn.modules.module._global_forward_hooks or torch.nn.modules.module._global_forward_pre_hooks:
        return "a global forward hook is registered"
    for name, sub in module.named_modules():
        hooks = [*sub._forward_hooks.values(), *sub._forward_pre_hooks.values()]
        if any(getattr(hook, "__module__", "") != _OFFLOAD_SHIMS for hook in hooks):
            return f"a forward hook on {name or type(module).__name__} (an extension or token merging)"
        processor = getattr(sub, "processor", None)
        if processor is not None and not type(processor).__module__.startswith("diffusers."):
            return f"attention processor {type(processor).__qualname__} (not a diffusers one)"
    return None


@dataclass(frozen=True)
class CallShape:
    """How a module's call maps onto the converted graph's inputs."""

    kind: str  # "unet" (diffusers), "ldm" (the ldm-shaped UNet view) or "plain" (tensors in, one out)
    extra_keys: tuple[str, ...] = ()  # UNet: added_cond_kwargs keys, sorted (SDXL)
    return_dict: bool = False


def unet_inputs(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[list[torch.Tensor], CallShape] | str:
    """The UNet call as graph inputs (sample, timestep per batch item, context, SDXL extras)."""
    rest = {k: v for k, v in kwargs.items() if v is not None}
    unknown = sorted(set(rest) - _UNET_KWARGS)
    if unknown:
        return f"UNet called with {', '.join(unknown)}"
    values = list(args) + [None] * (3 - len(args))
    sample = values[0]
    timestep = values[1] if values[1] is not None else rest.get("timestep")
    context = values[2] if values[2] is not None else rest.get("encoder_hidden_states")
    if len(args) > 3 or not isinstance(sample, torch.Tensor) or not isinstance(context, torch.Tensor):
        return "UNet called with an unexpected argument layout"
    if sample.dtype != torch.float32 or sample.device.type != "cpu":
        return f"UNet input is {sample.dtype} on {sample.device.type} (fp32 on the CPU is converted)"
    steps = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(sample.shape[0]).contiguous()
    added = rest.get("added_cond_kwargs") or {}
    keys = tuple(sorted(added))
    if any(not isinstance(added[k], torch.Tensor) for k in keys):
        return "UNet called with non-tensor added_cond_kwargs"
    tensors = [sample, steps, context, *(added[k].to(torch.float32) for k in keys)]
    return tensors, CallShape("unet", keys, bool(rest.get("return_dict", True)))


def ldm_unet_inputs(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[list[torch.Tensor], CallShape] | str:
    """A call of the ldm-shaped UNet view: (x, timesteps, context, y=None), what generation makes."""
    names = ("x", "timesteps", "context", "y")
    if len(args) > len(names):
        return "UNet called with an unexpected argument layout"
    values = dict(zip(names, args, strict=False)) | {k: v for k, v in kwargs.items() if v is not None}
    unknown = sorted(set(values) - set(names))
    if unknown:
        return f"UNet called with {', '.join(unknown)}"
    x, context, y = values.get("x"), values.get("context"), values.get("y")
    if not isinstance(x, torch.Tensor) or not isinstance(context, torch.Tensor) or values.get("timesteps") is None:
        return "UNet called with an unexpected argument layout"
    if x.dtype != torch.float32 or x.device.type != "cpu":
        return f"UNet input is {x.dtype} on {x.device.type} (fp32 on the CPU is converted)"
    steps = torch.as_tensor(values["timesteps"], dtype=torch.float32).reshape(-1).expand(x.shape[0]).contiguous()
    extra = [y.to(torch.float32)] if isinstance(y, torch.Tensor) else []
    return [x, steps, context, *extra], CallShape("ldm", ("y",) if extra else ())


def plain_inputs(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[list[torch.Tensor], CallShape] | str:
    """A VAE encoder/decoder call: fp32 CPU tensors, positional, nothing else."""
    if any(v is not None for v in kwargs.values()):
        return f"called with {', '.join(sorted(kwargs))}"
    if not args or not all(isinstance(a, torch.Tensor) and a.dtype == torch.float32 for a in args):
        return "inputs are not fp32 tensors"
    if args[0].device.type != "cpu":
        return f"inputs are on {args[0].device.type}"
    return list(args), CallShape("plain")


class _Traced(torch.nn.Module):
    """The module with flat tensor inputs and one tensor output, for convert_model."""

    def __init__(self, module: torch.nn.Module, shape: CallShape) -> None:
        super().__init__()
        self.module = module
        self.shape = shape

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        if self.shape.kind == "plain":
            return self.module(*tensors)  # type: ignore[no-any-return]
        sample, steps, context, *extra = tensors
        if self.shape.kind == "ldm":
            return self.module(sample, steps, context, y=extra[0] if extra else None)  # type: ignore[no-any-return]
        added = dict(zip(self.shape.extra_keys, extra, strict=True)) or None
        out = self.module(sample, steps, encoder_hidden_states=context, added_cond_kwargs=added, return_dict=False)
        return out[0]  # type: ignore[no-any-return]


@dataclass
class OpenVinoModels:
    """Converted and compiled models by fingerprint/shape/precision; owned by the SpeedCache.

    Holds no torch module: only OpenVINO objects, so unloading a checkpoint frees it (its
    compiled graphs are dropped from the small LRU as other models come in).
    """

    max_compiled: int = 2
    compiled: OrderedDict[tuple[str, tuple[tuple[int, ...], ...], str], Any] = field(default_factory=OrderedDict)
    converted: OrderedDict[str, Any] = field(default_factory=OrderedDict)
    failed: dict[str, str] = field(default_factory=dict)  # graph key -> error, never retried
    compile_seconds: dict[str, float] = field(default_factory=dict)  # label -> conversion + compile time
    calls: dict[str, int] = field(default_factory=dict)  # label -> calls answered by OpenVINO
    _core: Any = None

    def core(self) -> Any:
        if self._core is None:
            self._core = import_openvino().Core()
        return self._core

    def compiled_for(
        self,
        module: torch.nn.Module,
        fingerprint: str,
        tensors: list[torch.Tensor],
        call: CallShape,
        precision: str,
        cache_dir: Path | None,
        label: str,
    ) -> Any:
        shapes = tuple(tuple(t.shape) for t in tensors)
        key = (fingerprint, shapes, precision)
        if key in self.compiled:
            self.compiled.move_to_end(key)
            return self.compiled[key]
        started = time.perf_counter()
        with _progress_text(f"OpenVINO: compiling the {label} for {_shape_text(shapes)} ({precision}), first use"):
            model = self._converted(module, fingerprint, tensors, call, cache_dir, label).clone()
            model.reshape({i: list(s) for i, s in enumerate(shapes)})
            config: dict[str, Any] = {
                "INFERENCE_PRECISION_HINT": precision,
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": max(1, torch.get_num_threads()),
            }
            if cache_dir is not None:  # one folder per precision: OpenVINO's blob key ignores the hint
                config["CACHE_DIR"] = str(cache_dir / "compiled" / precision)
            compiled = self.core().compile_model(model, "CPU", config)
        elapsed = time.perf_counter() - started
        self.compile_seconds[label] = self.compile_seconds.get(label, 0.0) + elapsed
        log.info("OpenVINO: %s compiled for %s (%s) in %.1f s", label, _shape_text(shapes), precision, elapsed)
        self.compiled[key] = compiled
        while len(self.compiled) > self.max_compiled:
            self.compiled.popitem(last=False)
        return compiled

    def _converted(
        self,
        module: torch.nn.Module,
        fingerprint: str,
        tensors: list[torch.Tensor],
        call: CallShape,
        cache_dir: Path | None,
        label: str,
    ) -> Any:
        if fingerprint in self.converted:
            return self.converted[fingerprint]
        openvino = import_openvino()

        ir = cache_dir / f"{label}-{fingerprint}.xml" if cache_dir is not None else None
        if ir is not None and ir.is_file():
            model = self.core().read_model(str(ir))
        else:
            with _progress_text(f"OpenVINO: converting the {label} (first use of these weights)"):
                model = _convert(module, tensors, call)
            if ir is not None:
                ir.parent.mkdir(parents=True, exist_ok=True)
                openvino.save_model(model, str(ir), compress_to_fp16=False)
                model = self.core().read_model(str(ir))  # memory-mapped: the weights leave the heap
        self.converted[fingerprint] = model
        while len(self.converted) > 2:  # e.g. the base graph and a hires size of its own
            self.converted.popitem(last=False)
        return model


def _convert(module: torch.nn.Module, tensors: list[torch.Tensor], call: CallShape) -> Any:
    openvino = import_openvino()

    previous = module._compiled_call_impl
    module._compiled_call_impl = None  # trace the PyTorch module, not this backend
    try:
        with torch.no_grad():
            return openvino.convert_model(_Traced(module, call).eval(), example_input=tuple(tensors))
    finally:
        module._compiled_call_impl = previous


def _shape_variant(module: torch.nn.Module, call: CallShape, tensors: list[torch.Tensor]) -> str:
    """ "" for shapes the dynamic graph serves; else the exact size, converted on its own.

    A latent whose sides are not multiples of the UNet's overall downsampling (a 96 px hires pass:
    12x12 latent) makes diffusers pass explicit upsample sizes, which the trace bakes in as
    constants: such a graph only fits its own size.
    """
    if call.kind == "plain":
        return ""
    factor = 2 ** int(getattr(module, "num_upsamplers", 3))  # the ldm view: 8 serves SD1/2 and SDXL
    height, width = tensors[0].shape[-2:]
    return "" if height % factor == 0 and width % factor == 0 else f"-{height}x{width}"


def _shape_text(shapes: tuple[tuple[int, ...], ...]) -> str:
    return "×".join(str(d) for d in shapes[0])


@contextmanager
def _progress_text(text: str) -> Iterator[None]:
    control = running_control()
    log.info("%s", text)
    if control is None:
        yield
        return
    before = control.textinfo
    control.textinfo = text
    try:
        yield
    finally:
        control.textinfo = before


@dataclass
class _Route:
    """One module routed through OpenVINO for one job (state of its log lines)."""

    label: str
    kind: str  # which call layout: a key of _PARSERS
    models: OpenVinoModels
    precision: str
    cache_dir: Path | None
    notes: list[str]
    said: set[str] = field(default_factory=set)

    def note(self, text: str, *, warn: bool = False) -> None:
        if text not in self.said:
            self.said.add(text)
            self.notes.append(text)
            (log.warning if warn else log.info)("%s", text)

    def call(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        parsed = _PARSERS[self.kind](args, kwargs)
        reason = parsed if isinstance(parsed, str) else fallback_reason(module)
        if reason is not None or isinstance(parsed, str):
            self.note(f"OpenVINO: the {self.label} runs in PyTorch for this call: {reason}")
            return module._call_impl(*args, **kwargs)
        tensors, call = parsed
        fingerprint = weights_fingerprint(module) + _shape_variant(module, call, tensors)
        if fingerprint in self.models.failed:
            return module._call_impl(*args, **kwargs)
        try:
            compiled = self.models.compiled_for(
                module, fingerprint, tensors, call, self.precision, self.cache_dir, self.label
            )
            out = compiled([t.detach().numpy() for t in tensors])[0]
        except Exception as error:  # a third-party compiler: any failure falls back
            self.models.failed[fingerprint] = f"{type(error).__name__}: {error}"
            self.note(
                f"OpenVINO could not compile the {self.label} ({type(error).__name__}: {str(error)[:300]}); "
                "it runs in PyTorch instead",
                warn=True,
            )
            return module._call_impl(*args, **kwargs)
        self.models.calls[self.label] = self.models.calls.get(self.label, 0) + 1
        result = torch.from_numpy(out.copy())
        if call.kind == "unet" and call.return_dict:  # the diffusers UNet's output type
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

            return UNet2DConditionOutput(sample=result)
        return result


_PARSERS = {"unet": unet_inputs, "ldm": ldm_unet_inputs, "plain": plain_inputs}


@contextmanager
def openvino_backend(
    modules: dict[str, tuple[str, torch.nn.Module]],
    models: OpenVinoModels,
    *,
    precision: str,
    cache_dir: Path | None,
    notes: list[str],
) -> Iterator[list[str]]:
    """Route calls of each module (label -> (call layout, module)) through OpenVINO while inside.

    Yields the labels actually routed: a module whose slot is taken (torch.compile) is left alone.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"OpenVINO precision must be one of {PRECISIONS}, got {precision!r}")
    routed: list[str] = []
    with ExitStack() as stack:
        for label, (kind, module) in modules.items():
            if module._compiled_call_impl is not None:
                continue
            route = _Route(label, kind, models, precision, cache_dir, notes)
            module._compiled_call_impl = functools.partial(route.call, module)
            stack.callback(setattr, module, "_compiled_call_impl", None)
            routed.append(label)
        yield routed
