"""Training routes: /sdapi/v1/create/embedding and /train/embedding against a live server."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tests.api_server import running_server
from tests.fixtures_models import TinyModelFiles


def test_create_and_train_embedding_over_http(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    data = tmp_path / "dataset"
    data.mkdir()
    for i, colour in enumerate(((200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30))):
        Image.new("RGB", (64, 64), colour).save(data / f"{i}.png")
        (data / f"{i}.txt").write_text("a plain square")
    with running_server(tmp_path / "root", tiny_models, "--api") as live, live.client() as client:
        created = client.post("/sdapi/v1/create/embedding", json={"name": "mytok", "num_vectors_per_token": 2})
        assert created.status_code == 200, created.text
        assert "mytok" in created.json()["info"]
        trained = client.post(
            "/sdapi/v1/train/embedding",
            json={
                "embedding_name": "mytok",
                "learn_rate": "0.005",
                "batch_size": 1,
                "data_root": str(data),
                "template_filename": "subject.txt",
                "steps": 3,
                "width": 64,
                "height": 64,
                "save_embedding_every": 0,
                "create_image_every": 0,
            },
        )
        assert trained.status_code == 200, trained.text
        assert "mytok" in trained.json()["info"]
        bad = client.post(
            "/sdapi/v1/train/embedding",
            json={"embedding_name": "mytok", "data_root": str(tmp_path / "nowhere"), "steps": 50},
        )
        assert bad.status_code == 400 and "error" in bad.json()
    saved = list((tmp_path / "root" / "models" / "embeddings").glob("mytok*.pt"))
    assert saved, "the embedding file was written"
