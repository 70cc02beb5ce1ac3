"""The `Services` container: every long-lived service of one app instance, built once by the
composition root (modules/app/bootstrap.py) and handed to the adapters (API, UI, extension host).

This package only names the types; it builds nothing. It sits above the domain packages it
lists and below the adapters that receive it (docs/architecture.md, "Layers").
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from modules.access.policy import AccessPolicy
from modules.controlnet.service import ControlNetService
from modules.core.devices import DevicePolicy
from modules.core.jobs import LocalJobQueue
from modules.core.options import Options, OptionsRegistry
from modules.core.paths import Paths
from modules.core.users import UserTable
from modules.generation.engine import GenerationService
from modules.generation.hooks import ScriptHooksSlot
from modules.models.manager import ModelManager
from modules.networks.catalogue import NetworkCatalogue
from modules.postprocessing.face_service import FaceRestorationService
from modules.postprocessing.upscalers import UpscalerRegistry
from modules.train.service import TrainingService
from modules.workflows.runner import JobRunner
from modules.workflows.settings import SettingsService


@dataclass(frozen=True)
class Services:
    args: argparse.Namespace
    paths: Paths
    registry: OptionsRegistry
    options: Options
    policy: DevicePolicy
    jobs: LocalJobQueue
    models: ModelManager
    generation: GenerationService
    users: UserTable  # logins and admins (modules.core.users)
    access: AccessPolicy  # the one access policy every adapter asks (modules.access.policy)
    runner: JobRunner  # submit / stream / await jobs for a caller, UI and API alike
    settings: SettingsService  # settings and checkpoint changes: Settings tab, quicksettings, API
    training: TrainingService  # embeddings / hypernetworks (modules.train)
    upscalers: UpscalerRegistry  # one registry for Extras, the API and hires fix, with the tile settings
    faces: FaceRestorationService  # one set of face restorers for generation, Extras and the API
    networks: NetworkCatalogue  # one listing of LoRA / embeddings / hypernetworks for UI and jobs
    script_hooks: ScriptHooksSlot  # where the extension host attaches its script runner
    controlnet: ControlNetService  # ControlNet models, preprocessors, units (modules.controlnet)


__all__ = ["Services"]
