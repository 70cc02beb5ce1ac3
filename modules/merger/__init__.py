"""Checkpoint Merger: streaming merge of A/B/C checkpoints into a new safetensors or ckpt file."""

from modules.merger.merge import InterpMethod, MergeError, MergeRequest, MergeResult, merge_checkpoints

__all__ = ["InterpMethod", "MergeError", "MergeRequest", "MergeResult", "merge_checkpoints"]
