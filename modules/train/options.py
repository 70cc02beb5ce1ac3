"""Training settings (A1111's "Training" section), as data, and the view a training job reads.

The composition root registers `TRAIN_OPTIONS` (registry.extend); `TrainingSettings.from_settings`
reads a settings mapping and falls back to the defaults for keys that are not registered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modules.core.options import OptionInfo

TRAINING = ("training", "Training")

TRAIN_OPTIONS: tuple[OptionInfo, ...] = (
    OptionInfo(
        "unload_models_when_training",
        False,
        "Move VAE and CLIP to RAM when training if possible. Saves VRAM.",
        TRAINING,
    ),
    OptionInfo(
        "pin_memory",
        False,
        "Turn on pin_memory for DataLoader. Makes training slightly faster but can increase memory usage.",
        TRAINING,
    ),
    OptionInfo(
        "save_optimizer_state",
        False,
        "Saves Optimizer state as separate *.optim file. Training of embedding or HN can be resumed with "
        "the matching optim file.",
        TRAINING,
    ),
    OptionInfo(
        "save_training_settings_to_txt",
        True,
        "Save textual inversion and hypernet settings to a text file whenever training starts.",
        TRAINING,
    ),
    OptionInfo("dataset_filename_word_regex", "", "Filename word regex", TRAINING, "textbox"),
    OptionInfo("dataset_filename_join_string", " ", "Filename join string", TRAINING, "textbox"),
    OptionInfo(
        "training_image_repeats_per_epoch",
        1,
        "Number of repeats for a single input image per epoch; used only for displaying epoch number",
        TRAINING,
        "number",
        minimum=1,
    ),
    OptionInfo(
        "training_write_csv_every",
        500,
        "Save an csv containing the loss to log directory every N steps, 0 to disable",
        TRAINING,
        "number",
        minimum=0,
    ),
    OptionInfo(
        "training_xattention_optimizations", False, "Use cross attention optimizations while training", TRAINING
    ),
)


@dataclass(frozen=True)
class TrainingSettings:
    unload_models: bool = False  # unload_models_when_training: VAE to RAM while training (accelerators)
    pin_memory: bool = False  # accepted for compatibility; batches are built in memory already
    save_optimizer_state: bool = False  # <file>.optim next to every saved file
    save_settings: bool = True  # save_training_settings_to_txt: settings-<time>.json in the log folder
    filename_word_regex: str = ""  # dataset_filename_word_regex
    filename_join_string: str = " "  # dataset_filename_join_string
    write_csv_every: int = 500  # training_write_csv_every
    samples_format: str = "png"  # preview images
    clip_skip: int = 1  # CLIP_stop_at_last_layers: prompts are encoded as for generation
    emphasis: str = "Original"
    comma_padding_backtrack: int = 20
    checkpoint: str = ""  # sd_model_checkpoint: the model trained on

    @classmethod
    def from_settings(cls, opts: Mapping[str, Any]) -> TrainingSettings:
        d = cls()
        return cls(
            unload_models=bool(opts.get("unload_models_when_training", d.unload_models)),
            pin_memory=bool(opts.get("pin_memory", d.pin_memory)),
            save_optimizer_state=bool(opts.get("save_optimizer_state", d.save_optimizer_state)),
            save_settings=bool(opts.get("save_training_settings_to_txt", d.save_settings)),
            filename_word_regex=str(opts.get("dataset_filename_word_regex", d.filename_word_regex) or ""),
            filename_join_string=str(opts.get("dataset_filename_join_string", d.filename_join_string) or ""),
            write_csv_every=max(0, int(opts.get("training_write_csv_every", d.write_csv_every))),
            samples_format=str(opts.get("samples_format", d.samples_format) or "png"),
            clip_skip=max(1, int(opts.get("CLIP_stop_at_last_layers", d.clip_skip))),
            emphasis=str(opts.get("emphasis", d.emphasis)),
            comma_padding_backtrack=int(opts.get("comma_padding_backtrack", d.comma_padding_backtrack)),
            checkpoint=str(opts.get("sd_model_checkpoint", d.checkpoint) or ""),
        )
