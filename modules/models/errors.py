"""Errors the model code raises: one base class so callers (UI, API) can catch them together."""

from __future__ import annotations


class ModelError(Exception):
    """Base class: a model file or model name we cannot use. The message says which and why."""


class InvalidModelFile(ModelError):
    """The file is damaged or not a model file (truncated, wrong format, garbage)."""


class UnsafeModelFile(ModelError):
    """A pickle (.ckpt/.pt) that needs code execution to load; refused unless safe unpickling is off."""


class WrongModelKind(ModelError):
    """A valid model file of another kind than asked for (e.g. a LoRA given as a checkpoint)."""


class UnsupportedModel(ModelError):
    """A checkpoint whose architecture we cannot build (unknown family or layout)."""


class ModelNotFound(ModelError):
    """No checkpoint / VAE matches the given name, title or hash."""
