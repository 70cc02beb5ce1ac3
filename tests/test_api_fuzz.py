"""Schema-driven fuzzing (schemathesis, pinned in requirements-test.txt) of every operation in
/openapi.json against a live server: valid and invalid inputs alike must never produce a 5xx.

Limits are set tiny so that generated generation requests either run on a 64x64 tiny model or are
refused at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from modules.generation import samplers
from modules.generation.latents import LATENT_UPSCALE_MODES
from tests.api_server import LiveServer, start_server
from tests.fixtures_models import TinyModelFiles

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.generation.modes import GenerationMode  # noqa: E402

EXAMPLES_PER_OPERATION = 10
TINY_LIMITS = {
    "api_max_pixels_per_image": 64 * 64,
    "api_max_pixels_per_batch": 2 * 64 * 64,
    "api_max_steps": 2,
    "api_max_batch_count": 1,
    "api_max_request_body_mb": 1.0,
    "api_max_queued_per_user": 0,
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("fuzz"), tiny_models, "--nowebui", settings=TINY_LIMITS)
    yield server
    server.stop()


def fuzz_operation(live: LiveServer, operation: Any, mode: GenerationMode, failures: list[str]) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(base_url=live.url, timeout=120)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} {mode}: {response.status_code} {response.text[:300]}")

    try:
        run()
    except Unsatisfiable:
        if mode == GenerationMode.POSITIVE:
            raise  # only operations without inputs have no invalid form


@pytest.mark.slow
def test_fuzzing_the_openapi_spec_finds_no_server_errors(live: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz_operation(live, operation, mode, failures)
    assert not failures, "\n".join(failures[:20])
    assert live.services.options.get("api_max_steps") == 2  # limits cannot be lifted through the API


def generation_payloads() -> st.SearchStrategy[dict[str, Any]]:
    """Valid-looking txt2img requests (real sampler names, tiny sizes) with hostile values elsewhere."""
    any_float = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=32))
    return st.fixed_dictionaries(
        {
            "prompt": st.text(max_size=30),
            "negative_prompt": st.text(max_size=10),
            "seed": st.integers(-(2**70), 2**70),
            "subseed": st.integers(-(2**40), 2**40),
            "subseed_strength": st.floats(0, 1),
            "seed_resize_from_h": st.integers(-1, 64),
            "seed_resize_from_w": st.integers(-1, 64),
            "sampler_name": st.sampled_from(samplers.sampler_names()),
            "scheduler": st.sampled_from([s.label for s in samplers.SCHEDULERS]),
            "steps": st.integers(1, 2),
            "width": st.integers(8, 64),
            "height": st.integers(8, 64),
            "batch_size": st.integers(1, 2),
            "cfg_scale": st.floats(0, 100),
            "eta": st.one_of(st.none(), st.floats(0, 10)),
            "s_churn": any_float,
            "s_tmin": any_float,
            "s_noise": any_float,
            "tiling": st.one_of(st.none(), st.booleans()),
            "enable_hr": st.booleans(),
            "hr_scale": st.floats(0.05, 1.0),
            "hr_upscaler": st.sampled_from([None, "Lanczos", "None", "no-such-upscaler", *LATENT_UPSCALE_MODES]),
            "hr_second_pass_steps": st.integers(0, 2),
            "styles": st.one_of(st.none(), st.lists(st.text(max_size=5), max_size=2)),
            "override_settings": st.one_of(st.none(), st.just({"CLIP_stop_at_last_layers": 2})),
        }
    )


@pytest.mark.slow
def test_valid_looking_generation_requests_never_give_server_errors(live: LiveServer) -> None:
    failures: list[str] = []
    with live.client() as client:

        @settings(
            max_examples=25, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
        )
        @given(body=generation_payloads())
        def run(body: dict[str, Any]) -> None:
            response = client.post("/sdapi/v1/txt2img", json=body)
            if response.status_code >= 500:
                failures.append(f"{body}: {response.status_code} {response.text[:300]}")

        run()
    assert not failures, "\n".join(failures[:10])
