"""The composition root: builds every service once and hands them to whoever needs them.

Nothing else creates services or keeps them in module globals. The A1111 facades
(`modules.shared` etc.) are bound to the `Services` instance built here.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modules.access.limits import API_OPTIONS, queue_policy
from modules.access.policy import AccessPolicy
from modules.api.auth import UserTable, load_user_table
from modules.core.devices import DevicePolicy
from modules.core.jobs import LocalJobQueue
from modules.core.options import Options, OptionsRegistry
from modules.core.paths import Paths
from modules.core.shared_options import core_registry

if TYPE_CHECKING:
    from modules.generation.engine import GenerationService
    from modules.models.manager import ModelManager
    from modules.train.service import TrainingService
    from modules.workflows.runner import JobRunner
    from modules.workflows.settings import SettingsService

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
    access: AccessPolicy  # the one access policy (modules.access.policy) every adapter asks
    runner: JobRunner  # submit / stream / await jobs for a caller (UI and API)
    settings: SettingsService  # settings and checkpoint changes (Settings tab, quicksettings, API)
    users: UserTable = field(default_factory=UserTable)  # logins and admins (modules.api.auth)
    training: TrainingService | None = None  # embeddings / hypernetworks (modules.train)


def build_services(args: argparse.Namespace, *, policy: DevicePolicy | None = None) -> Services:
    """Create folders, read settings, pick devices, index models. No model is loaded here."""
    from modules.demo.builtin import builtin_checkpoints
    from modules.generation.engine import GenerationService
    from modules.generation.speed.settings import speed_options
    from modules.generation.styles import StyleDatabase
    from modules.models.hashes import HashCache
    from modules.models.manager import ModelManager
    from modules.networks.activation import NetworkActivator
    from modules.networks.catalogue import NetworkCatalogue
    from modules.networks.options import NETWORK_OPTIONS
    from modules.postprocessing.face_service import FaceRestorationService
    from modules.train.options import TRAIN_OPTIONS
    from modules.train.service import build_training_service
    from modules.workflows.runner import JobRunner
    from modules.workflows.settings import SettingsService

    paths = Paths.from_args(args)
    paths.ensure()
    registry = core_registry()
    registry.extend(API_OPTIONS)  # limits for shared instances (modules.access.limits)
    registry.extend(NETWORK_OPTIONS)
    registry.extend(speed_options(args))
    registry.extend(TRAIN_OPTIONS)
    options = Options(registry, paths.config_file)
    options.load()
    policy = policy or DevicePolicy.detect(args)
    users = load_user_table(args)
    access = AccessPolicy(options, args, admins=users.admins, logins=users.enabled)
    jobs = LocalJobQueue(policy=lambda: queue_policy(options.as_dict()), visible=access.may_see_job)
    models = ModelManager(
        paths,
        policy,
        HashCache(paths.hash_cache_file),
        safe_unpickle=not args.disable_safe_unpickle,
        cache_size=lambda: int(options.get("sd_checkpoint_cache")),
        builtin_checkpoints=builtin_checkpoints(),
    )
    models.refresh()
    generation = GenerationService(
        models=models,
        options=options,
        paths=paths,
        styles=StyleDatabase(list(paths.styles_files)),
        write_params_txt=not args.no_prompt_history,
        filenames_max_length=args.filenames_max_length,
        networks=NetworkActivator(
            NetworkCatalogue(paths, models.hash_cache, safe_unpickle=not args.disable_safe_unpickle)
        ),
        faces=FaceRestorationService(paths, policy.device, safe=not args.disable_safe_unpickle),
    )
    runner = JobRunner(jobs)
    settings = SettingsService(options, models, runner, access)
    services = Services(
        args, paths, registry, options, policy, jobs, models, generation, access, runner, settings, users
    )
    services.training = build_training_service(services)
    return services
