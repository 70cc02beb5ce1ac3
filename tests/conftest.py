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

# Shared fixtures: tiny model files (session), a generation service over them (module), and the
# browser context and page of browser test modules (tests/ui_harness.py).
pytest_plugins = ["tests.fixtures_models", "tests.gen_env", "tests.ui_harness"]


@pytest.fixture(scope="session")
def tokenizer_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cache root for the offline-built CLIP tokenizer files (built once per test session)."""
    return tmp_path_factory.mktemp("tokenizer-cache")


# --- test tiers ------------------------------------------------------------------------------
# Every test is in exactly one tier (README "Tests"):
#   unit         pure logic: no model files, no server, no browser; `pytest -m unit` (< 60 s)
#   integration  tiny models, a real uvicorn server, git or subprocesses
#   browser      headless Chromium (marked in the test files)
# A test marked `unit` or `integration` keeps its mark; otherwise tests in UNIT_FILES are unit
# unless they use a fixture that builds models or servers, and every other test is integration.
UNIT_FILES = frozenset(
    {
        "test_bootstrap.py",
        "test_conditioning.py",
        "test_extras.py",
        "test_image_io.py",
        "test_import_layers.py",
        "test_infotext.py",
        "test_jobs.py",
        "test_models_hashes.py",
        "test_models_identify.py",
        "test_models_safe_load.py",
        "test_networks_catalogue.py",
        "test_prompt_parser.py",
        "test_rng.py",
        "test_samplers.py",
        "test_saving.py",
        "test_schedules.py",
        "test_settings_keys.py",
        "test_speed_settings.py",
        "test_styles.py",
        "test_train_basics.py",
        "test_ui_extra_networks.py",
    }
)
HEAVY_FIXTURES = frozenset({"tiny_models", "env", "tokenizer_cache"})
TIERS = ("unit", "integration", "browser")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marked = {mark.name for mark in item.iter_markers()} & set(TIERS)
        if len(marked) > 1:
            raise pytest.UsageError(f"{item.nodeid}: in more than one tier ({', '.join(sorted(marked))})")
        if marked:
            continue
        heavy = HEAVY_FIXTURES & set(getattr(item, "fixturenames", ()))
        unit = item.path.name in UNIT_FILES and not heavy and "slow" not in {m.name for m in item.iter_markers()}
        item.add_marker(pytest.mark.unit if unit else pytest.mark.integration)
