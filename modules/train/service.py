"""The facade the Train tab and the /sdapi/v1 create/train routes call.

    training = build_training_service(paths=..., models=..., ...)  # composition root
    job = training.submit_train_embedding(services.jobs, req, owner=user)
    ...                                                     # poll job.control (step, loss, ETA)
    result = job.wait()                                     # TrainResult; result.info for the API

Training runs as a job in the queue: one job at a time, so generations queued meanwhile wait
and never see a half-trained state; interrupting the job stops training after the current step
and saves the file. Creating embeddings/hypernetworks is quick and may run outside the queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modules.core.jobs import Job, JobControl, JobQueue
from modules.core.options import Options
from modules.core.paths import Paths
from modules.generation.engine import GenerationService
from modules.models.manager import ModelManager
from modules.train.context import TrainingContext
from modules.train.create import create_embedding, create_hypernetwork
from modules.train.dataset import CaptionRules
from modules.train.embedding import train_embedding
from modules.train.hypernetwork import train_hypernetwork
from modules.train.loop import StepReport
from modules.train.preprocess import preprocess_folder
from modules.train.requests import (
    CreateEmbeddingRequest,
    CreateHypernetworkRequest,
    CreateResult,
    PreprocessRequest,
    PreprocessResult,
    TrainEmbeddingRequest,
    TrainHypernetworkRequest,
    TrainResult,
)
from modules.train.templates import list_templates, templates_dir

StepCallback = Callable[[StepReport], None]


@dataclass(frozen=True)
class TrainingService:
    ctx: TrainingContext

    def template_names(self) -> list[str]:
        return list(list_templates(self.ctx.templates_dir))

    def create_embedding(self, req: CreateEmbeddingRequest) -> CreateResult:
        return create_embedding(req, self.ctx)

    def create_hypernetwork(self, req: CreateHypernetworkRequest) -> CreateResult:
        return create_hypernetwork(req, self.ctx)

    def train_embedding(
        self, req: TrainEmbeddingRequest, control: JobControl, *, on_step: StepCallback | None = None
    ) -> TrainResult:
        return train_embedding(req, control, self.ctx, on_step=on_step)

    def train_hypernetwork(
        self, req: TrainHypernetworkRequest, control: JobControl, *, on_step: StepCallback | None = None
    ) -> TrainResult:
        return train_hypernetwork(req, control, self.ctx, on_step=on_step)

    def preprocess(self, req: PreprocessRequest, control: JobControl | None = None) -> PreprocessResult:
        settings = self.ctx.settings()
        rules = CaptionRules(settings.filename_word_regex, settings.filename_join_string)
        return preprocess_folder(req, caption_rules=rules, control=control)

    def submit_train_embedding(
        self, jobs: JobQueue, req: TrainEmbeddingRequest, *, owner: str | None = None, task_id: str | None = None
    ) -> Job:
        return jobs.submit(
            "train-embedding",
            lambda control: self.train_embedding(req, control),
            owner=owner,
            task_id=task_id or req.id_task,
        )

    def submit_train_hypernetwork(
        self, jobs: JobQueue, req: TrainHypernetworkRequest, *, owner: str | None = None, task_id: str | None = None
    ) -> Job:
        return jobs.submit(
            "train-hypernetwork",
            lambda control: self.train_hypernetwork(req, control),
            owner=owner,
            task_id=task_id or req.id_task,
        )


def build_training_service(
    *,
    paths: Paths,
    models: ModelManager,
    options: Options,
    generation: GenerationService,
    templates: str | None,
    safe_unpickle: bool,
) -> TrainingService:
    """For the composition root: training over the application's models, settings and engine."""
    return TrainingService(
        TrainingContext(
            paths=paths,
            models=models,
            options=options,
            generation=generation,
            templates_dir=templates_dir(templates),
            safe_unpickle=safe_unpickle,
        )
    )
