"""The Extras tab: upscale (two blended upscalers) single images, uploaded batches or a folder."""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components import Component
from PIL import Image

from modules.core.jobs import JobControl, QueueFull
from modules.generation.filename_pattern import FilenameContext
from modules.generation.saving import SavingOptions, save_image
from modules.postprocessing import ExtrasParams, UpscalerRegistry, run_extras
from modules.postprocessing.face_restoration import FaceRestorationUnavailable, FaceRestorers
from modules.ui.common import UiContext, caller_of_gradio, error_html, tool_button
from modules.workflows.extras import check_extras_size
from modules.workflows.runner import JobKind

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class ExtrasOutput:
    items: list[Any]  # saved file paths (or images when saving is off)
    infotext: str


def process_images(
    ctx: UiContext,
    images: list[tuple[Image.Image, str]],
    params: ExtrasParams,
    upscalers: UpscalerRegistry,
    output_dir: str,
    control: JobControl,
    faces: FaceRestorers | None = None,
) -> ExtrasOutput:
    """Run the extras pipeline on (image, name) pairs; saves like A1111 (PNG info kept, postprocessing added)."""
    settings = ctx.settings
    options = SavingOptions.from_settings(settings, filenames_max_length=ctx.services.args.filenames_max_length)
    outdir = (
        Path(output_dir)
        if output_dir
        else ctx.resolve_dir(str(settings["outdir_samples"] or settings["outdir_extras_samples"]))
    )
    items: list[Any] = []
    text = ""
    for number, (image, name) in enumerate(images):
        control.check()
        control.begin_batch(number, len(images), 1)
        result = run_extras(image, params, upscalers, faces)
        text = result.infotext
        existing = {str(k): v for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)}
        if settings["samples_save"] or output_dir:
            original = bool(settings["use_original_name_batch"]) and bool(name)  # A1111: cat.png -> cat.png
            saved = save_image(
                result.image,
                outdir,
                name if original else "",
                forced_filename=name if original else None,
                ctx=FilenameContext(basename=name),
                options=options,
                infotext=text,
                no_prompt=True,
                short_filename=True,
                existing_pnginfo=existing,
                pnginfo_section_name="postprocessing",
                save_to_dirs=False,
            )
            items.append(str(saved.path))
        else:
            copy = result.image.copy()
            copy.info.update(existing)
            items.append(copy)
    return ExtrasOutput(items, text)


def build_extras(ctx: UiContext) -> dict[str, Any]:
    upscalers = ctx.services.upscalers  # one registry with the API (tile settings read per upscale)
    names = upscalers.names()
    with gr.Row(equal_height=False, elem_id="extras_settings_and_results"):
        with gr.Column(variant="compact"):
            mode = gr.Number(0, visible="hidden", precision=0, elem_id="extras_mode")
            with gr.Tabs(elem_id="mode_extras"):
                with gr.Tab("Single Image", id="single_image", elem_id="extras_single_tab") as t0:
                    image = gr.Image(type="pil", label="Source", format="png", elem_id="extras_image", image_mode=None)
                with gr.Tab("Batch Process", id="batch_process", elem_id="extras_batch_process_tab") as t1:
                    batch = gr.File(label="Batch Process", file_count="multiple", elem_id="extras_image_batch")
                with gr.Tab(
                    "Batch from Directory", id="batch_from_directory", elem_id="extras_batch_directory_tab"
                ) as t2:
                    input_dir = gr.Textbox(label="Input directory", elem_id="extras_batch_input_dir")
                    output_dir = gr.Textbox(label="Output directory", elem_id="extras_batch_output_dir")
                    show_results = gr.Checkbox(True, label="Show result images", elem_id="extras_show_extras_results")
            for index, tab in enumerate((t0, t1, t2)):
                tab.select(lambda _i=index: _i, outputs=[mode], queue=False)
            submit = gr.Button("Generate", variant="primary", elem_id="extras_generate")
            resize_mode = gr.Number(0, visible="hidden", precision=0, elem_id="extras_resize_mode")
            with gr.Tabs(elem_id="extras_resize_mode_tabs"):
                with gr.Tab("Scale by", id="extras_scale_by_tab") as by_tab:
                    scale = gr.Slider(1.0, 8.0, value=4.0, step=0.05, label="Resize", elem_id="extras_upscaling_resize")
                    max_side = gr.Number(
                        0, label="Max side length", precision=0, elem_id="extras_upscale_max_side_length"
                    )
                with gr.Tab("Scale to", id="extras_scale_to_tab") as to_tab:
                    with gr.Row():
                        width = gr.Slider(
                            64, 8192, value=512, step=8, label="Width", elem_id="extras_upscaling_resize_w"
                        )
                        height = gr.Slider(
                            64, 8192, value=512, step=8, label="Height", elem_id="extras_upscaling_resize_h"
                        )
                        swap = tool_button("⇅", "extras_upscaling_res_switch_btn")
                    crop = gr.Checkbox(True, label="Crop to fit", elem_id="extras_upscaling_crop")
            by_tab.select(lambda: 0, outputs=[resize_mode], queue=False)
            to_tab.select(lambda: 1, outputs=[resize_mode], queue=False)
            swap.click(lambda w, h: (h, w), inputs=[width, height], outputs=[width, height], queue=False)
            with gr.Row():
                upscaler_1 = gr.Dropdown(names, value="None", label="Upscaler 1", elem_id="extras_upscaler_1")
                upscaler_2 = gr.Dropdown(names, value="None", label="Upscaler 2", elem_id="extras_upscaler_2")
                refresh = tool_button("🔄", "extras_refresh_upscalers")
            visibility = gr.Slider(
                0.0, 1.0, value=0.0, step=0.001, label="Upscaler 2 visibility", elem_id="extras_upscaler_2_visibility"
            )
            face_sliders = _face_sliders()
        with gr.Column():
            gallery = gr.Gallery(
                label="Result", format="png", elem_id="extras_gallery", columns=3, interactive=False, type="filepath"
            )
            progress = gr.HTML(elem_id="extras_progress")
            info = gr.HTML(elem_id="html_info_extras")

    def refresh_upscalers() -> tuple[Any, Any]:
        upscalers.refresh()
        return gr.update(choices=upscalers.names()), gr.update(choices=upscalers.names())

    refresh.click(refresh_upscalers, outputs=[upscaler_1, upscaler_2])
    inputs = [
        mode,
        image,
        batch,
        input_dir,
        output_dir,
        show_results,
        resize_mode,
        scale,
        max_side,
        width,
        height,
        crop,
        upscaler_1,
        upscaler_2,
        visibility,
        *face_sliders,
    ]
    face_cache: list[FaceRestorers] = []  # scanned on first use: loading the weights takes a while

    def faces_for(params: ExtrasParams) -> FaceRestorers | None:
        if params.gfpgan_visibility == 0 and params.codeformer_visibility == 0:
            return None
        if not face_cache:
            face_cache.append(ctx.services.faces.restorers())  # the server's one set (also used by generation)
        for family, vis in (("GFPGAN", params.gfpgan_visibility), ("CodeFormer", params.codeformer_visibility)):
            if vis > 0:
                face_cache[0].get(family)  # FaceRestorationUnavailable says why
        return face_cache[0]

    def run(request: gr.Request, *values: Any) -> Iterator[dict[Component, Any]]:
        (mode_i, single, files, in_dir, out_dir, show, rmode, by, limit, w, h, crop_on, up1, up2, vis) = values[:15]
        gfpgan_vis, codeformer_vis, codeformer_w = values[15:]
        try:
            params = ExtrasParams(
                resize_mode=1 if int(rmode or 0) == 1 else 0,
                upscaling_resize=float(by),
                max_side_length=int(limit or 0),
                upscaling_resize_w=int(w),
                upscaling_resize_h=int(h),
                upscaling_crop=bool(crop_on),
                upscaler_1=up1 or "None",
                upscaler_2=up2 or "None",
                extras_upscaler_2_visibility=float(vis),
                gfpgan_visibility=float(gfpgan_vis),
                codeformer_visibility=float(codeformer_vis),
                codeformer_weight=float(codeformer_w),
            )
            faces = faces_for(params)
            for name in (params.upscaler_1, params.upscaler_2):
                if name != "None":
                    upscalers.get(name)
            if int(mode_i or 0) == 2 and ctx.services.access.path_settings_locked:  # server folders
                raise gr.Error("Batch from directory is disabled on this server (--hide-ui-dir-config or --listen).")
            sources = _sources(int(mode_i or 0), single, files, in_dir)
            for source, _name in sources:  # the API's limit, before anything is queued
                check_extras_size(ctx.services.access, source, params)
            target = str(out_dir or "").strip() if int(mode_i or 0) == 2 else ""
            job = ctx.services.runner.submit(
                caller_of_gradio(request),
                JobKind.EXTRAS,
                lambda c: process_images(ctx, sources, params, upscalers, target, c, faces),
            )
        except (ValueError, gr.Error, FaceRestorationUnavailable, QueueFull) as exc:
            yield {info: error_html(str(exc))}
            return
        for _ in ctx.services.runner.stream(job):
            done = job.control.progress() * 100
            yield {
                progress: f'<div class="progressDiv"><div class="progress" style="width:{done:.0f}%">{done:.0f}%</div></div>'
            }
        try:
            output: ExtrasOutput = job.wait()
        except Exception as exc:  # boundary: show the error in the tab
            yield {progress: "", info: error_html(f"{type(exc).__name__}: {exc}")}
            return
        shown = output.items if (int(mode_i or 0) != 2 or show) else []
        yield {gallery: shown, progress: "", info: f"<p>{html.escape(output.infotext)}</p>"}

    submit.click(run, inputs=inputs, outputs=[gallery, progress, info], show_progress="hidden", concurrency_limit=None)
    ctx.ui_config.register_all("extras", [scale, width, height, upscaler_1, upscaler_2, visibility, *face_sliders])
    ctx.targets.images["extras"] = image
    return {"image": image}


def _face_sliders() -> list[Any]:
    """GFPGAN visibility, CodeFormer visibility and weight (A1111's elem_ids)."""
    gfpgan = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="GFPGAN visibility", elem_id="extras_gfpgan_visibility")
    with gr.Row():
        codeformer = gr.Slider(
            0.0, 1.0, value=0.0, step=0.001, label="CodeFormer visibility", elem_id="extras_codeformer_visibility"
        )
        weight = gr.Slider(
            0.0,
            1.0,
            value=0.0,
            step=0.001,
            label="CodeFormer weight (0 = maximum effect, 1 = minimum effect)",
            elem_id="extras_codeformer_weight",
        )
    return [gfpgan, codeformer, weight]


def _sources(mode: int, single: Image.Image | None, files: Any, input_dir: str | None) -> list[tuple[Image.Image, str]]:
    if mode == 0:
        if single is None:
            raise gr.Error("Upload an image first.")
        return [(single, "")]
    if mode == 1:
        paths = [getattr(f, "name", f) for f in files or []]
        if not paths:
            raise gr.Error("Upload images to process first.")
        return [(Image.open(p), Path(p).stem) for p in paths]
    folder = Path(str(input_dir or ""))
    if not folder.is_dir():
        raise gr.Error(f"Input directory {str(input_dir)!r} does not exist.")
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not found:
        raise gr.Error("The input directory holds no images.")
    return [(Image.open(p), p.stem) for p in found]
