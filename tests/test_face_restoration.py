"""Face restoration: RetinaFace weights in facexlib's layout, detection maths, FFHQ alignment, paste-back."""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from modules.models.errors import InvalidModelFile, UnsafeModelFile
from modules.postprocessing import ExtrasParams, FaceRestorationUnavailable, TileSettings, UpscalerRegistry, run_extras
from modules.postprocessing.face_align import (
    FFHQ_TEMPLATE_512,
    align_face,
    face_template,
    paste_face,
    similarity_transform,
    soft_mask,
)
from modules.postprocessing.face_detect import DETECTOR_FILENAME, load_retinaface
from modules.postprocessing.face_restoration import (
    FaceRestorer,
    FaceRestorers,
    api_entries,
    face_restorer_folders,
    restore_faces,
    scan_face_restorers,
)
from tests.api_server import b64_png, gradient, running_server
from tests.fixtures_models import TinyModelFiles

# --- a detector file laid out as facexlib's detection_Resnet50_Final.pth -----------------------------


def _conv_bn(prefix: str, cin: int, cout: int, kernel: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    fan_in = cin * kernel * kernel
    return {
        f"{prefix}.0.weight": torch.randn(cout, cin, kernel, kernel, generator=gen) / math.sqrt(fan_in),
        f"{prefix}.1.weight": torch.ones(cout),
        f"{prefix}.1.bias": torch.zeros(cout),
        f"{prefix}.1.running_mean": torch.zeros(cout),
        f"{prefix}.1.running_var": torch.ones(cout),
        f"{prefix}.1.num_batches_tracked": torch.tensor(0),
    }


def facexlib_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the key names of facexlib's RetinaFace ResNet-50 (written out here)."""
    gen = torch.Generator().manual_seed(seed)
    body = torchvision.models.resnet50(weights=None).state_dict()
    state = {f"body.{k}": v for k, v in body.items() if not k.startswith("fc.")}
    for i, cin in enumerate((512, 1024, 2048), start=1):
        state |= _conv_bn(f"fpn.output{i}", cin, 256, 1, gen)
    for i in (1, 2):
        state |= _conv_bn(f"fpn.merge{i}", 256, 256, 3, gen)
    for s in ("ssh1", "ssh2", "ssh3"):
        state |= _conv_bn(f"{s}.conv3X3", 256, 128, 3, gen) | _conv_bn(f"{s}.conv5X5_1", 256, 64, 3, gen)
        for name in ("conv5X5_2", "conv7X7_2", "conv7x7_3"):
            state |= _conv_bn(f"{s}.{name}", 64, 64, 3, gen)
    for head, per_anchor in (("ClassHead", 2), ("BboxHead", 4), ("LandmarkHead", 10)):
        for i in range(3):
            state[f"{head}.{i}.conv1x1.weight"] = torch.randn(2 * per_anchor, 256, 1, 1, generator=gen) * 0.01
            state[f"{head}.{i}.conv1x1.bias"] = torch.randn(2 * per_anchor, generator=gen) * 0.01
    return state


def save_detector(folder: Path, state: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DETECTOR_FILENAME
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # saved from DataParallel, like the real one
    return path


NOT_FACE = [5.0, -5.0]  # (background, face) logits: face score ~0.00005


def one_face_state(face_side: float, centre: tuple[float, float], points: np.ndarray) -> dict[str, torch.Tensor]:
    """Heads that see exactly one face, on the single 256-px anchor of the coarsest level.

    Meant for an image of at most 32x32 at detection size, where that level is one cell centred at
    (16, 16). A second, bigger anchor there is nearly as confident and overlaps it: NMS drops it.
    """
    state = facexlib_state()
    for head in ("ClassHead", "BboxHead", "LandmarkHead"):
        for i in range(3):
            state[f"{head}.{i}.conv1x1.weight"].zero_()
            state[f"{head}.{i}.conv1x1.bias"].zero_()
    state["ClassHead.0.conv1x1.bias"][:] = torch.tensor(NOT_FACE * 2)
    state["ClassHead.1.conv1x1.bias"][:] = torch.tensor(NOT_FACE * 2)
    state["ClassHead.2.conv1x1.bias"][:] = torch.tensor([-5.0, 5.0, -4.0, 4.0])
    prior = 256.0  # anchor side; facexlib encodes offsets in units of 0.1 * side, sizes as log / 0.2
    for at, side, size in ((0, prior, face_side), (4, 2 * prior, face_side * 1.1)):
        dx, dy = (centre[0] - 16) / (0.1 * side), (centre[1] - 16) / (0.1 * side)
        dw = math.log(size / side) / 0.2
        state["BboxHead.2.conv1x1.bias"][at : at + 4] = torch.tensor([dx, dy, dw, dw])
    state["LandmarkHead.2.conv1x1.bias"][:10] = torch.tensor((points - 16) / (0.1 * prior)).flatten()
    return state


def template_points(side: float, centre: tuple[float, float]) -> np.ndarray:
    return np.array(centre) + (FFHQ_TEMPLATE_512 / 512 - 0.5) * side


def test_a_file_in_facexlibs_layout_loads(tmp_path: Path) -> None:
    state = facexlib_state(seed=3)
    detector = load_retinaface(save_detector(tmp_path, state))
    loaded = detector.net.state_dict()
    for key in ("body.layer4.2.conv3.weight", "fpn.merge1.0.weight", "ssh3.conv7x7_3.1.running_var"):
        assert torch.equal(loaded[key], state[key])
    assert torch.equal(loaded["LandmarkHead.1.conv1x1.bias"], state["LandmarkHead.1.conv1x1.bias"])


def test_a_file_with_other_keys_is_rejected_with_the_reason(tmp_path: Path) -> None:
    state = facexlib_state()
    state["ssh1.conv7X7_3.0.weight"] = state.pop("ssh1.conv7x7_3.0.weight")
    with pytest.raises(InvalidModelFile, match=r"detection_Resnet50_Final.pth: not a RetinaFace .*missing: "):
        load_retinaface(save_detector(tmp_path, state))


def test_crafted_heads_give_the_expected_box_and_landmarks(tmp_path: Path) -> None:
    points = template_points(24, (16, 16))  # eyes 5.9 px apart (faces under 5 px are dropped)
    # Box deltas zero: the box is the anchor itself, 256 px around the cell centre (16, 16).
    state = one_face_state(256, (16, 16), points)
    detector = load_retinaface(save_detector(tmp_path, state), detect_size=32)
    faces = detector.detect(gradient(64))  # detected at 32x32: every coordinate doubles
    assert len(faces) == 1
    face = faces[0]
    assert (face.left, face.top, face.right, face.bottom) == (-224, -224, 288, 288)
    assert face.score == pytest.approx(1 / (1 + math.exp(-10)), rel=1e-5)
    assert face.landmarks is not None
    assert np.allclose(np.array(face.landmarks), points * 2, atol=1e-3)


def test_box_offsets_move_and_shrink_the_box(tmp_path: Path) -> None:
    state = one_face_state(12, (14, 18), template_points(24, (14, 18)))
    detector = load_retinaface(save_detector(tmp_path, state), detect_size=None)
    [face] = detector.detect(gradient(32))
    assert (face.left, face.top, face.right, face.bottom) == (8, 12, 20, 24)


def test_confidence_threshold_and_eye_distance_filter_faces(tmp_path: Path) -> None:
    state = one_face_state(12, (16, 16), template_points(24, (16, 16)))
    state["ClassHead.2.conv1x1.bias"][:] = torch.tensor([1.0, 2.0, 1.0, 2.0])  # face score 0.73 < 0.97
    assert load_retinaface(save_detector(tmp_path / "low", state), detect_size=None).detect(gradient(32)) == []
    state = one_face_state(12, (16, 16), template_points(3, (16, 16)))  # eyes 0.7 px apart
    assert load_retinaface(save_detector(tmp_path / "eyes", state), detect_size=None).detect(gradient(32)) == []


# --- alignment ------------------------------------------------------------------------------------


def textured(size: int) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    rgb = np.stack([128 + 100 * np.sin(x / 9), 128 + 100 * np.cos(y / 7), 128 + 60 * np.sin((x + y) / 13)], axis=2)
    return Image.fromarray(rgb.round().astype(np.uint8), "RGB")


def test_similarity_transform_recovers_a_known_motion() -> None:
    angle, scale, shift = math.radians(12), 0.4, np.array([40.0, 55.0])
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    landmarks = FFHQ_TEMPLATE_512 @ rotation.T + shift  # where the face's points sit in the image
    matrix = similarity_transform(landmarks, face_template(512))
    assert np.allclose(matrix[:, :2], np.linalg.inv(rotation), atol=1e-9)
    assert np.allclose(landmarks @ matrix[:, :2].T + matrix[:, 2], FFHQ_TEMPLATE_512, atol=1e-9)


def test_alignment_round_trip_reproduces_the_face_region() -> None:
    image = textured(200)
    angle = math.radians(-15)
    rotation = 0.25 * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    landmarks = FFHQ_TEMPLATE_512 @ rotation.T + np.array([60.0, 50.0])
    matrix = similarity_transform(landmarks, face_template(256))
    face = align_face(image, matrix, 256)
    # The aligned crop has the eyes where the template says: sample the image there and compare.
    source, aligned = np.asarray(image, np.int16), np.asarray(face, np.int16)
    for (x, y), (tx, ty) in zip(landmarks, face_template(256), strict=True):
        assert np.abs(source[round(y), round(x)] - aligned[round(ty), round(tx)]).max() < 25
    back = paste_face(image, face, matrix)
    alpha = soft_mask(matrix, 256, (0, 0, 200, 200))[:, :, 0]
    inside = alpha > 0.999
    assert inside.sum() > 2000
    diff = np.abs(np.asarray(back, np.int16) - np.asarray(image, np.int16)).max(axis=2)
    assert diff[inside].mean() < 2.5 and diff[inside].max() <= 40
    assert (diff[alpha == 0] == 0).all()  # outside the face nothing moves


# --- the restorer with a real detector --------------------------------------------------------------


def invert(x: torch.Tensor) -> torch.Tensor:
    return 1 - x


def face_detector(folder: Path, side: float = 10, centre: tuple[float, float] = (16, 16)) -> Path:
    return save_detector(folder, one_face_state(side, centre, template_points(side, centre)))


def test_restorer_changes_only_the_face(tmp_path: Path) -> None:
    detector = load_retinaface(face_detector(tmp_path), detect_size=32)
    image = textured(96)  # detected at 32x32: the face is the 30 px square around (48, 48)
    result = FaceRestorer("GFPGAN", invert, detector, face_size=64).restore(image)
    diff = np.abs(np.asarray(result, np.int16) - np.asarray(image, np.int16)).max(axis=2)
    assert (diff[40:56, 40:56] > 60).mean() > 0.9  # inverted inside the face
    outside = np.ones_like(diff, dtype=bool)
    outside[30:67, 30:67] = False
    assert (diff[outside] == 0).all()


def test_extras_runs_gfpgan_with_visibility_and_infotext(tmp_path: Path) -> None:
    detector = load_retinaface(face_detector(tmp_path), detect_size=32)
    faces = FaceRestorers(available={"GFPGAN": FaceRestorer("GFPGAN", invert, detector, face_size=64)})
    image = textured(96)
    result = run_extras(image, ExtrasParams(gfpgan_visibility=0.25), UpscalerRegistry([], TileSettings(64, 8)), faces)
    assert result.infotext == "GFPGAN visibility: 0.25"
    full = faces.get("GFPGAN").restore(image)
    expected = Image.blend(image, full, 0.25)
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))
    assert not np.array_equal(np.asarray(result.image), np.asarray(image))
    assert np.array_equal(np.asarray(restore_faces(image, faces, "GFPGAN")), np.asarray(full))
    assert np.array_equal(np.asarray(restore_faces(image, faces, "")), np.asarray(full))  # first that runs


# --- scanning: reasons instead of silence ------------------------------------------------------------


def test_missing_detector_is_named_in_the_listing(tmp_path: Path) -> None:
    gfpgan = tmp_path / "GFPGAN"
    gfpgan.mkdir()
    (gfpgan / "GFPGANv1.4.pth").write_bytes(b"weights")
    faces = scan_face_restorers({"GFPGAN": gfpgan, "CodeFormer": tmp_path / "Codeformer"})
    assert faces.names() == []
    [entry] = faces.unusable
    assert entry.reason.startswith("no face detector: put facexlib's detection_Resnet50_Final.pth (RetinaFace) in ")
    with pytest.raises(FaceRestorationUnavailable, match="GFPGANv1.4.pth: no face detector"):
        restore_faces(gradient(32), faces, "GFPGAN")
    with pytest.raises(FaceRestorationUnavailable, match="GFPGAN GFPGANv1.4.pth: no face detector"):
        restore_faces(gradient(32), faces, None)


def test_detector_files_are_not_restorers_and_codeformer_says_why(tmp_path: Path) -> None:
    gfpgan, codeformer = tmp_path / "GFPGAN", tmp_path / "Codeformer"
    face_detector(gfpgan)
    (gfpgan / "parsing_parsenet.pth").write_bytes(b"facexlib's face parser")
    codeformer.mkdir()
    (codeformer / "codeformer-v0.1.0.pth").write_bytes(b"weights")
    faces = scan_face_restorers({"GFPGAN": gfpgan, "CodeFormer": codeformer})
    assert [(u.family, u.path.name) for u in faces.unusable] == [("CodeFormer", "codeformer-v0.1.0.pth")]
    assert "spandrel_extra_arches" in faces.unusable[0].reason
    with pytest.raises(FaceRestorationUnavailable, match="GFPGAN .* no model files found"):
        faces.get("GFPGAN")


def test_gfpgan_weights_are_listed_once_a_detector_is_there(tmp_path: Path) -> None:
    gfpgan = tmp_path / "GFPGAN"
    face_detector(gfpgan)
    # Only the keys spandrel recognises GFPGAN by: the scan must not build the network (seconds,
    # 86M parameters); it is built on first use.
    keys = ("toRGB.0.weight", "stylegan_decoder.style_mlp.1.weight")
    torch.save({k: torch.zeros(1) for k in keys}, gfpgan / "GFPGANv1.4.pth")
    folders = face_restorer_folders(gfpgan, tmp_path / "Codeformer")
    faces = scan_face_restorers(folders)
    assert faces.names() == ["GFPGAN"] and faces.unusable == []
    assert api_entries(faces, folders) == [{"name": "GFPGAN", "cmd_dir": str(gfpgan)}]


class RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_a_detector_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    gfpgan, marker = tmp_path / "GFPGAN", tmp_path / "pwned"
    gfpgan.mkdir()
    with open(gfpgan / DETECTOR_FILENAME, "wb") as f:
        pickle.dump({"body.conv1.weight": RunsShell(marker)}, f)
    (gfpgan / "GFPGANv1.4.pth").write_bytes(b"weights")
    with pytest.raises(UnsafeModelFile, match="refused to load"):
        load_retinaface(gfpgan / DETECTOR_FILENAME)
    faces = scan_face_restorers({"GFPGAN": gfpgan})
    assert faces.unusable[0].reason.startswith("no face detector: detection_Resnet50_Final.pth: refused to load")
    assert not marker.exists()


def test_api_reports_the_missing_detector(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    gfpgan = tmp_path / "data" / "models" / "GFPGAN"
    gfpgan.mkdir(parents=True)
    (gfpgan / "GFPGANv1.4.pth").write_bytes(b"weights")
    with running_server(tmp_path / "data", tiny_models, "--api") as live, live.client() as client:
        assert client.get("/sdapi/v1/face-restorers").json() == []
        r = client.post("/sdapi/v1/extra-single-image", json={"image": b64_png(gradient(32)), "gfpgan_visibility": 1})
        assert r.status_code == 400, r.text
        assert "GFPGANv1.4.pth: no face detector: put facexlib's detection_Resnet50_Final.pth" in r.json()["detail"]


@pytest.mark.browser
def test_extras_tab_shows_why_gfpgan_cannot_run(tmp_path: Path, tiny_models: TinyModelFiles) -> None:
    from tests.ui_harness import chromium, open_page, prepare_data_dir, require_browser, start_server

    require_browser()
    data = prepare_data_dir(tmp_path / "data", tiny_models, families=("sd1",))
    (data / "models" / "GFPGAN").mkdir(parents=True, exist_ok=True)
    (data / "models" / "GFPGAN" / "GFPGANv1.4.pth").write_bytes(b"weights")
    gradient(32).save(tmp_path / "face.png")
    server = start_server(data)
    try:
        with chromium() as context:
            errors: list[str] = []
            page = open_page(context, server.url, errors)
            page.locator("#tabs [role=tablist]").first.get_by_role("tab", name="Extras", exact=True).click()
            page.locator("#extras_image input[type=file]").set_input_files(str(tmp_path / "face.png"))
            page.wait_for_selector("#extras_image img", timeout=30000)
            for elem_id in ("extras_codeformer_visibility", "extras_codeformer_weight"):
                assert page.locator(f"#{elem_id} input[type=number]").first.input_value() == "0"
            box = page.locator("#extras_gfpgan_visibility input[type=number]").first
            box.fill("0.5")
            box.press("Enter")
            box.blur()
            page.locator("#extras_generate").click()
            page.wait_for_function(
                "() => /face restoration/.test(document.querySelector('#html_info_extras').innerText)", timeout=60000
            )
            text = page.locator("#html_info_extras").inner_text()
            assert "GFPGANv1.4.pth: no face detector: put facexlib's detection_Resnet50_Final.pth" in text
    finally:
        server.stop()
