"""k-diffusion's module paths for A1111 extensions (`import k_diffusion.sampling`, ...).

Our own modules under those names (the PyPI package pulls wandb, clean-fid, clip-anytorch and
more): `sampling` runs the samplers of modules.generation.samplers with k-diffusion's call
signature, `external` holds the model wrappers p.sampler uses, `utils` the tensor helpers.
"""

from k_diffusion import external, sampling, utils

__all__ = ["external", "sampling", "utils"]
