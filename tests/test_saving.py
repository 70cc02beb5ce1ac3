"""Saving outputs: filename patterns, numbering, no overwrites under concurrency, formats, grids."""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from modules.core.shared_options import core_registry
from modules.generation.filename_pattern import FilenameContext, FilenameGenerator, Sanitizer
from modules.generation.image_io import read_info_from_image
from modules.generation.saving import (
    LOCK_NAME,
    SavingOptions,
    grid_rows,
    image_grid,
    next_sequence_number,
    save_image,
    write_params_txt,
)

NOW = datetime(2024, 5, 1, 12, 30, 45, tzinfo=UTC)


def make_ctx(**changes: object) -> FilenameContext:
    base: dict[str, object] = {
        "seed": 1234567890,
        "prompt": "a red fox, snowy forest, cinematic",
        "negative_prompt": "blurry",
        "all_seeds": [1234567890, 1234567891, 1234567892],
        "batch_size": 1,
        "n_iter": 1,
        "steps": 20,
        "cfg_scale": 7.0,
        "sampler_name": "DPM++ 2M",
        "scheduler": "Automatic",
        "default_scheduler": "karras",
        "denoising_strength": 0.45,
        "clip_skip": 2,
        "model_hash": "6ce0161689",
        "model_name": "v1-5-pruned-emaonly",
        "styles": ["Cinematic", "None"],
        "style_prompts": ["{prompt}, cinematic"],
        "job_timestamp": "20240501123045",
        "now": NOW,
    }
    base.update(changes)
    return FilenameContext(**base)  # type: ignore[arg-type]


def expand(pattern: str, image: Image.Image | None = None, **changes: object) -> str:
    return FilenameGenerator(make_ctx(**changes), image or Image.new("RGB", (64, 48))).apply(pattern)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("[seed]", "1234567890"),
        ("[seed_first]", "1234567890"),
        ("[steps]", "20"),
        ("[cfg]", "7.0"),
        ("[width]x[height]", "64x48"),
        ("[denoising]", "0.45"),
        ("[clip_skip]", "2"),
        ("[sampler]", "DPM++ 2M"),
        ("[scheduler]", "Karras"),
        ("[sampler_scheduler]", "DPM++ 2M Karras"),
        ("[model_hash]", "6ce0161689"),
        ("[model_name]", "v1-5-pruned-emaonly"),
        ("[vae_filename]", "NoneType"),
        ("[styles]", "Cinematic"),
        ("[prompt]", "a_red_fox,_snowy_forest,_cinematic"),
        ("[prompt_spaces]", "a red fox, snowy forest, cinematic"),
        ("[prompt_no_styles]", "a red fox, snowy forest"),
        ("[prompt_words]", "a red fox snowy forest cinematic"),
        ("[prompt_hash]", sha("a red fox, snowy forest, cinematic")[:8]),
        ("[prompt_hash<12>]", sha("a red fox, snowy forest, cinematic")[:12]),
        ("[negative_prompt_hash<4>]", sha("blurry")[:4]),
        ("[full_prompt_hash]", sha("a red fox, snowy forest, cinematic blurry")[:8]),
        ("[hasprompt<fox><cat|nocat>]", "foxnocat"),
        ("[hasprompt<FOX|x>]", "fox"),
        ("[date]", "2024-05-01"),
        ("[datetime]", NOW.astimezone().strftime("%Y%m%d%H%M%S")),
        ("[datetime<%Y_%m_%d>]", "2024_05_01"),
        ("[datetime<%H:%M><Asia/Tokyo>]", "21_30"),  # ':' sanitised; UTC+9
        ("[datetime<%H><Not/AZone>]", NOW.astimezone().strftime("%H")),
        ("[job_timestamp]", "20240501123045"),
        ("[batch_size]", "1"),
        ("[none]", ""),
        ("[basename]", "img"),
        ("[SEED]-[Steps]", "1234567890-20"),  # token names are case-insensitive
    ],
)
def test_token(pattern: str, expected: str) -> None:
    assert expand(pattern) == expected


def test_batch_tokens_in_a_batch() -> None:
    ctx = {"batch_size": 3, "n_iter": 2, "batch_index": 1, "iteration": 1}
    assert expand("[batch_number]", **ctx) == "2"
    assert expand("[generation_number]", **ctx) == "5"
    assert expand("[seed_first]-[seed_last]", **ctx) == "1234567890-1234567892"
    assert expand("[batch_number]", zip=True, **ctx) == ""


def test_image_hash_vae_user_and_basename() -> None:
    image = Image.new("RGB", (2, 2), (1, 2, 3))
    digest = hashlib.sha256(image.tobytes()).hexdigest()
    assert expand("[image_hash]", image) == digest
    assert expand("[image_hash<6>]", image) == digest[:6]
    assert expand("[vae_filename]", vae_file="/models/VAE/kl-f8.vae.pt") == "kl-f8"
    assert expand("[vae_filename]", vae_file=".hidden.safetensors") == "hidden"
    assert expand("[user]", user="alice") == "alice"
    assert expand("[basename]", basename="photo") == "photo"


def test_token_that_does_not_apply_disappears_with_text_before_it() -> None:
    assert expand("[seed]-[batch_number]-[steps]") == "1234567890-20"
    assert expand("x[seed_last]y") == "y"
    assert expand("gen[generation_number]") == ""
    assert expand("d[denoising]", denoising_strength=None) == ""
    assert expand("s-[scheduler]", scheduler=None) == ""


def test_unknown_tokens_and_missing_data_stay_literal() -> None:
    assert expand("a-[nonsense]-b") == "a-[nonsense]-b"
    assert expand("[steps]", steps=None) == "[steps]"
    assert expand("[user]") == "[user]"  # no user: A1111 keeps the token
    assert expand("[seed<3>]") == "[seed]"  # no arguments allowed
    assert expand("[prompt_hash<x>]") == "[prompt_hash]"  # bad argument
    assert expand("[seed]", seed=None) == ""


def test_sanitising() -> None:
    prompt = 'a/b\\c:d*e?f"g<h>i|j#k\tl.'
    assert expand("[prompt_spaces]", prompt=prompt) == "a_b_c_d_e_f_g_h_i_j_k_l"
    assert expand("[prompt_spaces]", prompt="  lead and trail. . ") == "lead and trail"
    unix = Sanitizer(unix=True)
    assert unix('a/b:c*d "e"', replace_spaces=False) == 'a_b:c*d "e"'


def test_max_length_of_a_part() -> None:
    long_prompt = "word " * 100
    assert len(expand("[prompt]", prompt=long_prompt)) == 128
    short = FilenameGenerator(make_ctx(prompt=long_prompt), sanitize=Sanitizer(max_length=20))
    assert short.apply("[prompt]") == "word_word_word_word_"
    assert expand("[prompt_words]", prompt=long_prompt) == " ".join(["word"] * 8)


# --- saving ---------------------------------------------------------------------------------


def opts(**changes: object) -> SavingOptions:
    base: dict[str, object] = {"save_to_dirs": False, "samples_filename_pattern": "[seed]"}
    base.update(changes)
    return SavingOptions(**base)  # type: ignore[arg-type]


def img(color: tuple[int, int, int] = (10, 20, 30), size: tuple[int, int] = (16, 16)) -> Image.Image:
    return Image.new("RGB", size, color)


def test_numbering_increments_and_continues_after_existing(tmp_path: Path) -> None:
    names = [save_image(img(), tmp_path, ctx=make_ctx(), options=opts()).path.name for _ in range(3)]
    assert names == ["00000-1234567890.png", "00001-1234567890.png", "00002-1234567890.png"]
    (tmp_path / "00041-other.jpg").write_bytes(b"x")
    assert save_image(img(), tmp_path, ctx=make_ctx(), options=opts()).path.name == "00042-1234567890.png"
    assert next_sequence_number(tmp_path) == 43
    assert next_sequence_number(tmp_path / "missing") == 0


def test_default_pattern_depends_on_save_to_dirs(tmp_path: Path) -> None:
    flat = save_image(img(), tmp_path, ctx=make_ctx(), options=opts(samples_filename_pattern=""))
    assert flat.path.name == "00000-1234567890-a red fox, snowy forest, cinematic.png"
    nested = save_image(img(), tmp_path, ctx=make_ctx(), options=opts(samples_filename_pattern="", save_to_dirs=True))
    assert nested.path == tmp_path / "2024-05-01" / "00000-1234567890.png"


def test_grids_are_numbered_with_four_digits(tmp_path: Path) -> None:
    o = opts(grid_save_to_dirs=False)
    first = save_image(img(), tmp_path, "grid", ctx=make_ctx(), options=o, grid=True, short_filename=True)
    second = save_image(img(), tmp_path, "grid", ctx=make_ctx(), options=o, grid=True, short_filename=True)
    assert (first.path.name, second.path.name) == ("grid-0000.png", "grid-0001.png")


def test_directory_pattern_stays_inside_outdir(tmp_path: Path) -> None:
    o = opts(save_to_dirs=True, directories_filename_pattern="../../[prompt_words]/./x")
    saved = save_image(img(), tmp_path / "out", ctx=make_ctx(), options=o)
    assert saved.path.parent == tmp_path / "out" / "a red fox snowy forest cinematic" / "x"


def test_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    o = opts(save_images_add_number=False)
    existing = tmp_path / "1234567890.png"
    existing.write_bytes(b"precious")
    saved = save_image(img(), tmp_path, ctx=make_ctx(), options=o)
    assert saved.path.name == "1234567890-1.png"
    assert existing.read_bytes() == b"precious"
    forced = tmp_path / "chosen.png"
    forced.write_bytes(b"mine")
    assert save_image(img(), tmp_path, ctx=make_ctx(), options=o, forced_filename="chosen").path.name == "chosen-1.png"
    assert forced.read_bytes() == b"mine"


def test_eight_threads_saving_at_once_get_eight_files(tmp_path: Path) -> None:
    barrier = threading.Barrier(8)
    results: list[Path] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            barrier.wait()
            saved = save_image(
                img((i * 30, 0, 0)), tmp_path, ctx=make_ctx(seed=i), options=opts(), infotext=f"image {i}"
            )
            with lock:
                results.append(saved.path)
        except BaseException as exc:  # collected and re-checked below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 8
    numbers = sorted(int(p.name.split("-")[0]) for p in results)
    assert numbers == list(range(8))  # distinct numbers, not just distinct names
    for path in results:
        seed = int(path.stem.split("-")[1])
        with Image.open(path) as saved:
            assert read_info_from_image(saved).parameters == f"image {seed}"
            assert saved.getpixel((0, 0)) == (seed * 30, 0, 0)
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in results)  # no temp or lock files left


def test_numbering_waits_for_another_savers_lock(tmp_path: Path) -> None:
    """Another process holding the folder's lock file delays numbering until it lets go."""
    lock = tmp_path / LOCK_NAME
    lock.write_bytes(b"")
    done: list[Path] = []
    saver = threading.Thread(
        target=lambda: done.append(save_image(img(), tmp_path, ctx=make_ctx(), options=opts()).path)
    )
    saver.start()
    saver.join(timeout=0.3)
    assert saver.is_alive() and done == []
    lock.unlink()
    saver.join(timeout=10)
    assert [p.name for p in done] == ["00000-1234567890.png"]


def test_stale_lock_from_a_crashed_saver_is_removed(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_NAME
    lock.write_bytes(b"")
    os.utime(lock, (0, 0))
    assert save_image(img(), tmp_path, ctx=make_ctx(), options=opts()).path.name == "00000-1234567890.png"
    assert not lock.exists()


def test_same_pattern_in_eight_threads_without_numbers(tmp_path: Path) -> None:
    barrier = threading.Barrier(8)
    results: list[str] = []

    def worker() -> None:
        barrier.wait()
        results.append(
            save_image(img(), tmp_path, ctx=make_ctx(), options=opts(save_images_add_number=False)).path.name
        )

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(["1234567890.png"] + [f"1234567890-{n}.png" for n in range(1, 8)])


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_saved_formats_carry_the_infotext(tmp_path: Path, fmt: str) -> None:
    infotext = "a fox\nNegative prompt: blur\nSteps: 20, Sampler: Euler, Seed: 1"
    saved = save_image(img(), tmp_path, ctx=make_ctx(), options=opts(samples_format=fmt), infotext=infotext)
    assert saved.path.suffix == f".{fmt}" and saved.txt_path is None
    with Image.open(saved.path) as reopened:
        assert reopened.format == {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[fmt]
        assert read_info_from_image(reopened).parameters == infotext


def test_save_txt_writes_infotext_beside_the_image(tmp_path: Path) -> None:
    saved = save_image(img(), tmp_path, ctx=make_ctx(), options=opts(save_txt=True), infotext="p\nSteps: 1")
    assert saved.txt_path == saved.path.with_suffix(".txt")
    assert saved.txt_path.read_text(encoding="utf-8") == "p\nSteps: 1\n"


def test_enable_pnginfo_off(tmp_path: Path) -> None:
    saved = save_image(img(), tmp_path, ctx=make_ctx(), options=opts(enable_pnginfo=False), infotext="secret")
    with Image.open(saved.path) as reopened:
        assert read_info_from_image(reopened).parameters is None


@pytest.mark.parametrize(("fmt", "size"), [("webp", (16384, 1)), ("jpg", (65536, 1))])
def test_too_large_for_format_falls_back_to_png(tmp_path: Path, fmt: str, size: tuple[int, int]) -> None:
    saved = save_image(img(size=size), tmp_path, ctx=make_ctx(), options=opts(samples_format=fmt), infotext="big")
    assert saved.path.suffix == ".png"
    with Image.open(saved.path) as reopened:
        assert reopened.format == "PNG" and reopened.size == size


def test_webp_at_the_limit_stays_webp(tmp_path: Path) -> None:
    saved = save_image(img(size=(16383, 1)), tmp_path, ctx=make_ctx(), options=opts(samples_format="webp"))
    assert saved.path.suffix == ".webp"


def test_long_names_fit_the_filesystem(tmp_path: Path) -> None:
    o = opts(samples_filename_pattern="[prompt]-[prompt]-[prompt]")
    saved = save_image(img(), tmp_path, ctx=make_ctx(prompt="ü" * 300), options=o)
    assert len(saved.path.name.encode()) <= 255 and saved.path.name.endswith(".png")
    assert saved.path.name.startswith("00000-üüü")


def test_suffix_and_slashes_in_pattern(tmp_path: Path) -> None:
    o = opts(samples_filename_pattern="[seed]/x")
    saved = save_image(img(), tmp_path, ctx=make_ctx(), options=o, suffix="-before-highres-fix")
    assert saved.path.parent == tmp_path and saved.path.name == "00000-1234567890_x-before-highres-fix.png"


def test_saving_options_from_settings() -> None:
    defaults = {key: info.default for key, info in core_registry().options.items()}
    o = SavingOptions.from_settings({**defaults, "samples_format": "webp"}, filenames_max_length=64)
    assert o.samples_format == "webp" and o.save_to_dirs is True and o.directories_filename_pattern == "[date]"
    assert o.jpeg_quality == 80 and o.filenames_max_length == 64 and o.sanitizer.max_length == 64


def test_write_params_txt(tmp_path: Path) -> None:
    path = tmp_path / "params.txt"
    write_params_txt(path, "first")
    write_params_txt(path, "second\nSteps: 2")
    assert path.read_text(encoding="utf-8") == "second\nSteps: 2"
    assert os.listdir(tmp_path) == ["params.txt"]


# --- grids ----------------------------------------------------------------------------------

# n -> (cols, rows): auto layout round(sqrt(n)) rows, and with prevent_empty_spots
AUTO = {1: (1, 1), 2: (2, 1), 3: (2, 2), 4: (2, 2), 5: (3, 2), 6: (3, 2), 7: (3, 3), 8: (3, 3), 9: (3, 3)}
NO_EMPTY = {1: (1, 1), 2: (2, 1), 3: (3, 1), 4: (2, 2), 5: (5, 1), 6: (3, 2), 7: (7, 1), 8: (4, 2), 9: (3, 3)}


@pytest.mark.parametrize("n", range(1, 10))
def test_grid_layout(n: int) -> None:
    tiles = [Image.new("RGB", (10, 8), (i * 20, 0, 0)) for i in range(n)]
    cols, rows = AUTO[n]
    grid = image_grid(tiles)
    assert grid.size == (cols * 10, rows * 8)
    assert grid.getpixel(((n - 1) % cols * 10, (n - 1) // cols * 8)) == ((n - 1) * 20, 0, 0)
    cols, rows = NO_EMPTY[n]
    assert image_grid(tiles, prevent_empty_spots=True).size == (cols * 10, rows * 8)


def test_grid_row_settings() -> None:
    assert grid_rows(6, n_rows=0, batch_size=3) == 3
    assert grid_rows(6, n_rows=4) == 4
    assert grid_rows(2, n_rows=5) == 2  # never more rows than images
    assert image_grid([img()] * 3, rows=1).size == (48, 16)
    with pytest.raises(ValueError, match="at least one image"):
        image_grid([])
