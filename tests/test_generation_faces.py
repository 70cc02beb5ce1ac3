""" "Restore faces" in generation: the restorer runs on every image before the scripts'
postprocess_image, the infotext names it, and a job that cannot restore is refused up front."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageOps

from modules.postprocessing.face_restoration import FaceRestorationUnavailable
from tests.fixtures_models import TinyModelFiles
from tests.gen_env import GenEnv, make_env, pixels


class InvertingFaces:
    """Stands in for a GFPGAN restorer (a real one is an 86 M-parameter network)."""

    def __init__(self) -> None:
        self.asked: list[str | None] = []

    def resolve(self, model_name: str | None) -> str:
        self.asked.append(model_name)
        return model_name or "GFPGAN"

    def restore(self, image: Image.Image, model_name: str | None) -> Image.Image:
        return ImageOps.invert(image.convert("RGB"))


@pytest.fixture(scope="module")
def face_env(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> Iterator[GenEnv]:
    env = make_env(tmp_path_factory.mktemp("faces"), tiny_models)
    yield env


def with_faces(env: GenEnv, faces: object) -> GenEnv:
    """The env with another face restorer (the same models and settings)."""
    return replace(env, service=replace(env.service, faces=faces))


def test_restore_faces_runs_on_every_image_and_names_the_model(face_env: GenEnv) -> None:
    plain = face_env.txt2img(prompt="a face", seed=3, batch_size=2)
    fake = InvertingFaces()
    restored = with_faces(face_env, fake).txt2img(prompt="a face", seed=3, batch_size=2, restore_faces=True)
    assert fake.asked == [None]  # "Automatic": the first restorer that runs
    for before, after, text in zip(plain.images, restored.images, restored.infotexts, strict=True):
        assert np.array_equal(255 - pixels(before), pixels(after))
        assert "Face restoration: GFPGAN" in text
    assert all("Face restoration" not in t for t in plain.infotexts)


def test_setting_turns_it_on_and_picks_the_model(face_env: GenEnv) -> None:
    fake = InvertingFaces()
    env = with_faces(face_env, fake)
    result = env.txt2img(
        prompt="a face",
        override_settings={
            "sd_model_checkpoint": "tiny-sd1",
            "face_restoration": True,
            "face_restoration_model": "CodeFormer",
        },
    )
    off = env.txt2img(prompt="a face", restore_faces=False, override_settings={"face_restoration": True})
    assert fake.asked == ["CodeFormer"]
    assert "Face restoration: CodeFormer" in result.infotexts[0]
    assert "Face restoration" not in off.infotexts[0]  # the request's False wins over the setting


def test_without_restorers_the_job_is_refused_with_the_reason(face_env: GenEnv) -> None:
    # the env's restorers are the app's: its GFPGAN and CodeFormer folders are empty
    with pytest.raises(FaceRestorationUnavailable, match="not available: .*no GFPGAN or CodeFormer model files found"):
        face_env.txt2img(prompt="a face", restore_faces=True)
