"""sgm.modules.diffusionmodules.util: the same helpers as ldm's."""

from ldm.modules.diffusionmodules.util import (
    avg_pool_nd,
    checkpoint,
    conv_nd,
    linear,
    normalization,
    timestep_embedding,
    zero_module,
)

__all__ = ["avg_pool_nd", "checkpoint", "conv_nd", "linear", "normalization", "timestep_embedding", "zero_module"]
