"""Extra networks panel under the prompts: cards for Textual Inversion, Hypernetworks, Checkpoints
and Lora (backend: modules.networks.catalogue and the model manager), with search, sort and refresh.
Clicking a card inserts its tag into the prompt (LoRA: `<lora:name:weight>` with the preferred weight
and activation text) or, for a checkpoint, switches to it. Each card's own buttons (edit metadata,
replace preview) are handled in modules.ui.extra_networks_edit.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from modules.core.paths import REPO_ROOT
from modules.models.checkpoints import CheckpointInfo
from modules.networks.catalogue import Card, NetworkCatalogue
from modules.ui.common import UiContext

log = logging.getLogger(__name__)

PAGES = (
    ("Textual Inversion", "textual_inversion"),
    ("Hypernetworks", "hypernetworks"),
    ("Checkpoints", "checkpoints"),
    ("Lora", "lora"),
)
SORTS = ("Name", "Date Modified")
SHIPPED_DIR = REPO_ROOT / "modules"  # files shipped with the web UI: never edited from the UI


@dataclass(frozen=True)
class CardData:
    name: str
    tag: str  # text inserted into the prompt
    negative: str  # text inserted into the negative prompt
    path: Path
    card: Card
    checkpoint: str = ""  # checkpoint cards: the title a click switches to
    editable: bool = True  # shipped files (the built-in demo model) are read-only

    @property
    def mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0


def _weight(value: float) -> str:
    return f"{value:g}"


def page_cards(
    catalogue: NetworkCatalogue, page: str, default_multiplier: float, checkpoints: Sequence[CheckpointInfo] = ()
) -> list[CardData]:
    if page == "checkpoints":
        return [
            CardData(
                c.name,
                "",
                "",
                c.filename,
                Card.for_file(c.filename),
                checkpoint=c.title,
                editable=not c.filename.is_relative_to(SHIPPED_DIR),
            )
            for c in checkpoints
        ]
    if page == "lora":
        out = []
        for info in catalogue.loras():
            weight = info.preferred_weight or default_multiplier
            tag = f"<lora:{info.alias if info.alias else info.name}:{_weight(weight)}>"
            if info.activation_text:
                tag += f" {info.activation_text}"
            out.append(CardData(info.name, tag, info.negative_text, info.path, info.card))
        return out
    if page == "hypernetworks":
        return [
            CardData(h.name, f"<hypernet:{h.name}:{_weight(default_multiplier)}>", "", h.path, h.card)
            for h in catalogue.hypernetworks()
        ]
    scan = catalogue.embeddings()
    cards = scan.cards()
    return [CardData(f.name, f.name, "", f.path, cards.get(f.name, Card())) for f in scan.files]


def _thumbnail(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        with Image.open(path) as image:
            image.thumbnail((256, 256))
            buf = io.BytesIO()
            image.convert("RGB").save(buf, format="JPEG", quality=85)
    except OSError as exc:
        log.warning("cannot read preview %s: %s", path, exc)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def cards_html(tab: str, page: str, cards: list[CardData], search: str = "", sort: str = "Name") -> str:
    query = search.strip().lower()
    shown = [c for c in cards if not query or query in c.name.lower() or query in c.card.description.lower()]
    if sort == "Date Modified":
        shown.sort(key=lambda c: c.mtime, reverse=True)
    else:
        shown.sort(key=lambda c: c.name.lower())
    if not shown:
        return f'<div class="extra-network-empty" id="{tab}_{page}_cards">Nothing here. Add files to the folder and press refresh.</div>'
    parts = []
    for c in shown:
        preview = _thumbnail(c.card.preview)
        style = f' style="background-image: url({preview})"' if preview else ""
        args = html.escape(json.dumps([tab, c.tag, c.negative]))
        checkpoint = f' data-checkpoint="{html.escape(c.checkpoint)}"' if c.checkpoint else ""
        buttons = (
            '<div class="button-row">'
            '<span class="card-button edit-button" data-action="edit" title="Edit metadata">🛠️</span>'
            '<span class="card-button preview-button" data-action="preview" '
            'title="Replace preview with the selected image">🖼️</span></div>'
            if c.editable
            else ""
        )
        parts.append(
            f'<div class="card" data-tab="{html.escape(tab)}" data-page="{page}" data-name="{html.escape(c.name)}"'
            f'{checkpoint}{style} data-args="{args}">{buttons}'
            f'<div class="actions"><span class="name">{html.escape(c.name)}</span>'
            f'<span class="description">{html.escape(c.card.description)}</span></div></div>'
        )
    return f'<div class="extra-network-cards" id="{tab}_{page}_cards">' + "".join(parts) + "</div>"


@dataclass
class ExtraNetworksPanel:
    """One tab's panel: what the card actions (modules.ui.extra_networks_edit) re-render and read."""

    tab: str
    catalogue: NetworkCatalogue
    multiplier: float
    search: gr.Textbox
    sort: gr.Dropdown
    pages: list[tuple[str, gr.HTML]]
    action: gr.Textbox  # hidden: the card action the page's JavaScript asks for (JSON)
    trigger: gr.Button  # hidden: clicked by that JavaScript
    editor: Any = None  # extra_networks_edit.MetadataEditor, set when it is built
    # pages extensions registered (modules.ui.extra_networks_pages): page id -> its cards
    extension_cards: dict[str, Callable[[], list[CardData]]] = field(default_factory=dict)
    extension_refresh: Callable[[], None] | None = None

    def cards(self, ctx: UiContext, page: str) -> list[CardData]:
        if page in self.extension_cards:
            return self.extension_cards[page]()
        return page_cards(self.catalogue, page, self.multiplier, ctx.services.models.list_checkpoints())

    def render(self, ctx: UiContext, query: str = "", order: str = "Name", rescan: bool = False) -> list[str]:
        if rescan:
            self.catalogue.refresh()
            ctx.services.models.refresh()
            if self.extension_refresh is not None:
                self.extension_refresh()
        return [
            cards_html(self.tab, page, self.cards(ctx, page), query or "", order or "Name") for page, _ in self.pages
        ]

    @property
    def page_outputs(self) -> list[gr.HTML]:
        return [component for _, component in self.pages]
