"""Extras backend: resize modes, crop, two blended upscalers, info keys, face restoration wiring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from modules.postprocessing import (
    ExtrasParams,
    FaceRestorationUnavailable,
    TileSettings,
    UpscalerError,
    UpscalerRegistry,
    run_extras,
    scan_face_restorers,
)
from modules.postprocessing.face_restoration import FaceBox, FaceRestorer, FaceRestorers
from tests.test_upscalers import fixture_image, tiny_esrgan


@pytest.fixture
def registry(tmp_path: Path) -> UpscalerRegistry:
    folder = tmp_path / "ESRGAN"
    folder.mkdir()
    torch.save(tiny_esrgan(), folder / "tiny-4x.pth")
    return UpscalerRegistry([folder], TileSettings(64, 8))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_scale_by_with_lanczos(registry: UpscalerRegistry) -> None:
    image = fixture_image(100, 75)
    result = run_extras(image, ExtrasParams(upscaler_1="Lanczos", upscaling_resize=2), registry)
    assert result.image.size == (200, 144)
    # A1111: resize by the factor (200x150), then to the multiple-of-8 target.
    expected = image.resize((200, 150), Image.Resampling.LANCZOS).resize((200, 144), Image.Resampling.LANCZOS)
    assert np.array_equal(pixels(result.image), pixels(expected))
    assert result.info == {"Postprocess upscale by": 2.0, "Postprocess upscaler": "Lanczos"}
    assert result.infotext == "Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos"


def test_scale_to_with_crop_centres_on_the_canvas(registry: UpscalerRegistry) -> None:
    image = fixture_image(100, 75)
    params = ExtrasParams(
        resize_mode=1, upscaling_resize_w=512, upscaling_resize_h=512, upscaling_crop=True, upscaler_1="Lanczos"
    )
    result = run_extras(image, params, registry)
    assert result.image.size == (512, 512)
    # Scale max(512/100, 512/75) gives 682x512, then 680x512 (multiples of 8), cropped around the centre.
    full = image.resize((682, 512), Image.Resampling.LANCZOS).resize((680, 512), Image.Resampling.LANCZOS)
    assert np.array_equal(pixels(result.image), pixels(full.crop((84, 0, 596, 512))))
    assert result.info == {
        "Postprocess upscale to": "512x512",
        "Postprocess crop to": "512x512",
        "Postprocess upscaler": "Lanczos",
    }
    assert result.infotext == (
        "Postprocess upscale to: 512x512, Postprocess crop to: 512x512, Postprocess upscaler: Lanczos"
    )


def test_scale_to_without_crop_keeps_a1111_rounding(registry: UpscalerRegistry) -> None:
    params = ExtrasParams(resize_mode=1, upscaling_resize_w=512, upscaling_resize_h=512, upscaling_crop=False)
    result = run_extras(fixture_image(100, 75), params.model_copy(update={"upscaler_1": "Nearest"}), registry)
    assert result.image.size == (680, 512)
    assert "Postprocess crop to" not in result.info


def test_upscaler_none_leaves_the_image_alone(registry: UpscalerRegistry) -> None:
    image = fixture_image(50, 40).convert("RGBA")
    result = run_extras(
        image, ExtrasParams(upscaler_1="None", upscaler_2="Lanczos", extras_upscaler_2_visibility=1), registry
    )
    assert result.image.mode == "RGB" and result.image.size == (50, 40)
    assert np.array_equal(pixels(result.image), pixels(image.convert("RGB")))
    assert result.info == {} and result.infotext == ""


def test_second_upscaler_is_blended_by_visibility(registry: UpscalerRegistry) -> None:
    image = fixture_image(60, 40)
    params = ExtrasParams(upscaler_1="Lanczos", upscaler_2="Nearest", extras_upscaler_2_visibility=0.25)
    result = run_extras(image, params, registry)
    lanczos = registry.get("Lanczos").upscale(image, 2)
    nearest = registry.get("Nearest").upscale(image, 2)
    assert np.array_equal(pixels(result.image), pixels(Image.blend(lanczos, nearest, 0.25)))
    assert result.info["Postprocess upscaler 2"] == "Nearest"
    hidden = run_extras(image, params.model_copy(update={"extras_upscaler_2_visibility": 0}), registry)
    assert "Postprocess upscaler 2" not in hidden.info
    assert np.array_equal(pixels(hidden.image), pixels(lanczos))


def test_model_upscaler_through_extras(registry: UpscalerRegistry) -> None:
    image = fixture_image(64, 48)
    result = run_extras(image, ExtrasParams(upscaler_1="tiny-4x", upscaling_resize=4), registry)
    assert result.image.size == (256, 192)
    assert result.info["Postprocess upscaler"] == "tiny-4x"
    lanczos = registry.get("Lanczos").upscale(image, 4)
    assert np.abs(pixels(result.image) - pixels(lanczos)).mean() > 5


def test_max_side_length_caps_the_result(registry: UpscalerRegistry) -> None:
    params = ExtrasParams(upscaler_1="Lanczos", upscaling_resize=4, max_side_length=200)
    result = run_extras(fixture_image(100, 75), params, registry)
    assert result.image.size == (200, 144)
    assert result.info == {"Postprocess upscale by": 4.0, "Max side length": 200, "Postprocess upscaler": "Lanczos"}


def test_unknown_upscaler_and_bad_params_are_refused(registry: UpscalerRegistry) -> None:
    with pytest.raises(UpscalerError, match="could not find upscaler named 'R-ESRGAN 4x\\+'"):
        run_extras(fixture_image(), ExtrasParams(upscaler_1="Lanczos", upscaler_2="R-ESRGAN 4x+"), registry)
    with pytest.raises(ValidationError):
        ExtrasParams(gfpgan_visibility=1.5)
    with pytest.raises(ValidationError):
        ExtrasParams.model_validate({"resize_mode": 2})
    with pytest.raises(ValidationError):
        ExtrasParams(upscaling_resize=0)


def test_face_restoration_without_a_detector_is_reported_not_faked(tmp_path: Path, registry: UpscalerRegistry) -> None:
    gfpgan = tmp_path / "GFPGAN"
    gfpgan.mkdir()
    (gfpgan / "GFPGANv1.4.pth").write_bytes(b"weights would be here")
    faces = scan_face_restorers({"GFPGAN": gfpgan, "CodeFormer": tmp_path / "Codeformer"})
    assert faces.names() == []
    assert [(u.family, u.path.name) for u in faces.unusable] == [("GFPGAN", "GFPGANv1.4.pth")]
    image = fixture_image(32, 32)
    with pytest.raises(
        FaceRestorationUnavailable, match="GFPGAN face restoration is not available: GFPGANv1.4.pth: no face detector"
    ):
        run_extras(image, ExtrasParams(upscaler_1="Lanczos", gfpgan_visibility=0.5), registry, faces)
    with pytest.raises(FaceRestorationUnavailable, match="CodeFormer .* no model files found"):
        run_extras(image, ExtrasParams(codeformer_visibility=1), registry, faces)
    with pytest.raises(FaceRestorationUnavailable, match="no face restorers configured"):
        run_extras(image, ExtrasParams(gfpgan_visibility=1), registry)


class RecordingDetector:
    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def detect(self, image: Image.Image) -> list[FaceBox]:
        self.sizes.append(image.size)
        return [FaceBox(image.width // 4, image.height // 4, image.width // 2, image.height // 2)]


def invert(x: torch.Tensor) -> torch.Tensor:
    return 1 - x


def test_face_restorer_changes_only_faces_and_respects_order(registry: UpscalerRegistry) -> None:
    detector = RecordingDetector()
    faces = FaceRestorers(available={"GFPGAN": FaceRestorer("GFPGAN", invert, detector, face_size=64)})
    image = fixture_image(64, 64)
    params = ExtrasParams(upscaler_1="Lanczos", upscaling_resize=2, gfpgan_visibility=0.5)
    faces_first = run_extras(image, params, registry, faces)
    upscale_first = run_extras(image, params.model_copy(update={"upscale_first": True}), registry, faces)
    assert detector.sizes == [(64, 64), (128, 128)]
    assert list(faces_first.info) == ["GFPGAN visibility", "Postprocess upscale by", "Postprocess upscaler"]
    assert list(upscale_first.info) == ["Postprocess upscale by", "Postprocess upscaler", "GFPGAN visibility"]
    assert faces_first.info["GFPGAN visibility"] == 0.5

    plain = pixels(registry.get("Lanczos").upscale(image, 2))
    changed = np.abs(pixels(upscale_first.image) - plain).sum(axis=2) > 0
    # Inside the face box (32..64), past the feathered edge; blending a mid-grey pixel half with
    # its inverse (resampled by the align/paste warps) can leave it as it was.
    mid_grey = (np.abs(plain - 127.5) < 2).all(axis=2)
    assert (changed | mid_grey)[36:60, 36:60].all() and changed[36:60, 36:60].mean() > 0.95
    assert not changed[:30].any() and not changed[:, :30].any() and not changed[70:].any()


def test_face_scan_with_a_detector_rejects_non_face_models(tmp_path: Path) -> None:
    gfpgan = tmp_path / "GFPGAN"
    gfpgan.mkdir()
    torch.save(tiny_esrgan(), gfpgan / "not-a-face.pth")
    (gfpgan / "broken.pth").write_bytes(b"junk")
    faces = scan_face_restorers({"GFPGAN": gfpgan}, detector=RecordingDetector())
    assert faces.names() == []
    reasons = {u.path.name: u.reason for u in faces.unusable}
    assert reasons["not-a-face.pth"] == "spandrel reads it as ESRGAN, not a face model"
    assert reasons["broken.pth"].startswith("spandrel cannot load it")
