"""Speed and memory options applied per job: token merging, attention backend, VAE tiling/slicing,
channels-last, torch.compile; TAESD previews. See docs/performance.md."""

from modules.generation.speed.patches import SpeedCache, SpeedReport, speed_patches
from modules.generation.speed.settings import SpeedSettings, speed_options, token_merging_ratio

__all__ = ["SpeedCache", "SpeedReport", "SpeedSettings", "speed_options", "speed_patches", "token_merging_ratio"]
