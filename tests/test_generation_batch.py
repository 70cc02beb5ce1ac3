"""img2img batch from a folder."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from modules.core.jobs import JobControl
from modules.generation.batch import img2img_folder
from modules.generation.image_io import read_info_from_image
from modules.generation.requests import Img2ImgRequest
from tests.gen_env import SD1, GenEnv


def test_folder_batch_writes_one_result_per_image(env: GenEnv, tmp_path: Path) -> None:
    src, out, masks = tmp_path / "in", tmp_path / "out", tmp_path / "masks"
    src.mkdir()
    masks.mkdir()
    for name, colour in (("a", (200, 30, 30)), ("b", (30, 200, 30))):
        Image.new("RGB", (64, 64), colour).save(src / f"{name}.png")
    (src / "broken.png").write_bytes(b"not an image")
    (src / "notes.txt").write_text("ignored")
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((20, 20, 40, 40), fill=255)
    mask.save(masks / "only.png")
    out.mkdir()
    (out / "a.png").write_bytes(b"existing")
    req = Img2ImgRequest(
        width=64,
        height=64,
        steps=3,
        sampler_name="Euler",
        denoising_strength=0.6,
        seed=1,
        inpaint_full_res=False,
        override_settings={"sd_model_checkpoint": SD1},
    )
    result = img2img_folder(env.service, req, JobControl(), src, out, mask_dir=masks)
    assert [p.name for p in result.written] == ["a-1.png", "b.png"]
    assert (out / "a.png").read_bytes() == b"existing"
    assert "broken.png" in result.skipped and "not a readable image" in result.skipped["broken.png"]
    info = read_info_from_image(Image.open(out / "b.png")).parameters
    assert info is not None and "Denoising strength: 0.6" in info and "Mask blur: 4" in info
    # outside the mask the green input is unchanged
    assert Image.open(out / "b.png").convert("RGB").getpixel((2, 2)) == (30, 200, 30)
