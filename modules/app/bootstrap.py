"""The composition root: builds every service of one app instance once and hands it out.

webui.py, the tests and the bench scripts call `build_services(args)`; nothing else creates
services or keeps them in module globals. Collaborators are passed in constructors, so what a
service uses is visible where it is built. The A1111 facades (`modules.shared` etc.) are bound
to the result by `modules.extension_host.facade.bind`.

This package is the top layer (docs/architecture.md, "Layers"): it may import any package,
and no package imports it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

import torch

from modules.access.limits import API_OPTIONS, queue_policy
from modules.access.policy import AccessPolicy
from modules.controlnet.service import CONTROLNET_OPTIONS, ControlNetDirs, ControlNetService
from modules.core.cmd_args import parse_args
from modules.core.devices import DevicePolicy
from modules.core.jobs import LocalJobQueue
from modules.core.leftovers import clean_at_start
from modules.core.options import Options, OptionsRegistry
from modules.core.paths import Paths
from modules.core.shared_options import core_registry
from modules.core.users import load_user_table
from modules.generation.engine import GenerationService
from modules.generation.hooks import ScriptHooksSlot
from modules.generation.speed.settings import speed_options
from modules.generation.styles import StyleDatabase
from modules.models.builtin_checkpoints import DEMO_IMAGE_SIZE, builtin_checkpoints
from modules.models.hashes import HashCache
from modules.models.manager import MemoryBudget, ModelManager
from modules.models.ml_imports import import_ml_libraries
from modules.models.setting_refs import register_model_references
from modules.networks.activation import NetworkActivator
from modules.networks.catalogue import NetworkCatalogue
from modules.networks.options import NETWORK_OPTIONS
from modules.postprocessing.face_service import FaceRestorationService
from modules.postprocessing.tiling import TileSettings
from modules.postprocessing.upscalers import UpscalerRegistry, upscaler_dirs
from modules.scaleout.setup import front_end
from modules.services import Services
from modules.train.options import TRAIN_OPTIONS
from modules.train.service import build_training_service
from modules.workflows.runner import JobRunner
from modules.workflows.settings import SettingsService

log = logging.getLogger(__name__)


def build_registry(args: argparse.Namespace | None = None) -> OptionsRegistry:
    """Every setting the app knows: the core catalogue plus the options each package declares."""
    registry = core_registry()
    registry.extend(API_OPTIONS)  # limits for shared instances (modules.access.limits)
    registry.extend(NETWORK_OPTIONS)
    registry.extend(speed_options(args if args is not None else parse_args([])))
    registry.extend(TRAIN_OPTIONS)
    registry.extend(CONTROLNET_OPTIONS)
    return registry


def build_generation_service(
    *,
    models: ModelManager,
    options: Options,
    paths: Paths,
    device: torch.device,
    safe_unpickle: bool = True,
    write_params_txt: bool = True,
    filenames_max_length: int = 128,
) -> GenerationService:
    """The generation engine as the app wires it, with its own network catalogue, face restorers
    and script-hooks slot; `assemble_services` shares those three with the rest of the app."""
    return GenerationService(
        models=models,
        options=options,
        paths=paths,
        styles=StyleDatabase(list(paths.styles_files)),
        networks=NetworkActivator(NetworkCatalogue(paths, models.hash_cache, safe_unpickle=safe_unpickle)),
        faces=FaceRestorationService(paths, device, safe=safe_unpickle),
        script_hooks=ScriptHooksSlot(),
        write_params_txt=write_params_txt,
        filenames_max_length=filenames_max_length,
    )


def build_model_manager(
    paths: Paths, policy: DevicePolicy, options: Options, *, safe_unpickle: bool = True, builtin: bool = True
) -> ModelManager:
    """The checkpoint manager over `paths` (indexed, nothing loaded); `builtin`: list the demo model."""
    models = ModelManager(
        paths,
        policy,
        HashCache(paths.hash_cache_file),
        safe_unpickle=safe_unpickle,
        cache_size=lambda: int(options.get("sd_checkpoint_cache")),
        builtin_checkpoints=builtin_checkpoints() if builtin else (),
        budget=lambda: MemoryBudget.from_settings(
            policy, int(options.get("sd_checkpoint_cache_ram_mb")), int(options.get("sd_checkpoint_cache_vram_mb"))
        ),
        fp8_storage=lambda: str(options.get("fp8_storage")),
        builtin_native_size=DEMO_IMAGE_SIZE,
    )
    models.refresh()
    register_model_references(options, models)  # model settings name listed files only
    return models


def build_services(args: argparse.Namespace, *, policy: DevicePolicy | None = None) -> Services:
    """Create folders, read settings, pick devices, index models. No model is loaded here."""
    import_ml_libraries()  # here, in the caller's (main) thread: lazy names race between threads
    paths = Paths.from_args(args)
    paths.ensure()
    options = Options(build_registry(args), paths.config_file)
    options.load()
    clean_at_start(paths, options.as_dict())  # temp files a crash left (.tmp, merge .partial)
    policy = policy or DevicePolicy.detect(args)
    safe = not args.disable_safe_unpickle
    models = build_model_manager(paths, policy, options, safe_unpickle=safe)
    options.check_stored()  # values an older config.json holds that are no longer valid
    generation = build_generation_service(
        models=models,
        options=options,
        paths=paths,
        device=policy.device,
        safe_unpickle=safe,
        write_params_txt=not args.no_prompt_history,
        filenames_max_length=args.filenames_max_length,
    )
    remote = front_end(args, generation)  # --queue: jobs sample on workers (modules/scaleout)
    if remote is not None:
        return assemble_services(
            args, options=options, policy=policy, generation=remote.generation, slots=remote.slots()
        )
    return assemble_services(args, options=options, policy=policy, generation=generation)


def assemble_services(
    args: argparse.Namespace,
    *,
    options: Options,
    policy: DevicePolicy,
    generation: GenerationService,
    slots: Callable[[], int] | None = None,
) -> Services:
    """The services around a built generation engine (its models, paths, catalogue, restorers and
    hooks slot are the app's): logins, the job queue, training and the upscalers."""
    paths, models = generation.paths, generation.models
    users = load_user_table(args)
    access = AccessPolicy(options, args, admins=users.admins, logins=users.enabled)
    jobs = LocalJobQueue(policy=lambda: queue_policy(options.as_dict()), visible=access.may_see_job, slots=slots)
    runner = JobRunner(jobs)
    return Services(
        args=args,
        paths=paths,
        registry=options.registry,
        options=options,
        policy=policy,
        jobs=jobs,
        models=models,
        generation=generation,
        users=users,
        access=access,
        runner=runner,
        settings=SettingsService(options, models, runner, access, load_models=slots is None),
        training=build_training_service(
            paths=paths,
            models=models,
            options=options,
            generation=generation,
            templates=getattr(args, "textual_inversion_templates_dir", None),
            safe_unpickle=not args.disable_safe_unpickle,
        ),
        upscalers=UpscalerRegistry(upscaler_dirs(paths), tiles=lambda: tile_settings(options), device=policy.device),
        faces=generation.faces,
        networks=generation.networks.catalogue,
        script_hooks=generation.script_hooks,
        controlnet=ControlNetService(ControlNetDirs.from_args(args, paths), options, models),
    )


def tile_settings(options: Options) -> TileSettings:
    """A1111's ESRGAN_tile / ESRGAN_tile_overlap, read at each upscale."""
    return TileSettings(int(options.get("ESRGAN_tile")), int(options.get("ESRGAN_tile_overlap")))
