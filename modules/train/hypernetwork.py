"""Hypernetwork training: only the hypernetwork's modules change (A1111 train_hypernetwork).

The modules are hooked into every UNet attention's key/value inputs for the whole run (the same
hooks generation uses, multiplier 1), in training mode (dropout active). Prompts are encoded
without gradients, once per text unless tags are shuffled or dropped. Optimizer: the one named in
the matching .optim file, else AdamW (torch defaults, as A1111). Files:
`<log>/<date>/<name>/hypernetworks/<name>-<step>.pt` every "save every" steps and the file in the
hypernetworks folder at those steps and at the end (also when interrupted).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from modules.core.jobs import JobControl, JobInterrupted
from modules.generation.conditioning import Conditioning, TextConditioner, stack_conditionings
from modules.models.manager import LoadedModel
from modules.models.safe_load import load_pickle
from modules.networks.hypernetworks import Hypernetwork, attention_modules, hypernetworks_applied, load_hypernetwork
from modules.train.context import TrainingContext, conditioner_for
from modules.train.create import structure_of
from modules.train.diffusion import NoiseSource, encode_texts, frozen_model
from modules.train.errors import TrainingError
from modules.train.files import (
    HypernetworkHeader,
    file_shorthash,
    load_optimizer_state,
    optim_path,
    read_hypernetwork_header,
    sanitize_name,
    save_hypernetwork,
    save_optimizer_state,
)
from modules.train.loop import StepReport, TrainingRun, run_training
from modules.train.options import TrainingSettings
from modules.train.preview import GenerationPreview, PreviewRenderer
from modules.train.requests import TrainHypernetworkRequest, TrainResult
from modules.train.setup import (
    Checked,
    check_request,
    log_root,
    loop_plan,
    make_folders,
    prepare_dataset,
    seeded_torch,
    vae_in_ram,
    write_settings_file,
)

Tensor = torch.Tensor
Modules = dict[int, tuple[torch.nn.Module, torch.nn.Module]]


class HypernetworkTarget:
    kind = "hypernetwork"
    file_suffix = ".pt"
    preview_disables_extra_networks = True  # A1111: the trained one is applied, tags are not

    def __init__(
        self,
        header: HypernetworkHeader,
        modules: Modules,
        conditioner: TextConditioner,
        *,
        model: LoadedModel,
        settings: TrainingSettings,
        cache_conditioning: bool,
        optimizer_name: str,
    ) -> None:
        self.header = header
        self.name = header.name
        self.step = header.step
        self.modules = modules
        self.conditioner = conditioner
        self.checkpoint = model.checkpoint
        self.settings = settings
        self.cache: dict[str, Conditioning] | None = {} if cache_conditioning else None
        self.optimizer_name = optimizer_name

    def parameters(self) -> list[Tensor]:
        return [p for pair in self.modules.values() for module in pair for p in module.parameters()]

    def conditioning(self, texts: Sequence[str]) -> Conditioning:
        if self.cache is None:
            return encode_texts(self.conditioner, texts, grad=False)
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            encoded = encode_texts(self.conditioner, missing, grad=False)
            for i, text in enumerate(missing):
                self.cache[text] = encoded.rows([i])
        return stack_conditionings([self.cache[t] for t in texts])

    def save(self, path: Path, file_name: str, optimizer: torch.optim.Optimizer | None) -> Path:
        self.header.step = self.step
        self.header.sd_checkpoint = self.checkpoint.shorthash
        self.header.sd_checkpoint_name = self.checkpoint.model_name
        header = replace(self.header, name=file_name)
        save_hypernetwork(path, self.modules, header)
        if self.settings.save_optimizer_state and optimizer is not None:
            save_optimizer_state(path, file_shorthash(path), optimizer.state_dict(), self.optimizer_name)
        return path

    def preview_mode(self) -> contextlib.AbstractContextManager[None]:
        return _eval_mode(self.modules)

    def after_preview(self, image: Image.Image, step: int, last_saved: Path | None) -> Path | None:
        return None


@contextlib.contextmanager
def _eval_mode(modules: Modules) -> Iterator[None]:
    for pair in modules.values():
        for module in pair:
            module.eval()
    try:
        yield
    finally:
        for pair in modules.values():
            for module in pair:
                module.train()


def attention_input_widths(model: LoadedModel) -> set[int]:
    """Widths of the key/value inputs of the UNet's attention layers (context and hidden sizes)."""
    widths = set()
    for block in attention_modules(model.unet):
        to_k: Any = block.to_k
        widths.add(int(to_k.in_features if isinstance(to_k, torch.nn.Linear) else to_k.weight.shape[1]))
    return widths


def _optimizer(name: str, params: list[Tensor], rate: float, warnings: list[str]) -> tuple[torch.optim.Optimizer, str]:
    cls = getattr(torch.optim, name, None)
    if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer:
        optimizer: torch.optim.Optimizer = cls(params, lr=rate)  # type: ignore[call-arg]
        return optimizer, name
    warnings.append(f"optimizer {name!r} from the .optim file is unknown; using AdamW")
    return torch.optim.AdamW(params, lr=rate), "AdamW"


def _saved_optimizer(path: Path, safe: bool) -> tuple[str, dict[str, Any] | None]:
    """The optimizer name and state stored next to the file, if its hash matches (A1111)."""
    if not optim_path(path).is_file():
        return "AdamW", None
    state = load_optimizer_state(path, file_shorthash(path), safe=safe)
    if state is None:
        return "AdamW", None
    data = load_pickle(optim_path(path), safe=safe)
    return str(data.get("optimizer_name") or "AdamW"), state


def locate_hypernetwork(ctx: TrainingContext, name: str) -> Path:
    if not name:
        raise TrainingError("no hypernetwork selected")
    sanitize_name(name, "hypernetwork name")
    direct = ctx.paths.hypernetwork_dir / f"{name}.pt"
    if direct.is_file():
        return direct
    for path in sorted(ctx.paths.hypernetwork_dir.rglob("*.pt")):
        if path.stem == name:
            return path
    raise TrainingError(f"hypernetwork {name!r} not found in {ctx.paths.hypernetwork_dir}; create it first")


def train_hypernetwork(
    req: TrainHypernetworkRequest,
    control: JobControl,
    ctx: TrainingContext,
    *,
    on_step: Callable[[StepReport], None] | None = None,
    fixed_noise: bool = False,
) -> TrainResult:
    """Train `req.hypernetwork_name` on the dataset; runs inside a job (reports through `control`)."""
    path = locate_hypernetwork(ctx, req.name)
    header = read_hypernetwork_header(path, safe=ctx.safe_unpickle)
    header.name = req.name
    result = TrainResult("hypernetwork", req.name, path, header.step, header.step, req.steps)
    if header.step >= req.steps:
        result.note = "Model has already been trained beyond specified max steps"
        control.textinfo = result.note
        return result
    checked = check_request(req, ctx, header.step)
    loaded = load_hypernetwork(path, safe=ctx.safe_unpickle, name=req.name)
    model = ctx.model(req.checkpoint)
    with ctx.models.use(model), frozen_model(model), seeded_torch(checked.seed, next(model.unet.parameters()).device):
        return _train(
            req, control, ctx, model, header, loaded, checked, result, on_step=on_step, fixed_noise=fixed_noise
        )


def _train(
    req: TrainHypernetworkRequest,
    control: JobControl,
    ctx: TrainingContext,
    model: LoadedModel,
    header: HypernetworkHeader,
    loaded: Hypernetwork,
    checked: Checked,
    result: TrainResult,
    *,
    on_step: Callable[[StepReport], None] | None,
    fixed_noise: bool,
) -> TrainResult:
    widths = attention_input_widths(model)
    if not set(loaded.modules) & widths:
        raise TrainingError(
            f"hypernetwork {header.name!r} has modules for widths {sorted(loaded.modules)}, but this model's "
            f"attention layers take widths {sorted(widths)}: none would be trained"
        )
    unused = sorted(set(loaded.modules) - widths)
    if unused:
        result.warnings.append(f"modules for widths {unused} are not used by this model and stay unchanged")
    device = next(model.unet.parameters()).device
    modules: Modules = {}
    for width, (k, v) in loaded.modules.items():
        modules[width] = (
            k.to(device, torch.float32).train().requires_grad_(True),
            v.to(device, torch.float32).train().requires_grad_(True),
        )
    rng = random.Random(checked.seed)
    generator = torch.Generator().manual_seed(checked.seed)
    control.textinfo = f"Preparing dataset from {checked.scan.root}..."
    try:
        dataset = prepare_dataset(req, checked, model, header.name, rng=rng, generator=generator, control=control)
    except JobInterrupted:
        result.interrupted = True
        result.note = "interrupted while preparing the dataset"
        return result
    result.warnings.extend(dataset.warnings)
    log_dir = log_root(req, ctx, header.name)
    plan = loop_plan(
        req,
        checked,
        main_file=result.filename,
        log_dir=log_dir,
        files_folder="hypernetworks",
        csv_name="hypernetwork_loss.csv",
    )
    make_folders(plan)
    result.log_directory = plan.log_dir
    optimizer_name, state = (
        _saved_optimizer(result.filename, ctx.safe_unpickle)
        if checked.settings.save_optimizer_state
        else ("AdamW", None)
    )
    target = HypernetworkTarget(
        header, modules, conditioner_for(model, checked.settings, None), model=model, settings=checked.settings,
        cache_conditioning=not dataset.text_rules.varies, optimizer_name=optimizer_name,
    )  # fmt: skip
    if checked.settings.save_settings and plan.log_dir is not None:
        extra = {"model_name": model.checkpoint.model_name, "model_hash": model.checkpoint.shorthash,
                 "num_of_dataset_images": len(dataset), "initial_step": header.step,
                 "layer_structure": header.layer_structure, "activation_func": header.activation_func,
                 "weight_init": header.weight_initialization, "add_layer_norm": header.is_layer_norm,
                 "use_dropout": header.use_dropout}  # fmt: skip
        write_settings_file(plan.log_dir, req, extra)
    optimizer, target.optimizer_name = _optimizer(
        optimizer_name, target.parameters(), checked.learn_rate[0].rate, result.warnings
    )
    if state is not None:
        try:
            optimizer.load_state_dict(state)
        except (ValueError, RuntimeError, KeyError) as exc:
            result.warnings.append(f"cannot resume from the saved optimizer state: {exc}")
    renderer: PreviewRenderer | None = ctx.preview or (GenerationPreview(ctx.generation) if ctx.generation else None)
    net = Hypernetwork(header.name, result.filename, structure_of(header), dict(modules), header.step)
    run = TrainingRun(
        target, dataset, model, plan, req, control, optimizer,
        NoiseSource(generator, len(model.alphas_cumprod), fixed=fixed_noise, seed=checked.seed),
        rng, generator, result, renderer, on_step,
    )  # fmt: skip
    with hypernetworks_applied(model.unet, [(net, 1.0)]), vae_in_ram(model, checked.settings.unload_models):
        return run_training(run)
