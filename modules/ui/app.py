"""The Gradio front end. Components bind to request fields by name (see `_request_from`).

Tabs present here are the ones that work end to end; the others arrive with their issues.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from PIL import Image

from modules.core.services import Services
from modules.generation import samplers
from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest

# UI defaults that differ from the API's (A1111: steps 20 in the UI, 50 in the API; Euler a).
UI_DEFAULTS = {"steps": 20, "sampler_name": "Euler a", "scheduler": "Automatic"}


def _generation_controls(tab: str) -> dict[str, Any]:
    """The shared sampler/size/seed controls; dict keys are request field names."""
    c: dict[str, Any] = {}
    with gr.Row():
        c["sampler_name"] = gr.Dropdown(
            samplers.sampler_names(),
            value=UI_DEFAULTS["sampler_name"],
            label="Sampling method",
            elem_id=f"{tab}_sampling",
        )
        c["scheduler"] = gr.Dropdown(
            [s.label for s in samplers.SCHEDULERS],
            value=UI_DEFAULTS["scheduler"],
            label="Schedule type",
            elem_id=f"{tab}_scheduler",
        )
        c["steps"] = gr.Slider(
            1, 150, value=UI_DEFAULTS["steps"], step=1, label="Sampling steps", elem_id=f"{tab}_steps"
        )
    with gr.Row():
        c["width"] = gr.Slider(64, 2048, value=512, step=8, label="Width", elem_id=f"{tab}_width")
        c["height"] = gr.Slider(64, 2048, value=512, step=8, label="Height", elem_id=f"{tab}_height")
    with gr.Row():
        c["n_iter"] = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id=f"{tab}_batch_count")
        c["batch_size"] = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id=f"{tab}_batch_size")
        c["cfg_scale"] = gr.Slider(1.0, 30.0, value=7.0, step=0.5, label="CFG Scale", elem_id=f"{tab}_cfg_scale")
    with gr.Row():
        c["seed"] = gr.Number(-1, label="Seed", precision=0, elem_id=f"{tab}_seed")
        c["subseed"] = gr.Number(-1, label="Variation seed", precision=0, elem_id=f"{tab}_subseed")
        c["subseed_strength"] = gr.Slider(
            0.0, 1.0, value=0.0, step=0.01, label="Variation strength", elem_id=f"{tab}_subseed_strength"
        )
    return c


def _prompt_row(tab: str) -> dict[str, Any]:
    c: dict[str, Any] = {}
    c["prompt"] = gr.Textbox(label="Prompt", lines=3, elem_id=f"{tab}_prompt")
    c["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=2, elem_id=f"{tab}_neg_prompt")
    return c


def _run_job(services: Services, kind: str, fn: Any, request: gr.Request | None) -> tuple[list[Image.Image], str]:
    user = getattr(request, "username", None) if request is not None else None
    job = services.jobs.submit(kind, fn, owner=user)
    result = job.wait()
    info = result.infotexts[result.index_of_first_image] if result.infotexts else ""
    html = "<p>" + info.replace("&", "&amp;").replace("<", "&lt;").replace("\n", "<br>") + "</p>"
    if result.interrupted:
        html += "<p><b>Interrupted</b></p>"
    return result.images, html


def _txt2img_tab(services: Services, generation: Any) -> None:
    with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
        fields = _prompt_row("txt2img")
        with gr.Row():
            generate = gr.Button("Generate", variant="primary", elem_id="txt2img_generate")
            interrupt = gr.Button("Interrupt", elem_id="txt2img_interrupt")
            skip = gr.Button("Skip", elem_id="txt2img_skip")
        fields.update(_generation_controls("txt2img"))
        with gr.Accordion("Hires. fix", open=False, elem_id="txt2img_hr"):
            fields["enable_hr"] = gr.Checkbox(False, label="Hires. fix", elem_id="txt2img_hr-checkbox")
            fields["hr_upscaler"] = gr.Dropdown(
                [
                    "Latent",
                    "Latent (antialiased)",
                    "Latent (bicubic)",
                    "Latent (bicubic antialiased)",
                    "Latent (nearest)",
                    "Latent (nearest-exact)",
                    "Lanczos",
                    "Nearest",
                ],
                value="Latent",
                label="Upscaler",
                elem_id="txt2img_hr_upscaler",
            )
            fields["hr_second_pass_steps"] = gr.Slider(
                0, 150, value=0, step=1, label="Hires steps", elem_id="txt2img_hires_steps"
            )
            fields["denoising_strength"] = gr.Slider(0.0, 1.0, value=0.7, step=0.01, label="Denoising strength")
            fields["hr_scale"] = gr.Slider(
                1.0, 4.0, value=2.0, step=0.05, label="Upscale by", elem_id="txt2img_hr_scale"
            )
        fields["tiling"] = gr.Checkbox(False, label="Tiling", elem_id="txt2img_tiling")
        gallery = gr.Gallery(label="Output", format="png", elem_id="txt2img_gallery", columns=4)
        info = gr.HTML(elem_id="html_info_txt2img")
        names = list(fields)

        def run(*values: Any, request: gr.Request) -> tuple[list[Image.Image], str]:
            req = Txt2ImgRequest(**_request_from(names, values), save_images=True)
            return _run_job(
                services,
                "txt2img",
                lambda control: generation.txt2img(req, control, user=getattr(request, "username", None)),
                request,
            )

        generate.click(run, inputs=[fields[n] for n in names], outputs=[gallery, info])
        interrupt.click(
            lambda request: services.jobs.interrupt(user=getattr(request, "username", None)) and None,
            inputs=None,
            outputs=None,
        )
        skip.click(
            lambda request: services.jobs.skip(user=getattr(request, "username", None)) and None,
            inputs=None,
            outputs=None,
        )


def _img2img_tab(services: Services, generation: Any) -> None:
    with gr.Tab("img2img", id="img2img", elem_id="tab_img2img"):
        fields = _prompt_row("img2img")
        generate = gr.Button("Generate", variant="primary", elem_id="img2img_generate")
        with gr.Tabs(elem_id="mode_img2img"):
            with gr.Tab("img2img", id="img2img_img2img_tab"):
                init = gr.Image(type="pil", label="Image for img2img", format="png", elem_id="img2img_image")
            with gr.Tab("Inpaint upload", id="img2img_inpaint_upload_tab"):
                base = gr.Image(type="pil", label="Image", format="png", elem_id="img_inpaint_base")
                mask = gr.Image(type="pil", label="Mask", format="png", elem_id="img_inpaint_mask")
        fields["resize_mode"] = gr.Radio(
            ["Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)"],
            value="Just resize",
            type="index",
            label="Resize mode",
            elem_id="resize_mode",
        )
        fields["denoising_strength"] = gr.Slider(
            0.0, 1.0, value=0.75, step=0.01, label="Denoising strength", elem_id="img2img_denoising_strength"
        )
        fields["mask_blur"] = gr.Slider(0, 64, value=4, step=1, label="Mask blur")
        fields["inpainting_fill"] = gr.Radio(
            ["fill", "original", "latent noise", "latent nothing"],
            value="original",
            type="index",
            label="Masked content",
        )
        fields["inpaint_full_res"] = gr.Radio(
            ["Whole picture", "Only masked"], value="Whole picture", type="index", label="Inpaint area"
        )
        fields["inpaint_full_res_padding"] = gr.Slider(0, 256, value=32, step=4, label="Only masked padding")
        fields.update(_generation_controls("img2img"))
        gallery = gr.Gallery(label="Output", format="png", elem_id="img2img_gallery", columns=4)
        info = gr.HTML(elem_id="html_info_img2img")
        names = list(fields)

        def run(
            init_image: Any, base_image: Any, mask_image: Any, *values: Any, request: gr.Request
        ) -> tuple[list[Image.Image], str]:
            image, mask_img = (base_image, mask_image) if base_image is not None else (init_image, None)
            if image is None:
                raise gr.Error("Upload an image first.")
            req = Img2ImgRequest(**_request_from(names, values), save_images=True)
            user = getattr(request, "username", None)
            return _run_job(
                services,
                "img2img",
                lambda control: generation.img2img(req, control, user=user, init_images=[image], mask=mask_img),
                request,
            )

        generate.click(run, inputs=[init, base, mask] + [fields[n] for n in names], outputs=[gallery, info])


def _request_from(names: list[str], values: tuple[Any, ...]) -> dict[str, Any]:
    data = dict(zip(names, values, strict=True))
    for key in ("seed", "subseed", "steps", "n_iter", "batch_size", "width", "height", "hr_second_pass_steps"):
        if key in data and data[key] is not None:
            data[key] = int(data[key])
    return data


def create_ui(services: Services) -> gr.Blocks:
    generation = services.generation
    with gr.Blocks(title="Stable Diffusion") as demo, gr.Tabs(elem_id="tabs"):
        _txt2img_tab(services, generation)
        _img2img_tab(services, generation)
    return demo
