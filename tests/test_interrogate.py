"""Interrogate CLIP / DeepBooru through POST /sdapi/v1/interrogate (A1111's request and response):
the built-in demo model describes its own pictures with no other model; any other checkpoint
without A1111's interrogator files gets a 4xx naming the files."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api_server import SD1, LiveServer, start_server
from tests.fixtures_models import TinyModelFiles

V1 = "/sdapi/v1"
DEMO = "demo-shapes"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[LiveServer]:
    server = start_server(
        tmp_path_factory.mktemp("interrogate"), tiny_models, "--nowebui", settings={"sd_model_checkpoint": DEMO}
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as c:
        yield c


def demo_picture(client: httpx.Client, prompt: str, seed: int) -> str:
    body = {"prompt": prompt, "seed": seed, "steps": 12, "sampler_name": "DPM++ 2M", "cfg_scale": 7}
    reply = client.post(f"{V1}/txt2img", json={**body, "width": 128, "height": 128})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["images"][0])


@pytest.mark.parametrize(("prompt", "seed"), [("a red circle", 1000), ("a blue square", 1001)])
def test_demo_model_interrogates_its_own_pictures(client: httpx.Client, prompt: str, seed: int) -> None:
    image = demo_picture(client, prompt, seed)
    colour, shape = prompt.split()[1:]
    clip = client.post(f"{V1}/interrogate", json={"image": image, "model": "clip"})
    assert clip.status_code == 200, clip.text
    assert clip.json() == {"caption": f"a {colour} {shape}"}
    booru = client.post(f"{V1}/interrogate", json={"image": image, "model": "deepdanbooru"})
    assert booru.status_code == 200, booru.text
    tags = [t.strip() for t in booru.json()["caption"].split(",")]
    assert shape in tags and colour in tags and tags == sorted(tags)  # deepbooru_sort_alpha


def test_bad_requests_are_a1111s_404s(client: httpx.Client) -> None:
    image = demo_picture(client, "a green triangle", 5)
    unknown = client.post(f"{V1}/interrogate", json={"image": image, "model": "blip2"})
    assert unknown.status_code == 404 and unknown.json()["detail"] == "Model not found"
    empty = client.post(f"{V1}/interrogate", json={"image": "", "model": "clip"})
    assert empty.status_code == 404 and empty.json()["detail"] == "Image not found"


def test_other_checkpoints_name_the_missing_files(live: LiveServer, client: httpx.Client) -> None:
    image = demo_picture(client, "a green triangle", 5)
    assert client.post(f"{V1}/options", json={"sd_model_checkpoint": SD1}).status_code == 200
    try:
        clip = client.post(f"{V1}/interrogate", json={"image": image, "model": "clip"})
        assert clip.status_code == 400
        models = live.services.paths.models_dir
        assert str(models / "BLIP" / "model_base_caption_capfilt_large.pth") in clip.json()["detail"]
        booru = client.post(f"{V1}/interrogate", json={"image": image, "model": "deepdanbooru"})
        assert booru.status_code == 400
        assert str(models / "torch_deepdanbooru" / "model-resnet_custom_v3.pt") in booru.json()["detail"]
    finally:
        client.post(f"{V1}/options", json={"sd_model_checkpoint": DEMO})
