"""Resolve the names the app takes from transformers and diffusers once, in one thread.

Both packages export their names lazily (a `_LazyModule` imports the submodule on first
attribute access). Two threads resolving names at the same time can see a half-initialised
module: "cannot import name 'AutoModel' from 'transformers'" on the first generation after a
start, while the UI imported the tokenizer. The composition root calls `import_ml_libraries()`
in the main thread before any server or job thread starts; the lock makes a second caller wait.
"""

from __future__ import annotations

import importlib
import threading

# (module, names): every lazy name the app's code imports from these packages, and what the
# pipeline classes pull in (their modules import AutoModel & co. from transformers).
NAMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "transformers",
        (
            "AutoModel",
            "CLIPTextConfig",
            "CLIPTextModel",
            "CLIPTextModelWithProjection",
            "CLIPTokenizer",
            "PreTrainedTokenizerBase",
        ),
    ),
    (
        "diffusers",
        (
            "AutoencoderKL",
            "UNet2DConditionModel",
            "DDPMScheduler",
            "DDIMScheduler",
            "EulerDiscreteScheduler",
            "PNDMScheduler",
            "StableDiffusionPipeline",
            "StableDiffusionImg2ImgPipeline",
            "StableDiffusionInpaintPipeline",
            "StableDiffusionXLPipeline",
            "StableDiffusionXLImg2ImgPipeline",
            "StableDiffusionXLInpaintPipeline",
        ),
    ),
    ("diffusers.models.attention_processor", ("Attention", "SlicedAttnProcessor")),
)

_LOCK = threading.Lock()  # process-wide by nature: the packages' lazy modules are process-wide


def import_ml_libraries() -> None:
    """Import transformers/diffusers and resolve the names in NAMES (fast after the first call)."""
    with _LOCK:
        for module_name, names in NAMES:
            module = importlib.import_module(module_name)
            for name in names:
                getattr(module, name)
