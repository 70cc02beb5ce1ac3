"""Card actions of the extra networks panel: edit a card's user metadata (`<file>.json`, A1111's
format), replace its preview with the selected output image, and switch checkpoint from a card.

The page's JavaScript (javascript/extraNetworks.js) hands the action over as JSON through the
hidden `<tab>_extra_action` box and clicks `<tab>_extra_action_button`. The file is always looked
up again among the listed cards by page and name: a path never comes from the browser.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.blocks import Block
from PIL import Image

from modules.access.policy import AccessDenied, Caller
from modules.core.options import OptionError, atomic_write_text
from modules.models.errors import ModelError
from modules.networks.catalogue import PREVIEW_EXTENSIONS, find_preview
from modules.ui.common import UiContext, caller_of_gradio, error_html
from modules.ui.extra_networks import CardData, ExtraNetworksPanel
from modules.ui.outputs import OutputPanel, gallery_paths

log = logging.getLogger(__name__)

CHECKPOINT_KEY = "sd_model_checkpoint"
LORA_FIELDS = ("activation text", "preferred weight", "negative text")
ACTIONS = ("edit", "preview", "checkpoint")


class CardActionError(ValueError):
    """A card action that cannot be done; the message is shown to the user."""


@dataclass
class MetadataEditor:
    group: gr.Group
    title: gr.HTML
    target: gr.Textbox  # hidden JSON {"page", "name"} of the card being edited
    description: gr.Textbox
    activation_text: gr.Textbox
    preferred_weight: gr.Slider
    negative_text: gr.Textbox
    notes: gr.Textbox
    status: gr.HTML

    @property
    def lora_only(self) -> list[Block]:
        return [self.activation_text, self.preferred_weight, self.negative_text]


# --- files ---------------------------------------------------------------------------------------


def user_metadata_file(path: Path) -> Path:
    return path.with_suffix(".json")


def save_user_metadata(path: Path, updates: Mapping[str, Any]) -> Path:
    """Merge `updates` into `<file>.json`, keeping keys other tools wrote; returns the JSON file."""
    file = user_metadata_file(path)
    data: dict[str, Any] = {}
    if file.is_file():
        try:
            loaded = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CardActionError(f"{file.name} is unreadable, not overwriting it: {exc}") from exc
        if isinstance(loaded, dict):
            data = loaded
    data.update(updates)
    atomic_write_text(file, json.dumps(data, indent=4, ensure_ascii=False))
    return file


def preview_file(path: Path) -> Path:
    """Where a new preview goes: over the preview the card shows now, else `<base>.preview.png`."""
    base = path.with_suffix("") if path.is_file() else path
    return find_preview(base) or Path(f"{base}.preview.png")


def save_preview(path: Path, image_file: Path) -> Path:
    target = preview_file(path)
    ext = target.suffix.lower().lstrip(".")
    if ext not in PREVIEW_EXTENSIONS:
        raise CardActionError(f"cannot write a preview as {target.name}")
    with Image.open(image_file) as image:
        converted = image.convert("RGBA" if ext in ("png", "webp") else "RGB")
    tmp = target.with_name(target.name + ".tmp")
    converted.save(tmp, format="JPEG" if ext in ("jpg", "jpeg") else ext.upper())
    tmp.replace(target)
    return target


def selected_image(gallery: Any, index: Any) -> Path:
    paths = gallery_paths(gallery)
    if not paths:
        raise CardActionError("Generate an image first: the preview is taken from the output gallery.")
    position = int(index) if isinstance(index, (int, float)) and index >= 0 else (0 if len(paths) == 1 else -1)
    if not 0 <= position < len(paths):
        raise CardActionError("Select the image to use in the output gallery first.")
    return Path(paths[position])


# --- actions -------------------------------------------------------------------------------------


def parse_action(text: str | None) -> dict[str, str]:
    try:
        data = json.loads(text or "")
    except json.JSONDecodeError as exc:
        raise CardActionError("unreadable card action") from exc
    if not isinstance(data, dict) or data.get("action") not in ACTIONS:
        raise CardActionError("unknown card action")
    return {k: str(data.get(k) or "") for k in ("action", "page", "name")}


def find_card(ctx: UiContext, panel: ExtraNetworksPanel, page: str, name: str) -> CardData:
    if page not in {p for p, _ in panel.pages}:
        raise CardActionError(f"unknown page {page!r}")
    card = next((c for c in panel.cards(ctx, page) if c.name == name), None)
    if card is None:
        raise CardActionError(f"{name!r} is not listed any more: press refresh")
    return card


def editable_card(ctx: UiContext, panel: ExtraNetworksPanel, page: str, name: str) -> CardData:
    card = find_card(ctx, panel, page, name)
    if not card.editable:
        raise CardActionError(f"{name} ships with the web UI and cannot be changed")
    return card


def metadata_updates(page: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON keys the editor writes for a card on `page` (LoRA-only keys only for LoRA)."""
    updates: dict[str, Any] = {
        "description": str(values.get("description") or ""),
        "notes": str(values.get("notes") or ""),
    }
    if page == "lora":
        weight = float(values.get("preferred weight") or 0.0)
        updates.update(
            {
                "activation text": str(values.get("activation text") or ""),
                "preferred weight": weight,
                "negative text": str(values.get("negative text") or ""),
            }
        )
    return updates


def _ok_html(message: str) -> str:
    return f'<div class="extra-network-status">{html.escape(message)}</div>'


# --- UI ------------------------------------------------------------------------------------------


def build_metadata_editor(ctx: UiContext, panel: ExtraNetworksPanel) -> MetadataEditor:
    tab = panel.tab
    status = gr.HTML(elem_id=f"{tab}_extra_status")
    with gr.Group(visible=False, elem_id=f"{tab}_extra_metadata_editor") as group:
        title = gr.HTML()
        target = gr.Textbox(visible="hidden", elem_id=f"{tab}_extra_metadata_target")
        description = gr.Textbox(label="Description", lines=2, elem_id=f"{tab}_extra_edit_description")
        with gr.Row():
            activation = gr.Textbox(label="Activation text", elem_id=f"{tab}_extra_edit_activation_text")
            weight = gr.Slider(
                0.0, 2.0, value=0.0, step=0.1, label="Preferred weight", elem_id=f"{tab}_extra_edit_weight"
            )
        negative = gr.Textbox(label="Negative prompt", elem_id=f"{tab}_extra_edit_negative_text")
        notes = gr.Textbox(label="Notes", lines=3, elem_id=f"{tab}_extra_edit_notes")
        with gr.Row():
            save = gr.Button("Save", variant="primary", elem_id=f"{tab}_extra_edit_save")
            cancel = gr.Button("Cancel", elem_id=f"{tab}_extra_edit_cancel")
    editor = MetadataEditor(group, title, target, description, activation, weight, negative, notes, status)
    _wire_editor(ctx, panel, editor, save, cancel)
    panel.editor = editor
    return editor


def _wire_editor(
    ctx: UiContext, panel: ExtraNetworksPanel, editor: MetadataEditor, save: gr.Button, cancel: gr.Button
) -> None:
    def store(
        target: str, description: str, activation: str, weight: float, negative: str, notes: str, query: str, order: str
    ) -> dict[Block, Any]:
        try:
            ref = json.loads(target or "{}")
            card = editable_card(ctx, panel, str(ref.get("page")), str(ref.get("name")))
            values = {
                "description": description,
                "activation text": activation,
                "preferred weight": weight,
                "negative text": negative,
                "notes": notes,
            }
            file = save_user_metadata(card.path, metadata_updates(str(ref.get("page")), values))
        except (CardActionError, OSError, ValueError) as exc:
            return {editor.status: error_html(str(exc))}
        pages = panel.render(ctx, query, order, rescan=True)
        return {
            editor.status: _ok_html(f"Saved {file.name}"),
            editor.group: gr.update(visible=False),
            **dict(zip(panel.page_outputs, pages, strict=True)),
        }

    save.click(
        store,
        inputs=[
            editor.target,
            editor.description,
            editor.activation_text,
            editor.preferred_weight,
            editor.negative_text,
            editor.notes,
            panel.search,
            panel.sort,
        ],
        outputs=[editor.status, editor.group, *panel.page_outputs],
    )
    cancel.click(lambda: gr.update(visible=False), outputs=[editor.group], queue=False)


def wire_card_actions(ctx: UiContext, quick: Mapping[str, Block]) -> None:
    """Wire every tab's hidden action button, now that the output panels and quicksettings exist."""
    for tab, panel in ctx.targets.extra_networks.items():
        output = next((p for p in ctx.output_panels if p.tab == tab), None)
        _wire_actions(ctx, panel, output, quick.get(CHECKPOINT_KEY))


def _wire_actions(
    ctx: UiContext, panel: ExtraNetworksPanel, output: OutputPanel | None, checkpoint: Block | None
) -> None:
    editor: MetadataEditor = panel.editor
    fields = [
        editor.description,
        editor.activation_text,
        editor.preferred_weight,
        editor.negative_text,
        editor.notes,
    ]
    outputs: list[Block] = [editor.status, editor.group, editor.title, editor.target, *fields]
    outputs += [*editor.lora_only, *panel.page_outputs] + ([checkpoint] if checkpoint is not None else [])
    outputs = list(dict.fromkeys(outputs))
    extra_inputs = [output.gallery, output.selected] if output is not None else []

    def act(
        text: str, query: str, order: str, gallery: Any = None, selected: Any = None, request: gr.Request | None = None
    ) -> dict[Block, Any]:
        try:
            action = parse_action(text)
            if action["action"] == "edit":
                return _open_editor(ctx, panel, editor, action)
            if action["action"] == "preview":
                card = editable_card(ctx, panel, action["page"], action["name"])
                if output is None:
                    raise CardActionError("this tab has no output gallery")
                written = save_preview(card.path, selected_image(gallery, selected))
                pages = panel.render(ctx, query, order, rescan=True)
                return {
                    editor.status: _ok_html(f"Preview saved as {written.name}"),
                    **dict(zip(panel.page_outputs, pages, strict=True)),
                }
            return _switch_checkpoint(ctx, panel, editor, action, checkpoint, caller_of_gradio(request))
        except (CardActionError, OSError, OptionError, KeyError, AccessDenied, ModelError) as exc:
            return {editor.status: error_html(str(exc))}

    panel.trigger.click(
        act,
        inputs=[panel.action, panel.search, panel.sort, *extra_inputs],
        outputs=outputs,
        js="(action, ...rest) => [window.extraNetworksPendingAction || '', ...rest]",
        # the action text comes from the page script, not from the hidden box
        show_progress="hidden",
    )


def _open_editor(
    ctx: UiContext, panel: ExtraNetworksPanel, editor: MetadataEditor, action: Mapping[str, str]
) -> dict[Block, Any]:
    card = editable_card(ctx, panel, action["page"], action["name"])
    meta = card.card.user_metadata
    is_lora = action["page"] == "lora"
    title = f"<h3>{html.escape(card.name)}</h3><p>{html.escape(card.path.name)}</p>"
    return {
        editor.status: "",
        editor.group: gr.update(visible=True),
        editor.title: title,
        editor.target: json.dumps({"page": action["page"], "name": card.name}),
        editor.description: str(meta.get("description", card.card.description) or ""),
        editor.notes: str(meta.get("notes") or ""),
        editor.activation_text: gr.update(value=str(meta.get("activation text") or ""), visible=is_lora),
        editor.preferred_weight: gr.update(value=float(meta.get("preferred weight") or 0.0), visible=is_lora),
        editor.negative_text: gr.update(value=str(meta.get("negative text") or ""), visible=is_lora),
    }


def _switch_checkpoint(
    ctx: UiContext,
    panel: ExtraNetworksPanel,
    editor: MetadataEditor,
    action: Mapping[str, str],
    checkpoint: Block | None,
    caller: Caller,
) -> dict[Block, Any]:
    card = find_card(ctx, panel, "checkpoints", action["name"])
    ctx.services.models.find_checkpoint(card.checkpoint)  # KeyError if it is gone
    if checkpoint is not None:  # the quicksettings dropdown loads it in the background
        return {checkpoint: gr.update(value=card.checkpoint), editor.status: ""}
    ctx.services.settings.apply(caller, {CHECKPOINT_KEY: card.checkpoint})  # the admin rule, load, then store
    log.info("checkpoint %s chosen from its card by %s", card.checkpoint, caller.user or "local user")
    return {editor.status: _ok_html(f"Checkpoint: {card.checkpoint}")}
