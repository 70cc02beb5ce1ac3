"""The "Send to <tab>" buttons extensions register (A1111's `register_paste_params_button` /
`ParamBinding`, `bind_buttons`), wired once every tab exists, as A1111's
`connect_paste_params_buttons` does: the source image goes to the target tab's image (with its
size when `send_size` is on), an infotext in the source text component is pasted into the target
tab's fields, or the prompt, negative prompt, steps (seed with `send_seed`) and the binding's
`paste_field_names` are copied from a source tab; then the target tab is shown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
from gradio.components import Component
from PIL import Image

from modules.ui.common import Fields, UiContext
from modules.ui.outputs import gallery_paths
from modules.ui.scripts_ui import ScriptPasteField, unique_components
from modules.ui.wiring import paste_updates

log = logging.getLogger(__name__)

# A1111 infotext names a binding copies between tabs -> our request field names
_COPIED = {"Prompt": "prompt", "Negative prompt": "negative_prompt", "Steps": "steps", "Seed": "seed"}


@dataclass(frozen=True)
class Target:
    """Where a binding's tabname sends to: the top-level tab, its image, its fields."""

    main_tab: str
    image: Component | None
    fields: Fields
    override: Component | None
    scripts_tab: str | None  # the tab whose script paste fields apply
    img2img_mode: str | None = None  # img2img sub-tab: "img2img" / "inpaint"
    extra_fields: tuple[ScriptPasteField, ...] = ()  # add_paste_fields of an extension's own tab


def _target(ctx: UiContext, tabname: str, tab_ids: set[str]) -> Target | None:
    t = ctx.targets
    if tabname == "txt2img":
        return Target("txt2img", None, t.fields.get("txt2img", {}), t.override_settings.get("txt2img"), "txt2img")
    if tabname in ("img2img", "sketch", "inpaint", "inpaint_sketch", "inpaint_upload"):
        mode = "inpaint" if tabname.startswith("inpaint") else "img2img"
        fields, override = t.fields.get("img2img", {}), t.override_settings.get("img2img")
        return Target("img2img", t.images.get(mode), fields, override, "img2img", mode)
    if tabname == "extras":
        return Target("extras", t.images.get("extras"), {}, None, None)
    registered = (ctx.extension_host.paste_fields if ctx.extension_host is not None else {}).get(tabname)
    if registered is None:
        return None
    extra = tuple(
        ScriptPasteField(f[0], f[1], "extensions")
        for f in registered.get("fields") or []
        if isinstance(f[0], Component)
    )
    image = registered.get("init_img")
    main = tabname if tabname in tab_ids else ""
    return Target(main, image if isinstance(image, Component) else None, {}, None, None, extra_fields=extra)


def to_pil(value: Any, index: int | None = None) -> Image.Image | None:
    """An Image / Gallery / ImageEditor value (PIL, numpy, path, Gallery list) as an RGB image."""
    if isinstance(value, list):  # a Gallery's value: the selected image, else the first
        paths = gallery_paths(value)
        if not paths:
            return None
        value = paths[index if index is not None and 0 <= index < len(paths) else 0]
    if isinstance(value, dict):  # ImageEditor: what it shows
        value = value.get("composite") or value.get("background") or value.get("path")
    if isinstance(value, np.ndarray):
        value = Image.fromarray(value)
    if isinstance(value, str):
        value = Image.open(value)
        value.load()
    return value.convert("RGB") if isinstance(value, Image.Image) else None


def _in_blocks(blocks: gr.Blocks, component: Any) -> bool:
    block_id = getattr(component, "_id", None)
    return block_id is not None and blocks.blocks.get(block_id) is component


def wire_param_bindings(ctx: UiContext, blocks: gr.Blocks, tab_ids: set[str]) -> None:
    """Wire the extensions' bindings whose button is part of `blocks` (inside its context). Those
    of an earlier build (a Reload UI rebuilds the scripts' ui()) are dropped from the list."""
    host = ctx.extension_host
    if host is None:
        return
    host.paste_bindings[:] = [b for b in host.paste_bindings if _in_blocks(blocks, b.paste_button)]
    for binding in host.paste_bindings:
        target = _target(ctx, str(binding.tabname), tab_ids)
        if target is None:
            host.problems.note("extensions", "send to", f"no tab {binding.tabname!r} to send parameters to")
            continue
        _wire(ctx, binding, target)


def _source_fields(ctx: UiContext, binding: Any, target: Target) -> list[tuple[Component, Component]]:
    """(source, destination) pairs a binding with a source tab copies (A1111's paste_field_names)."""
    source_tab = binding.source_tabname
    if source_tab not in ("txt2img", "img2img") or not target.fields:
        return []
    source = ctx.targets.fields.get(source_tab, {})
    wanted = ["Prompt", "Negative prompt", "Steps"] + (["Seed"] if ctx.settings.get("send_seed", True) else [])
    pairs = [(source[_COPIED[n]], target.fields[_COPIED[n]]) for n in wanted if _COPIED[n] in source]
    pairs = [p for p in pairs if p[1] is not None]
    names = [str(n) for n in binding.paste_field_names or []]
    src_scripts, dst_scripts = ctx.targets.scripts.get(source_tab), ctx.targets.scripts.get(target.scripts_tab or "")
    if names and src_scripts is not None and dst_scripts is not None:
        by_label = {f.label: f.component for f in dst_scripts.paste_fields if f.label}
        pairs += [
            (f.component, by_label[f.label])
            for f in src_scripts.paste_fields
            if f.label in names and f.label in by_label
        ]
    return pairs


def _wire(ctx: UiContext, binding: Any, target: Target) -> None:
    source_image = binding.source_image_component if isinstance(binding.source_image_component, Component) else None
    source_text = binding.source_text_component if isinstance(binding.source_text_component, Component) else None
    copied = _source_fields(ctx, binding, target)
    scripts = ctx.targets.scripts.get(target.scripts_tab) if target.scripts_tab else None
    extras: list[ScriptPasteField] = [*(scripts.paste_fields if scripts is not None else []), *target.extra_fields]
    override = binding.override_settings_component or target.override
    send_size = bool(ctx.settings.get("send_size", True)) and target.img2img_mode != "inpaint"
    size = [target.fields.get("width"), target.fields.get("height")] if send_size else []

    selected = gr.State(None)  # the source gallery's selected image (A1111: extract_image_from_gallery)
    if isinstance(source_image, gr.Gallery):
        source_image.select(_selected_index, None, selected, show_progress="hidden")

    outputs: list[Component] = []
    if ctx.targets.main_tabs is not None and target.main_tab:
        outputs.append(ctx.targets.main_tabs)
    if target.img2img_mode and ctx.targets.img2img_mode_tabs is not None:
        outputs += [ctx.targets.img2img_mode_tabs, ctx.targets.img2img_mode]
    if source_image is not None and target.image is not None:
        outputs += [target.image, *(c for c in size if c is not None)]
    if source_text is not None:
        outputs += [*target.fields.values(), *unique_components(extras)]
        if isinstance(override, Component):
            outputs.append(override)
    outputs += [dst for _, dst in copied]
    outputs = list({id(c): c for c in outputs}.values())  # Gradio refuses duplicate outputs
    inputs = [selected, *(c for c in (source_image, source_text) if c is not None), *(src for src, _ in copied)]

    def send(index: Any, *values: Any) -> dict[Component, Any]:
        values_left = list(values)
        picture = values_left.pop(0) if source_image is not None else None
        text = values_left.pop(0) if source_text is not None else None
        updates: dict[Component, Any] = {}
        if source_text is not None and text and isinstance(override, Component):
            updates.update(paste_updates(ctx, target.scripts_tab or "txt2img", target.fields, override, text, extras))  # type: ignore[arg-type]
        elif source_text is not None and text and extras:
            updates.update(paste_updates_without_override(ctx, text, extras))
        updates.update({dst: gr.update(value=v) for (_, dst), v in zip(copied, values_left, strict=True)})
        image = to_pil(picture, index if isinstance(index, int) else None)
        if image is not None and target.image is not None:
            inpaint = target.img2img_mode == "inpaint"
            updates[target.image] = {"background": image, "layers": [], "composite": image} if inpaint else image
            for component, value in zip(size, image.size, strict=False):  # no size for inpaint
                if component is not None:
                    updates[component] = gr.update(value=value)
        if ctx.targets.main_tabs is not None and target.main_tab:
            updates[ctx.targets.main_tabs] = gr.Tabs(selected=target.main_tab)
        if target.img2img_mode and ctx.targets.img2img_mode_tabs is not None:
            updates[ctx.targets.img2img_mode_tabs] = gr.Tabs(selected=f"img2img_{target.img2img_mode}_tab")
            updates[ctx.targets.img2img_mode] = 0 if target.img2img_mode == "img2img" else 2
        return updates

    binding.paste_button.click(send, inputs=inputs, outputs=outputs, show_progress="hidden")


def _selected_index(evt: gr.SelectData) -> Any:
    return evt.index


def paste_updates_without_override(ctx: UiContext, text: str, extras: list[ScriptPasteField]) -> dict[Component, Any]:
    """An extension tab's own paste fields (add_paste_fields) from an infotext."""
    from modules.ui.paste import parse_infotext
    from modules.ui.scripts_ui import paste_script_updates

    params = parse_infotext(text, ctx.settings, ctx.services.generation.styles)
    host = ctx.extension_host
    return paste_script_updates(extras, params, host.problems if host is not None else None)
