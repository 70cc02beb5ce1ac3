"""Train tab building blocks without a model: learning-rate schedules, templates, prompt texts,
dataset checks and batching, request models, the files training writes (A1111 keys), preprocessing."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from modules.app.bootstrap import build_services
from modules.core.cmd_args import parse_args
from modules.core.devices import DevicePolicy
from modules.models.safe_load import load_pickle
from modules.networks.embeddings import read_embedding
from modules.networks.hypernetworks import load_hypernetwork
from modules.train.create import create_hypernetwork_file
from modules.train.dataset import CaptionRules, DatasetEntry, TextRules, TrainingDataset, scan_dataset
from modules.train.errors import DatasetError, TrainingError
from modules.train.files import (
    EmbeddingMeta,
    embedding_checksum,
    load_optimizer_state,
    read_embedding_for_training,
    sanitize_name,
    save_embedding,
    save_optimizer_state,
)
from modules.train.preprocess import (
    autosized_crop_size,
    crop_and_resize,
    flipped_copies,
    make_caption,
    preprocess_folder,
    split_oversized,
)
from modules.train.requests import (
    CreateHypernetworkRequest,
    PreprocessRequest,
    TrainEmbeddingRequest,
    TrainHypernetworkRequest,
)
from modules.train.schedule import RateSegment, ScheduleCursor, parse_schedule
from modules.train.templates import DEFAULT_TEMPLATES_DIR, list_templates, read_template

# --- learning-rate schedule -----------------------------------------------------------------


def test_schedule_plain_number_runs_to_max_steps() -> None:
    assert parse_schedule("0.005", 300) == (RateSegment(0.005, 300),)


def test_schedule_pairs_cut_at_max_steps() -> None:
    assert parse_schedule("0.005:100, 1e-3:1000, 1e-5", 2000) == (
        RateSegment(0.005, 100),
        RateSegment(0.001, 1000),
        RateSegment(1e-5, 2000),
    )
    # an end beyond max steps is cut to max steps and ends the list
    assert parse_schedule("0.005:100, 1e-3:1000, 1e-5", 500) == (RateSegment(0.005, 100), RateSegment(0.001, 500))
    assert parse_schedule("0.01:-1, 0.5:10", 40) == (RateSegment(0.01, 40),)


def test_schedule_on_resume_drops_passed_entries() -> None:
    assert parse_schedule("0.005:100, 1e-3:1000", 2000, current_step=100) == (RateSegment(0.001, 1000),)
    with pytest.raises(TrainingError, match="nothing left to do after step 1000"):
        parse_schedule("0.005:100, 1e-3:1000", 2000, current_step=1000)


@pytest.mark.parametrize("text", ["", "  ", "abc", "0.1:x", "0.1:10:20", "-0.5", "nan", "0.1:10,, fast"])
def test_bad_schedules_are_clear_errors(text: str) -> None:
    with pytest.raises(TrainingError, match="learning rate"):
        parse_schedule(text, 100)


def test_cursor_moves_through_segments_and_finishes() -> None:
    cursor = ScheduleCursor(parse_schedule("0.1:2, 0.01:4", 10))
    rates = []
    for step in range(1, 6):
        cursor.advance(step)
        rates.append((step, cursor.rate, cursor.finished))
    assert rates == [(1, 0.1, False), (2, 0.01, False), (3, 0.01, False), (4, 0.01, True), (5, 0.01, True)]


# --- templates and prompt texts -------------------------------------------------------------


def test_shipped_templates_exist_and_use_the_placeholders() -> None:
    names = set(list_templates(DEFAULT_TEMPLATES_DIR))
    expected = {"none.txt", "style.txt", "style_filewords.txt", "subject.txt", "subject_filewords.txt"}
    assert expected | {"hypernetwork.txt"} <= names
    for name in ("style.txt", "subject.txt"):
        assert all("[name]" in line for line in read_template(DEFAULT_TEMPLATES_DIR, name))
    for name in ("style_filewords.txt", "subject_filewords.txt"):
        assert all("[name]" in line and "[filewords]" in line for line in read_template(DEFAULT_TEMPLATES_DIR, name))
    assert read_template(DEFAULT_TEMPLATES_DIR, "none.txt") == ["picture"]


def test_template_errors(tmp_path: Path) -> None:
    (tmp_path / "blank.txt").write_text("\n  \n", encoding="utf-8")
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9 [name]")
    with pytest.raises(TrainingError, match="not found"):
        read_template(tmp_path, "missing.txt")
    with pytest.raises(TrainingError, match="no prompt lines"):
        read_template(tmp_path, "blank.txt")
    with pytest.raises(TrainingError, match="cannot be read"):
        read_template(tmp_path, "latin.txt")
    with pytest.raises(TrainingError, match="no prompt template"):
        read_template(tmp_path, "")


def test_text_fills_name_and_filewords() -> None:
    rules = TextRules(("a photo of [name], [filewords]",), "mycat")
    assert rules.create("red, fluffy, small", random.Random(0)) == "a photo of mycat, red, fluffy, small"
    assert not rules.varies


def test_tag_shuffle_and_dropout() -> None:
    tags = ",".join(f"t{i}" for i in range(20))
    shuffled = TextRules(("[filewords]",), "n", shuffle_tags=True)
    out = shuffled.create(tags, random.Random(3))
    assert sorted(out.split(",")) == sorted(tags.split(",")) and out != tags
    dropped = TextRules(("[filewords]",), "n", tag_drop_out=0.5).create(tags, random.Random(3))
    kept = dropped.split(",")
    assert 0 < len(kept) < 20 and kept == [t for t in tags.split(",") if t in kept]  # order kept
    assert TextRules(("[filewords]",), "n", tag_drop_out=1.0).create(tags, random.Random(1)) == ""


def test_filewords_from_file_names() -> None:
    assert CaptionRules().filewords("00012-3-a red cat.png") == "a red cat"
    words = CaptionRules(word_regex=r"[a-z]+", join_string="_")
    assert words.filewords("12-a red-cat!.jpg") == "a_red_cat"
    with pytest.raises(DatasetError, match="regex"):
        CaptionRules(word_regex="(").filewords("x.png")


# --- dataset checks ---------------------------------------------------------------------------


def _image(path: Path, color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (16, 16)) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


def test_scan_reads_captions_and_reports_skipped_files(tmp_path: Path) -> None:
    _image(tmp_path / "01-red square.png")
    _image(tmp_path / "b.jpg")
    (tmp_path / "b.txt").write_text("blue, square\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not an image", encoding="utf-8")
    (tmp_path / ".DS_Store").write_bytes(b"\0\1")
    scan = scan_dataset(tmp_path, CaptionRules())
    assert [(i.path.name, i.filewords, i.size) for i in scan.images] == [
        ("01-red square.png", "red square", (16, 16)),
        ("b.jpg", "blue, square", (16, 16)),
    ]
    assert [p.name for p in scan.skipped] == ["notes.md"]
    assert "notes.md" in scan.warnings[0]


def test_bad_datasets_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no dataset directory"):
        scan_dataset("", CaptionRules())
    with pytest.raises(DatasetError, match="doesn't exist"):
        scan_dataset(tmp_path / "nope", CaptionRules())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="is empty"):
        scan_dataset(empty, CaptionRules())
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.doc").write_bytes(b"word")
    (texts / "b.csv").write_text("1,2", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"no images found .*2 file\(s\), none of them an image \(a.doc; b.csv\)"):
        scan_dataset(texts, CaptionRules())


def test_broken_images_and_unreadable_captions_are_named(tmp_path: Path) -> None:
    _image(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _image(tmp_path / "latin.png")
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9, cr\xe8me")
    with pytest.raises(DatasetError) as info:
        scan_dataset(tmp_path, CaptionRules())
    message = str(info.value)
    assert "1 image file(s) cannot be read: broken.png" in message
    assert "1 caption file(s) cannot be read: latin.txt (not UTF-8 text" in message


def _dataset(sizes: list[tuple[int, int]], batch_size: int, gradient_step: int = 1) -> TrainingDataset:
    entries = [DatasetEntry(i, Path(f"{i}.png"), "", size, torch.zeros(4, 1, 1)) for i, size in enumerate(sizes)]
    return TrainingDataset(entries, TextRules(("x",), "n"), batch_size, gradient_step, "once")


def test_epoch_batches_come_from_one_size_bucket() -> None:
    sizes = [(64, 64)] * 5 + [(64, 96)] * 3
    dataset = _dataset(sizes, batch_size=2)
    for seed in range(5):
        batches = dataset.epoch(random.Random(seed))
        assert len(batches) == 4
        for batch in batches:
            assert len(batch) == 2 and len({sizes[i] for i in batch}) == 1
    assert dataset.steps_per_epoch == 4 and dataset.batches_used_per_epoch == 4


def test_epoch_length_with_gradient_accumulation() -> None:
    dataset = _dataset([(64, 64)] * 7, batch_size=2, gradient_step=2)
    assert dataset.steps_per_epoch == 1  # 7 // 2 // 2
    assert dataset.batches_used_per_epoch == 2  # 3 batches, the third cannot complete a step
    batches = dataset.epoch(random.Random(0))
    assert len(batches) == 3 and all(len(b) == 2 for b in batches)


# --- requests -------------------------------------------------------------------------------


def test_train_request_accepts_a1111_api_bodies() -> None:
    body = {
        "id_task": "task(abc)",
        "embedding_name": "cat",
        "learn_rate": 0.005,
        "batch_size": 2,
        "gradient_step": 1,
        "data_root": "/data",
        "log_directory": "textual_inversion",
        "training_width": 512,
        "training_height": 512,
        "varsize": False,
        "steps": 100,
        "clip_grad_mode": "Norm",
        "clip_grad_value": 0.1,
        "shuffle_tags": True,
        "tag_drop_out": 0.1,
        "latent_sampling_method": "deterministic",
        "use_weight": False,
        "create_image_every": 50,
        "save_embedding_every": 25,
        "template_filename": "subject.txt",
        "save_image_with_stored_embedding": True,
        "preview_from_txt2img": False,
        "preview_prompt": "",
        "preview_negative_prompt": "",
        "preview_steps": 20,
        "preview_sampler_name": "Euler a",
        "preview_cfg_scale": 7,
        "preview_seed": -1,
        "preview_width": 512,
        "preview_height": 512,
        "some_future_field": 1,
    }
    req = TrainEmbeddingRequest.model_validate(body)
    assert (req.learn_rate, req.clip_grad_value, req.clip_grad_mode) == ("0.005", "0.1", "norm")
    assert req.name == "cat" and req.save_every == 25
    hn = TrainHypernetworkRequest.model_validate({"hypernetwork_name": "net(abcd1234)", "save_hypernetwork_every": 5})
    assert hn.name == "net" and hn.learn_rate == "0.00001" and hn.save_every == 5
    with pytest.raises(ValidationError):
        TrainEmbeddingRequest.model_validate({"embedding_name": "x", "latent_sampling_method": "sometimes"})
    with pytest.raises(ValidationError):
        TrainEmbeddingRequest.model_validate({"embedding_name": "x", "batch_size": 0})


def test_create_hypernetwork_request_parses_ui_text() -> None:
    req = CreateHypernetworkRequest.model_validate(
        {
            "name": "n",
            "enable_sizes": ["768", "320", "768"],
            "layer_structure": "1, 1.5, 1",
            "dropout_structure": "0,0.1,0",
        }
    )
    assert req.enable_sizes == [768, 320] and req.layer_structure == [1.0, 1.5, 1.0]
    assert req.dropout_structure == [0.0, 0.1, 0.0]
    with pytest.raises(ValidationError, match="weight initialization"):
        CreateHypernetworkRequest(name="n", weight_init="Zeros")
    with pytest.raises(ValidationError, match="comma-separated"):
        CreateHypernetworkRequest.model_validate({"name": "n", "layer_structure": "1, two, 1"})


# --- files ----------------------------------------------------------------------------------


def test_names_are_sanitized_like_a1111() -> None:
    assert sanitize_name("my cat_v1.2-b") == "my cat_v1.2-b"
    assert sanitize_name("../../scripts/evil<>.py") == "....scriptsevil.py"
    for bad in ("", "///", "..", " "):
        with pytest.raises(TrainingError, match="no usable characters"):
            sanitize_name(bad)


def test_embedding_file_has_a1111_keys_and_loads(tmp_path: Path) -> None:
    vectors = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    path = save_embedding(tmp_path / "e.pt", vectors, EmbeddingMeta("e", 7, "abcdef1234", "model"))
    data = load_pickle(path)
    assert set(data) == {"string_to_token", "string_to_param", "name", "step", "sd_checkpoint", "sd_checkpoint_name"}
    assert data["string_to_token"] == {"*": 265} and data["step"] == 7 and data["name"] == "e"
    assert torch.equal(data["string_to_param"]["*"], vectors)
    loaded = read_embedding(path)
    assert loaded is not None and torch.equal(loaded.vectors, vectors) and loaded.step == 7  # type: ignore[arg-type]
    assert not list(tmp_path.glob("*.tmp"))


def test_sdxl_embedding_file_keeps_step_in_metadata(tmp_path: Path) -> None:
    parts = {"clip_l": torch.ones(2, 32), "clip_g": torch.zeros(2, 64)}
    path = save_embedding(tmp_path / "x.safetensors", parts, EmbeddingMeta("x", 12))
    stored = read_embedding_for_training(path)
    assert stored.step == 12 and set(stored.file.vectors) == {"clip_l", "clip_g"}  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\.safetensors"):
        save_embedding(tmp_path / "x.pt", parts, EmbeddingMeta("x"))


def test_optimizer_state_is_used_only_with_matching_hash(tmp_path: Path) -> None:
    vectors = torch.tensor([[0.5, -1.25], [3.0, 0.01]])
    assert embedding_checksum(vectors) == "4bdc"  # A1111: const_hash(int(v * 100) for v) & 0xffff
    assert embedding_checksum(vectors) != embedding_checksum(vectors + 1)
    path = tmp_path / "e.pt"
    save_optimizer_state(path, embedding_checksum(vectors), {"state": {}, "param_groups": []})
    assert load_optimizer_state(path, embedding_checksum(vectors)) == {"state": {}, "param_groups": []}
    assert load_optimizer_state(path, "ffff") is None


def test_created_hypernetwork_has_a1111_layout(tmp_path: Path) -> None:
    req = CreateHypernetworkRequest(
        name="net",
        enable_sizes=[32, 64],
        layer_structure=[1, 2, 1],
        activation_func="relu",
        add_layer_norm=True,
        seed=3,
    )
    result = create_hypernetwork_file(req, tmp_path)
    assert (
        result.filename == tmp_path / "net.pt" and result.info == f"create hypernetwork filename: {tmp_path / 'net.pt'}"
    )
    data = load_pickle(result.filename)
    assert {k for k in data if isinstance(k, int)} == {32, 64}
    k_state = data[32][0]
    assert list(k_state) == [
        "linear.0.weight", "linear.0.bias", "linear.2.weight", "linear.2.bias",
        "linear.3.weight", "linear.3.bias", "linear.4.weight", "linear.4.bias",
    ]  # fmt: skip
    assert k_state["linear.0.weight"].shape == (64, 32) and float(k_state["linear.0.bias"].abs().max()) == 0.0
    assert 0.005 < float(k_state["linear.0.weight"].std()) < 0.015  # Normal init: N(0, 0.01)
    assert data["step"] == 0 and data["name"] == "net" and data["layer_structure"] == [1.0, 2.0, 1.0]
    assert data["activation_func"] == "relu" and data["is_layer_norm"] is True
    assert data["weight_initialization"] == "Normal" and data["dropout_structure"] == [0.0, 0.0, 0.0]
    assert data["use_dropout"] is False and data["last_layer_dropout"] is False and data["activate_output"] is False
    assert {"sd_checkpoint", "sd_checkpoint_name", "optional_info"} <= set(data)
    net = load_hypernetwork(result.filename)
    assert net.widths == [32, 64] and net.step == 0
    with pytest.raises(TrainingError, match="already exists"):
        create_hypernetwork_file(req, tmp_path)
    create_hypernetwork_file(req.model_copy(update={"overwrite_old": True}), tmp_path)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"layer_structure": [2, 1]}, "start and end with 1"),
        ({"use_dropout": True, "dropout_structure": [0, 0.5]}, "as many entries"),
        ({"use_dropout": True, "dropout_structure": [0, 1.5, 0]}, r"values in \[0, 1\)"),
        ({"activation_func": "wobbly"}, "unknown activation function 'wobbly'"),
        ({"name": "None"}, "reserved"),
    ],
)
def test_bad_hypernetwork_settings_write_nothing(tmp_path: Path, fields: dict[str, object], message: str) -> None:
    req = CreateHypernetworkRequest.model_validate({"name": "bad", "enable_sizes": [32], **fields})
    with pytest.raises(TrainingError, match=message):
        create_hypernetwork_file(req, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("weight_init", ["XavierUniform", "XavierNormal", "KaimingUniform", "KaimingNormal"])
def test_weight_inits_give_zero_biases_and_wider_weights(tmp_path: Path, weight_init: str) -> None:
    req = CreateHypernetworkRequest(name="w", enable_sizes=[64], weight_init=weight_init, seed=1)
    data = load_pickle(create_hypernetwork_file(req, tmp_path).filename)
    weight, bias = data[64][1]["linear.0.weight"], data[64][1]["linear.0.bias"]
    assert float(bias.abs().max()) == 0.0 and float(weight.std()) > 0.05


# --- preprocessing --------------------------------------------------------------------------


def test_crop_and_resize_fills_the_target() -> None:
    wide = Image.new("RGB", (200, 100), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 30, 100))  # blue strip on the left is cut away
    out = crop_and_resize(wide, 64, 64)
    assert out.size == (64, 64) and out.getpixel((0, 32)) == (255, 0, 0)


def test_autosized_crop_size_rules() -> None:
    def crop(size: tuple[int, int], objective: str = "Maximize area") -> tuple[int, int] | None:
        return autosized_crop_size(
            size, mindim=384, maxdim=768, minarea=64 * 64, maxarea=640 * 640, objective=objective
        )

    assert crop((1000, 1000)) == (640, 640)
    assert crop((1400, 1000)) == (768, 512)  # largest area, error 0.067
    assert crop((1400, 1000), "Minimize error") == (704, 512)  # error 0.018
    assert crop((4000, 500)) is None


def test_split_oversized_tiles_long_images() -> None:
    tall = Image.new("RGB", (100, 500))
    tiles = split_oversized(tall, 64, 64, threshold=0.5, overlap=0.2)
    assert tiles is not None and len(tiles) == 6 and all(t.size == (64, 64) for t in tiles)
    wide = split_oversized(Image.new("RGB", (500, 100)), 64, 64)
    assert wide is not None and all(t.size == (64, 64) for t in wide)
    assert split_oversized(Image.new("RGB", (100, 120)), 64, 64) is None


def test_flips_and_captions() -> None:
    image = Image.new("RGB", (4, 2))
    image.putpixel((0, 0), (255, 255, 255))
    h, v, both = flipped_copies(image, ["Horizontal", "Vertical", "Both"])
    assert h.getpixel((3, 0)) == v.getpixel((0, 1)) == both.getpixel((3, 1)) == (255, 255, 255)
    assert make_caption("ignore", "old", "new") == "new"
    assert make_caption("copy", "old", "new") == "old"
    assert make_caption("prepend", "old", "new") == "old new"
    assert make_caption("append", "old", "new") == "new old"
    assert make_caption("append", None, "new") == "new"


def test_preprocess_folder_writes_images_and_captions(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    _image(src / "01-red cat.png", size=(120, 80))
    _image(src / "tall.png", size=(60, 300))
    (src / "tall.txt").write_text("a tall thing", encoding="utf-8")
    (src / "readme.md").write_text("hi", encoding="utf-8")
    req = PreprocessRequest(
        process_src=str(src), process_dst=str(dst), process_width=64, process_height=64,
        process_flip=True, process_split=True, preprocess_txt_action="prepend",
    )  # fmt: skip
    result = preprocess_folder(req)
    names = sorted(p.name for p in result.written)
    assert names[:2] == ["00000-0-01-red cat.png", "00000-1-01-red cat.png"]  # image + its flipped copy
    assert all(Image.open(p).size == (64, 64) for p in result.written)
    assert (dst / "00000-0-01-red cat.txt").read_text(encoding="utf-8") == "red cat"
    tall = [p for p in result.written if "tall" in p.name]
    assert len(tall) > 4 and (dst / f"{tall[0].stem}.txt").read_text(encoding="utf-8") == "a tall thing tall"
    assert result.skipped and "readme.md" in result.skipped[0]
    with pytest.raises(TrainingError, match="not empty"):
        preprocess_folder(req)
    with pytest.raises(TrainingError, match="must differ"):
        preprocess_folder(req.model_copy(update={"process_dst": str(src), "overwrite": True}))


def test_service_reads_the_templates_flag_and_unpickle_flag(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "mine.txt").write_text("a [name]\n", encoding="utf-8")
    flags = ["--textual-inversion-templates-dir", str(templates), "--disable-safe-unpickle"]
    services = build_services(parse_args(["--data-dir", str(tmp_path / "a"), *flags]), policy=DevicePolicy.cpu())
    default = build_services(parse_args(["--data-dir", str(tmp_path / "b")]), policy=DevicePolicy.cpu())
    try:
        training = services.training
        assert training.ctx.templates_dir == templates and training.ctx.safe_unpickle is False
        assert training.template_names() == ["mine.txt"]
        assert default.training.ctx.templates_dir == DEFAULT_TEMPLATES_DIR and default.training.ctx.safe_unpickle
    finally:
        services.jobs.shutdown(timeout=5)
        default.jobs.shutdown(timeout=5)


@pytest.mark.parametrize("sizes", [[{"a": 1}], [None], ["big"], [[768]]])
def test_hypernetwork_sizes_of_the_wrong_type_are_validation_errors(sizes: list[object]) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        CreateHypernetworkRequest.model_validate({"name": "x", "enable_sizes": sizes})
