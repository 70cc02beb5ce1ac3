"""Errors of the training code: bad requests and bad datasets, with messages meant for the user."""

from __future__ import annotations


class TrainingError(ValueError):
    """A training or create request that cannot run (the message says what to change)."""


class DatasetError(TrainingError):
    """The dataset folder cannot be used: missing, empty, unreadable images or captions."""
