"""Typed requests of the Train tab and of A1111's /sdapi/v1/create/* and /train/* routes, and results.

Field names and defaults are A1111's (the keyword arguments of its create_embedding,
create_hypernetwork, train_embedding and train_hypernetwork, which its API takes as the JSON body).
Unknown fields are ignored. Additions of ours: `preview_scheduler`, `seed` (training randomness,
-1 = random) and `checkpoint` (train on this model instead of the selected one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

MAX_SIDE = 8192
DEFAULT_HYPERNETWORK_SIZES = (768, 320, 640, 1280)
WEIGHT_INITS = ("Normal", "KaimingUniform", "KaimingNormal", "XavierUniform", "XavierNormal")
ClipGradMode = Literal["disabled", "value", "norm"]
LatentSampling = Literal["once", "deterministic", "random"]
FlipMode = Literal["Horizontal", "Vertical", "Both"]


def _number_text(value: Any) -> Any:
    """The API may send a schedule as a plain number; the UI sends text."""
    if isinstance(value, bool):
        return value
    return str(value) if isinstance(value, int | float) else value


def _float_list(value: Any) -> Any:
    """ "1, 2, 1" (UI text) or [1, 2, 1] (API) -> [1.0, 2.0, 1.0]."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            return [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"expected comma-separated numbers, got {value!r}") from None
    return value


class CreateEmbeddingRequest(BaseModel):
    """POST /sdapi/v1/create/embedding."""

    model_config = ConfigDict(extra="ignore")

    name: str
    num_vectors_per_token: int = Field(1, ge=1, le=75)
    overwrite_old: bool = False
    init_text: str = "*"
    checkpoint: str | None = None


class CreateHypernetworkRequest(BaseModel):
    """POST /sdapi/v1/create/hypernetwork."""

    model_config = ConfigDict(extra="ignore")

    name: str
    enable_sizes: list[int] = Field(default_factory=lambda: list(DEFAULT_HYPERNETWORK_SIZES), min_length=1)
    overwrite_old: bool = False
    layer_structure: list[float] = Field(default_factory=lambda: [1.0, 2.0, 1.0])
    activation_func: str = "linear"
    weight_init: str = "Normal"
    add_layer_norm: bool = False
    use_dropout: bool = False
    dropout_structure: list[float] = Field(default_factory=lambda: [0.0, 0.0, 0.0])
    seed: int = -1  # weight initialisation; -1 = random

    @field_validator("enable_sizes", mode="before")
    @classmethod
    def _sizes(cls, value: Any) -> Any:
        if isinstance(value, str):  # "768, 320" as the UI's text box gives it; pydantic checks each item
            value = [v for v in value.replace(",", " ").split() if v]
        return value

    @field_validator("enable_sizes")
    @classmethod
    def _positive_sizes(cls, value: list[int]) -> list[int]:
        bad = [v for v in value if v < 1 or v > 16384]
        if bad:
            raise ValueError(f"hypernetwork sizes must be between 1 and 16384, got {bad}")
        return list(dict.fromkeys(value))

    @field_validator("layer_structure", "dropout_structure", "activation_func", "weight_init", mode="before")
    @classmethod
    def _structures(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:  # A1111's API passes None for "default"
            return cls.model_fields[info.field_name or ""].get_default(call_default_factory=True)
        return _float_list(value) if info.field_name in ("layer_structure", "dropout_structure") else value

    @field_validator("weight_init")
    @classmethod
    def _weight_init(cls, value: str) -> str:
        if value not in WEIGHT_INITS:
            raise ValueError(f"unknown weight initialization {value!r}; valid: {', '.join(WEIGHT_INITS)}")
        return value


class TrainRequest(BaseModel):
    """Fields shared by /train/embedding and /train/hypernetwork."""

    model_config = ConfigDict(extra="ignore")

    id_task: str | None = None
    learn_rate: str = "0.005"
    batch_size: int = Field(1, ge=1, le=1024)
    gradient_step: int = Field(1, ge=1, le=100_000)
    data_root: str = ""
    log_directory: str = "textual_inversion"
    training_width: int = Field(512, ge=8, le=MAX_SIDE)
    training_height: int = Field(512, ge=8, le=MAX_SIDE)
    varsize: bool = False
    steps: int = Field(100_000, ge=1, le=100_000_000)
    clip_grad_mode: ClipGradMode = "disabled"
    clip_grad_value: str = "0.1"
    shuffle_tags: bool = False
    tag_drop_out: float = Field(0.0, ge=0.0, le=1.0)
    latent_sampling_method: LatentSampling = "once"
    use_weight: bool = False
    create_image_every: int = Field(500, ge=0)
    template_filename: str = "style_filewords.txt"
    preview_from_txt2img: bool = False
    preview_prompt: str = ""
    preview_negative_prompt: str = ""
    preview_steps: int = Field(20, ge=1, le=1000)
    preview_sampler_name: str = "Euler a"
    preview_scheduler: str | None = None
    preview_cfg_scale: float = Field(7.0, ge=0.0, le=100.0)
    preview_seed: int = -1
    preview_width: int = Field(512, ge=8, le=MAX_SIDE)
    preview_height: int = Field(512, ge=8, le=MAX_SIDE)
    seed: int = -1
    checkpoint: str | None = None

    @field_validator("learn_rate", "clip_grad_value", mode="before")
    @classmethod
    def _schedule_text(cls, value: Any) -> Any:
        return _number_text(value)

    @field_validator("clip_grad_mode", mode="before")
    @classmethod
    def _clip_mode(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def save_every(self) -> int:
        raise NotImplementedError


class TrainEmbeddingRequest(TrainRequest):
    """POST /sdapi/v1/train/embedding."""

    embedding_name: str
    save_embedding_every: int = Field(500, ge=0)
    save_image_with_stored_embedding: bool = True

    @property
    def name(self) -> str:
        return self.embedding_name

    @property
    def save_every(self) -> int:
        return self.save_embedding_every


class TrainHypernetworkRequest(TrainRequest):
    """POST /sdapi/v1/train/hypernetwork."""

    hypernetwork_name: str
    learn_rate: str = "0.00001"
    save_hypernetwork_every: int = Field(500, ge=0)

    @property
    def name(self) -> str:
        # A1111's dropdown once showed "name(hash)"; its training strips the suffix the same way
        return (
            self.hypernetwork_name.rsplit("(", 1)[0] if self.hypernetwork_name.endswith(")") else self.hypernetwork_name
        )

    @property
    def save_every(self) -> int:
        return self.save_hypernetwork_every


class PreprocessRequest(BaseModel):
    """Prepare a training folder: the helpers A1111 moved from Train > Preprocess into Extras."""

    model_config = ConfigDict(extra="ignore")

    process_src: str
    process_dst: str
    process_width: int = Field(512, ge=8, le=MAX_SIDE)
    process_height: int = Field(512, ge=8, le=MAX_SIDE)
    preprocess_txt_action: Literal["ignore", "copy", "prepend", "append"] = "ignore"
    process_keep_original_size: bool = False  # no resize/crop to width x height
    process_flip: bool = False
    flip_modes: list[FlipMode] = Field(default_factory=lambda: list[FlipMode](["Horizontal"]))
    process_split: bool = False
    process_split_threshold: float = Field(0.5, ge=0.0, le=1.0)
    process_overlap_ratio: float = Field(0.2, ge=0.0, le=0.9)
    process_multicrop: bool = False
    process_multicrop_mindim: int = Field(384, ge=64, le=MAX_SIDE)
    process_multicrop_maxdim: int = Field(768, ge=64, le=MAX_SIDE)
    process_multicrop_minarea: int = Field(64 * 64, ge=1)
    process_multicrop_maxarea: int = Field(640 * 640, ge=1)
    process_multicrop_objective: Literal["Maximize area", "Minimize error"] = "Maximize area"
    process_multicrop_threshold: float = Field(0.1, ge=0.0, le=1.0)
    process_caption_from_filename: bool = True  # write <image>.txt from the file name when none is given
    overwrite: bool = False


# --------------------------------------------------------------------------------------------
# results


@dataclass
class CreateResult:
    kind: str  # "embedding" | "hypernetwork"
    name: str
    filename: Path

    @property
    def info(self) -> str:
        """A1111's response text ({"info": ...})."""
        return f"create {self.kind} filename: {self.filename}"


@dataclass
class TrainResult:
    kind: str  # "embedding" | "hypernetwork"
    name: str
    filename: Path  # the main file (embeddings/<name>.pt, hypernetworks/<name>.pt)
    initial_step: int
    step: int
    max_steps: int
    losses: list[float] = field(default_factory=list)  # one per optimizer step of this run
    learn_rates: list[float] = field(default_factory=list)
    saved_files: list[Path] = field(default_factory=list)  # in the order written (log folder + main file)
    preview_images: list[Path] = field(default_factory=list)
    log_directory: Path | None = None
    interrupted: bool = False
    note: str = ""  # why training stopped before max_steps, if it did (not an error)
    warnings: list[str] = field(default_factory=list)

    @property
    def steps_done(self) -> int:
        return self.step - self.initial_step

    @property
    def info(self) -> str:
        """A1111's response text ({"info": ...})."""
        return f"train {self.kind} complete: filename: {self.filename} error: None"


@dataclass
class PreprocessResult:
    written: list[Path] = field(default_factory=list)
    captions: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "file: reason"

    @property
    def info(self) -> str:
        text = f"Preprocessing finished: {len(self.written)} images written"
        if self.skipped:
            text += f", {len(self.skipped)} skipped ({'; '.join(self.skipped[:5])})"
        return text
