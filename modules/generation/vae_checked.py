"""The VAE decode with A1111's NaN check and precision fallback, for the final images and hires fix.

NaN/inf in the decoded pixels of a half-precision VAE (the SDXL VAE in fp16 is the known case):
with "Automatically revert VAE to 32-bit floats" the VAE is converted (bf16 first when
"Automatically convert VAE to bfloat16" is on and the device has it, else fp32) and the batch
decoded again; the log and the job's comments say so, and the model's VAE stays converted, as in
A1111. Nothing left to try: the job fails with the --no-half-vae advice (NansException).
"""

from __future__ import annotations

import logging

import torch

from modules.core.devices import AUTO_VAE_LABEL, NansException, vae_fallback_dtype
from modules.generation.latents import decode
from modules.generation.processing import Processing
from modules.models.manager import LoadedModel, ModelManager

log = logging.getLogger(__name__)


def decode_checked(p: Processing, models: ModelManager, model: LoadedModel, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> pixels [-1, 1], decoded again in a wider dtype while the VAE gives NaNs."""
    pixels = decode(model.vae, latents)
    while not p.nan_check.vae_ok(pixels):
        current = next(model.vae.parameters()).dtype
        target = vae_fallback_dtype(p.opts, current, models.policy.device)
        if target is None:
            raise NansException(p.nan_check.message("vae"))
        name = str(target).removeprefix("torch.")
        note = (
            f"A tensor with NaN or infinite values was produced in the VAE: the VAE was converted to {name}"
            f" and the image decoded again. It stays {name} for this model; start with --no-half-vae to"
            f" begin in 32-bit, or turn off '{AUTO_VAE_LABEL}' to fail instead."
        )
        log.warning("%s: %s", model.checkpoint.name, note)
        p.comments["vae_precision"] = note
        models.set_vae_dtype(model, target)
        pixels = decode(model.vae, latents)
    return pixels
