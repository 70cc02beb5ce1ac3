"""Extra network card actions without a browser: user metadata files, previews, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from modules.networks.catalogue import Card
from modules.ui.extra_networks import SHIPPED_DIR, CardData, cards_html
from modules.ui.extra_networks_edit import (
    CardActionError,
    metadata_updates,
    parse_action,
    preview_file,
    save_preview,
    save_user_metadata,
    selected_image,
)


def test_user_metadata_merges_and_keeps_other_keys(tmp_path: Path) -> None:
    lora = tmp_path / "style.safetensors"
    lora.write_bytes(b"")
    (tmp_path / "style.json").write_text(json.dumps({"sd version": "SD1", "notes": "old"}), encoding="utf-8")
    written = save_user_metadata(lora, metadata_updates("lora", {"notes": "new", "preferred weight": "0.6"}))
    data = json.loads(written.read_text(encoding="utf-8"))
    assert data == {
        "sd version": "SD1",
        "notes": "new",
        "description": "",
        "activation text": "",
        "preferred weight": 0.6,
        "negative text": "",
    }
    assert Card.for_file(lora).user_metadata["preferred weight"] == 0.6


def test_metadata_for_other_pages_has_no_lora_keys() -> None:
    assert set(metadata_updates("textual_inversion", {"description": "d"})) == {"description", "notes"}


def test_unreadable_metadata_file_is_not_overwritten(tmp_path: Path) -> None:
    lora = tmp_path / "x.safetensors"
    (tmp_path / "x.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CardActionError, match="unreadable"):
        save_user_metadata(lora, {"notes": "n"})
    assert (tmp_path / "x.json").read_text(encoding="utf-8") == "{not json"


def test_preview_replaces_the_shown_preview_or_creates_preview_png(tmp_path: Path) -> None:
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"")
    assert preview_file(model) == tmp_path / "m.preview.png"
    (tmp_path / "m.jpg").write_bytes(b"")
    assert preview_file(model) == tmp_path / "m.jpg"
    source = tmp_path / "out.png"
    Image.new("RGB", (8, 6), (200, 10, 10)).save(source)
    target = save_preview(model, source)
    with Image.open(target) as image:
        assert image.format == "JPEG" and image.size == (8, 6)
        r, g, b = image.convert("RGB").getpixel((3, 3))
        assert r > 150 and g < 60 and b < 60


def test_selected_image_needs_an_image(tmp_path: Path) -> None:
    with pytest.raises(CardActionError, match="Generate an image first"):
        selected_image([], -1)
    two = [(str(tmp_path / "a.png"), None), (str(tmp_path / "b.png"), None)]
    with pytest.raises(CardActionError, match="Select the image"):
        selected_image(two, -1)
    assert selected_image(two, 1) == tmp_path / "b.png"
    assert selected_image(two[:1], -1) == tmp_path / "a.png"


@pytest.mark.parametrize(
    "text", ["", "[]", '{"action": "delete", "page": "lora", "name": "x"}', '{"action": 1}', "not json"]
)
def test_unknown_card_actions_are_refused(text: str) -> None:
    with pytest.raises(CardActionError):
        parse_action(text)


def test_shipped_checkpoint_cards_have_no_edit_buttons(tmp_path: Path) -> None:
    user = CardData("mine", "", "", tmp_path / "mine.safetensors", Card(), checkpoint="mine [abc]")
    shipped = CardData("demo", "", "", SHIPPED_DIR / "demo.safetensors", Card(), checkpoint="demo", editable=False)
    page = cards_html("txt2img", "checkpoints", [user, shipped])
    cards = {part.split('data-name="')[1].split('"')[0]: part for part in page.split('<div class="card"')[1:]}
    mine, demo = cards["mine"], cards["demo"]
    assert "edit-button" in mine and 'data-checkpoint="mine [abc]"' in mine
    assert "edit-button" not in demo
