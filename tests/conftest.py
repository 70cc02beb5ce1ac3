"""Shared test set-up: offline, deterministic, small thread count."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub / transformers: never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Spinning OpenMP threads starve each other on a busy 2-core machine; passive waiting is far faster there.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Shared fixtures: tiny model files (session) and a generation service over them (module).
pytest_plugins = ["tests.fixtures_models", "tests.gen_env"]


@pytest.fixture(scope="session")
def tokenizer_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cache root for the offline-built CLIP tokenizer files (built once per test session)."""
    return tmp_path_factory.mktemp("tokenizer-cache")
