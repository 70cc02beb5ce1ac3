"""The PNG Info tab: metadata of a dropped image, and send its parameters to txt2img / img2img."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
from gradio.components import Component
from PIL import Image

from modules.generation.image_io import read_info_from_image
from modules.ui.common import UiContext
from modules.ui.wiring import paste_updates, script_outputs


def pnginfo_html(image: Image.Image | None) -> tuple[str, str]:
    """(HTML shown, the infotext) for an uploaded image."""
    if image is None:
        return "", ""
    info = read_info_from_image(image)
    text = info.parameters or ""
    blocks = []
    if text:
        blocks.append(f"<div><p><b>parameters</b></p><p>{html.escape(text).replace(chr(10), '<br>')}</p></div>")
    for key, value in info.items.items():
        blocks.append(f"<div><p><b>{html.escape(str(key))}</b></p><p>{html.escape(str(value))}</p></div>")
    if not blocks:
        blocks.append("<div><p>Nothing found in the image.</p></div>")
    return '<div class="pnginfo">' + "".join(blocks) + "</div>", text


def build_pnginfo(ctx: UiContext) -> dict[str, Any]:
    with gr.Row(equal_height=False):
        with gr.Column(variant="panel"):
            image = gr.Image(
                type="pil",
                label="Source",
                sources=["upload", "clipboard"],
                format="png",
                elem_id="pnginfo_image",
                image_mode=None,
            )
        with gr.Column(variant="panel"):
            html_out = gr.HTML(elem_id="pnginfo_html")
            infotext = gr.Textbox(visible="hidden", elem_id="pnginfo_generation_info")
            with gr.Row(elem_id="pnginfo_send_buttons"):
                to_txt2img = gr.Button("Send to txt2img", elem_id="pnginfo_send_to_txt2img")
                to_img2img = gr.Button("Send to img2img", elem_id="pnginfo_send_to_img2img")
                to_inpaint = gr.Button("Send to inpaint", elem_id="pnginfo_send_to_inpaint")
                to_extras = gr.Button("Send to extras", elem_id="pnginfo_send_to_extras")
    image.change(pnginfo_html, inputs=[image], outputs=[html_out, infotext], show_progress="hidden")
    return {
        "image": image,
        "infotext": infotext,
        "buttons": {"txt2img": to_txt2img, "img2img": to_img2img, "inpaint": to_inpaint, "extras": to_extras},
    }


def wire_pnginfo_send(ctx: UiContext, parts: dict[str, Any]) -> None:
    """After all tabs exist: the Send to ... buttons (parameters, plus the image for img2img/inpaint/extras)."""
    targets = ctx.targets
    image, infotext = parts["image"], parts["infotext"]
    for target, button in parts["buttons"].items():
        tab = "img2img" if target in ("img2img", "inpaint") else target
        fields = targets.fields.get(tab, {}) if tab in ("txt2img", "img2img") else {}
        override = targets.override_settings.get(tab)
        image_target = targets.images.get(target)
        scripts = targets.scripts.get(tab)  # scripts' infotext_fields paste too (A1111)
        extras = scripts.paste_fields if scripts is not None else []
        outputs: list[Component] = [targets.main_tabs, *fields.values(), *script_outputs(fields, extras)]
        if override is not None:
            outputs.append(override)
        if image_target is not None:
            outputs.append(image_target)
        if tab == "img2img" and targets.img2img_mode_tabs is not None:
            outputs += [targets.img2img_mode_tabs, targets.img2img_mode]

        def send(
            picture: Image.Image | None,
            text: str,
            _tab: str = tab,
            _target: str = target,
            _fields: Any = fields,
            _override: Any = override,
            _image: Any = image_target,
            _extras: Any = extras,
        ) -> dict[Component, Any]:
            updates: dict[Component, Any] = {targets.main_tabs: gr.Tabs(selected=_tab)}
            if text and _override is not None and _tab in ("txt2img", "img2img"):
                updates.update(paste_updates(ctx, _tab, _fields, _override, text, _extras))  # type: ignore[arg-type]
            if _image is not None and picture is not None:
                rgb = picture.convert("RGB")
                updates[_image] = {"background": rgb, "layers": [], "composite": rgb} if _target == "inpaint" else rgb
            if _tab == "img2img" and targets.img2img_mode_tabs is not None:
                updates[targets.img2img_mode_tabs] = gr.Tabs(selected=f"img2img_{_target}_tab")
                updates[targets.img2img_mode] = 0 if _target == "img2img" else 2
            return updates

        button.click(send, inputs=[image, infotext], outputs=outputs)
