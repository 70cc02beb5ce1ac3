"""The composition root: builds every service once and hands them to whoever needs them.

Nothing else creates services or keeps them in module globals. The A1111 facades
(`modules.shared` etc.) are bound to the `Services` instance built here.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modules.core.devices import DevicePolicy
from modules.core.jobs import LocalJobQueue
from modules.core.options import Options, OptionsRegistry
from modules.core.paths import Paths
from modules.core.shared_options import core_registry

if TYPE_CHECKING:
    from modules.generation.engine import GenerationService
    from modules.models.manager import ModelManager

log = logging.getLogger(__name__)


@dataclass
class Services:
    args: argparse.Namespace
    paths: Paths
    registry: OptionsRegistry
    options: Options
    policy: DevicePolicy
    jobs: LocalJobQueue
    models: ModelManager
    generation: GenerationService


def build_services(args: argparse.Namespace, *, policy: DevicePolicy | None = None) -> Services:
    """Create folders, read settings, pick devices, index models. No model is loaded here."""
    from modules.generation.engine import GenerationService
    from modules.generation.styles import StyleDatabase
    from modules.models.hashes import HashCache
    from modules.models.manager import ModelManager

    paths = Paths.from_args(args)
    paths.ensure()
    registry = core_registry()
    options = Options(registry, paths.config_file)
    options.load()
    policy = policy or DevicePolicy.detect(args)
    jobs = LocalJobQueue()
    models = ModelManager(
        paths,
        policy,
        HashCache(paths.hash_cache_file),
        safe_unpickle=not args.disable_safe_unpickle,
        cache_size=lambda: int(options.get("sd_checkpoint_cache")),
    )
    models.refresh()
    generation = GenerationService(
        models=models,
        options=options,
        paths=paths,
        styles=StyleDatabase(list(paths.styles_files)),
        write_params_txt=not args.no_prompt_history,
        filenames_max_length=args.filenames_max_length,
    )
    return Services(args, paths, registry, options, policy, jobs, models, generation)
