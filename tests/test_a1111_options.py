"""Every setting of A1111 1.10 exists here with A1111's default and is accepted by the options
API (A1111 clients set them freely); tests/data/a1111_1_10_options.json is the list, made from
A1111 1.10's modules/shared_options.py and the built-in Lora script (keys and defaults as data)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_server import SD1, TINY_TXT2IMG, LiveServer, decode_b64, start_server
from tests.fixtures_models import TinyModelFiles

V1 = "/sdapi/v1"
A1111 = json.loads((Path(__file__).parent / "data" / "a1111_1_10_options.json").read_text())["options"]
# Defaults this web UI deliberately differs on (each for a reason users see in docs/settings).
OWN_DEFAULTS = {
    "sd_model_checkpoint",  # the active checkpoint, never None
    "upscaler_for_img2img",  # "None" (A1111's upscaler named None), not null
    "face_restoration_model",  # "Automatic": whichever restorer is installed
    "api_enable_requests",  # off by default: URLs in requests are a server-side fetch (security)
    "quicksettings_list",  # VAE and clip skip shown at the top as well
    "show_progress_type",  # "Approx cheap": works without the Approx NN weights
}
# Set from the test server's settings (tests/api_server.py FAST_SETTINGS), not defaults.
SET_BY_TEST = {"samples_save", "grid_save", "live_previews_enable", "sd_checkpoint_cache"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("a1111-options"), tiny_models, "--nowebui")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as c:
        yield c


def test_every_a1111_option_exists_with_its_default(client: httpx.Client) -> None:
    options = client.get(f"{V1}/options").json()
    missing = sorted(set(A1111) - set(options))
    assert not missing, f"A1111 1.10 settings unknown here: {missing}"
    differ = {
        key: (options[key], default)
        for key, default in A1111.items()
        if key not in OWN_DEFAULTS | SET_BY_TEST and options[key] != default
    }
    assert not differ, f"defaults differ from A1111 1.10 (ours, A1111's): {differ}"
    assert options["send_seed"] is True and options["send_size"] is True


def test_every_a1111_option_is_accepted_by_post(live: LiveServer, client: httpx.Client) -> None:
    body: dict[str, Any] = {k: v for k, v in A1111.items() if v is not None and k not in OWN_DEFAULTS}
    body["sd_model_checkpoint"] = SD1
    r = client.post(f"{V1}/options", json=body)
    assert r.status_code == 200, r.text
    # what webuiapi's set_options({"send_seed": False}) sends: stored and read back, also from config.json
    assert client.post(f"{V1}/options", json={"send_seed": False, "send_size": False}).status_code == 200
    options = client.get(f"{V1}/options").json()
    assert options["send_seed"] is False and options["send_size"] is False
    stored = json.loads(live.services.paths.config_file.read_text())
    assert stored["send_seed"] is False and stored["send_size"] is False
    bad = client.post(f"{V1}/options", json={"send_seed": "maybe"})
    assert bad.status_code == 400 and "send_seed" in bad.text


def test_hires_upscaler_none_is_a_plain_resize(client: httpx.Client) -> None:
    body = {**TINY_TXT2IMG, "enable_hr": True, "hr_scale": 2, "hr_upscaler": "None", "denoising_strength": 0.5}
    r = client.post(f"{V1}/txt2img", json=body)
    assert r.status_code == 200, r.text
    assert decode_b64(r.json()["images"][0]).size == (128, 128)
    assert "Hires upscaler: None" in json.loads(r.json()["info"])["infotexts"][0]
