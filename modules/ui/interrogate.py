"""img2img's "Interrogate CLIP" and "Interrogate DeepBooru" buttons (A1111 ids #interrogate and
#deepbooru): describe the image of the selected sub-tab and put the text into the prompt box.
The work runs on the job queue like the API's POST /sdapi/v1/interrogate; a missing model is a
message naming the files (modules/interrogate/service.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr
from PIL import Image

from modules.core.jobs import QueueFull
from modules.interrogate.service import InterrogationService, InterrogatorUnavailable
from modules.ui.common import UiContext, caller_of_gradio
from modules.workflows.runner import JobKind


def _image_of(mode: str, values: dict[str, Any]) -> Image.Image:
    if mode == "img2img":
        image = values.get("img2img")
    elif mode in ("sketch", "inpaint", "inpaint_sketch"):
        editor = values.get(mode) or {}
        image = editor.get("composite") if mode != "inpaint" else editor.get("background")
        image = image or editor.get("background")
    elif mode == "inpaint_upload":
        image = values.get("inpaint_base")
    else:
        raise gr.Error("Interrogate works on the image of the current tab; batch mode has none.")
    if image is None:
        raise gr.Error("Upload an image first: Interrogate describes the image of the current tab.")
    return image.convert("RGB")


def build_interrogate_buttons() -> tuple[gr.Button, gr.Button]:
    with gr.Row(elem_id="img2img_interrogate_col"):
        clip = gr.Button("Interrogate CLIP", elem_id="interrogate", size="sm")
        booru = gr.Button("Interrogate DeepBooru", elem_id="deepbooru", size="sm")
    return clip, booru


def wire_interrogate(
    ctx: UiContext,
    buttons: tuple[gr.Button, gr.Button],
    prompt: gr.Textbox,
    mode: gr.Number,
    modes: Sequence[str],
    names: Sequence[str],
    inputs: Sequence[Any],
) -> None:
    service = InterrogationService(ctx.services.models, ctx.services.paths, ctx.services.options)

    def run(model: str, mode_index: Any, values: Sequence[Any], request: gr.Request | None) -> str:
        image = _image_of(modes[int(mode_index or 0)], dict(zip(names, values, strict=True)))
        try:
            job = ctx.services.runner.submit(
                caller_of_gradio(request), JobKind.INTERROGATE, lambda _: service.interrogate(image, model)
            )
            return str(job.wait())
        except (InterrogatorUnavailable, QueueFull) as exc:
            raise gr.Error(str(exc)) from None

    def clip(mode_index: Any, a: Any, b: Any, c: Any, d: Any, e: Any, request: gr.Request) -> str:
        return run("clip", mode_index, (a, b, c, d, e), request)

    def deepbooru(mode_index: Any, a: Any, b: Any, c: Any, d: Any, e: Any, request: gr.Request) -> str:
        return run("deepdanbooru", mode_index, (a, b, c, d, e), request)

    if len(inputs) != 5:
        raise ValueError("wire_interrogate expects the five image inputs of the img2img sub-tabs")
    for button, handler in zip(buttons, (clip, deepbooru), strict=True):
        button.click(handler, inputs=[mode, *inputs], outputs=[prompt], show_progress="minimal")
