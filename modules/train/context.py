"""What training needs from the rest of the program, passed in explicitly (no global state)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modules.core.paths import Paths
from modules.models.errors import ModelNotFound
from modules.models.families import ModelFamily, is_refiner, is_sd2, is_sdxl
from modules.train.options import TrainingSettings
from modules.train.templates import DEFAULT_TEMPLATES_DIR

if TYPE_CHECKING:
    from modules.core.options import Options
    from modules.generation.chunking import EmbeddingLookup
    from modules.generation.conditioning import TextConditioner
    from modules.generation.engine import GenerationService
    from modules.models.manager import LoadedModel, ModelManager
    from modules.train.preview import PreviewRenderer


@dataclass(frozen=True)
class TrainingContext:
    """Dependencies of the create/train functions.

    `generation` renders preview images (None: previews are skipped with a warning); `preview`
    replaces that renderer (tests, other front ends).
    """

    paths: Paths
    models: ModelManager
    options: Options
    generation: GenerationService | None = None
    templates_dir: Path = DEFAULT_TEMPLATES_DIR
    safe_unpickle: bool = True
    preview: PreviewRenderer | None = None

    def settings(self) -> TrainingSettings:
        return TrainingSettings.from_settings(self.options.as_dict())

    def model(self, checkpoint: str | None = None) -> LoadedModel:
        """The model to train on: the request's checkpoint, else the selected one, else the active one."""
        wanted = checkpoint or self.settings().checkpoint
        if wanted:
            model = self.models.load(wanted, vae=None)
        elif self.models.active is not None:
            model = self.models.active
        else:
            available = self.models.list_checkpoints()
            if not available:
                raise ModelNotFound(f"no checkpoint found: put a model file into {self.paths.ckpt_dir}")
            model = self.models.load(available[0], vae=None)
        self.models.set_vae(model, str(self.options.get("sd_vae")))
        return model


def conditioner_for(
    model: LoadedModel, settings: TrainingSettings, embeddings: EmbeddingLookup | None
) -> TextConditioner:
    """Prompts are encoded for training exactly as for generation (clip skip, emphasis)."""
    from modules.generation.conditioning import TextConditioner

    family: ModelFamily = model.family
    return TextConditioner(
        model.tokenizers,
        model.text_encoders,
        family_is_sdxl=is_sdxl(family) and not is_refiner(family),
        is_refiner=is_refiner(family),
        family_is_sd2=is_sd2(family),
        clip_skip=settings.clip_skip,
        emphasis=settings.emphasis,
        comma_padding_backtrack=settings.comma_padding_backtrack,
        embeddings=embeddings,
    )
