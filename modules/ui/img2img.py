"""The img2img tab: sub-tabs img2img, Sketch, Inpaint, Inpaint sketch, Inpaint upload, Batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from modules.core.jobs import JobControl
from modules.generation.hooks import ScriptHooks
from modules.generation.image_io import read_info_from_image
from modules.generation.processing import GenerationResult
from modules.generation.requests import INPAINTING_FILL_NAMES, RESIZE_MODE_NAMES, Img2ImgRequest
from modules.ui import params
from modules.ui.common import Fields, UiContext
from modules.ui.extra_networks_panel import build_extra_networks
from modules.ui.interrogate import build_interrogate_buttons, wire_interrogate
from modules.ui.outputs import output_panel
from modules.ui.paste import infotext_to_ui_values
from modules.ui.scripts_ui import build_scripts_ui
from modules.ui.toprow import TokenCounter, build_toprow, wire_interrupt_skip
from modules.ui.wiring import JobFactory, wire_generate, wire_paste
from modules.workflows.generate import check_generation_request

MODES = ("img2img", "sketch", "inpaint", "inpaint_sketch", "inpaint_upload", "batch")
MODE_LABELS = ("img2img", "Sketch", "Inpaint", "Inpaint sketch", "Inpaint upload", "Batch")

MASK_MODES = ("Inpaint masked", "Inpaint not masked")
INPAINT_AREAS = ("Whole picture", "Only masked")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
PNG_INFO_FIELDS = ("Prompt", "Negative prompt", "Seed", "CFG scale", "Sampler", "Steps")
SKETCH_COLORS: list[str | tuple[str, float]] = [
    "#000000",
    "#ffffff",
    "#ff0000",
    "#00ff00",
    "#0000ff",
    "#ffff00",
    "#ff00ff",
    "#00ffff",
]


@dataclass
class InitImages:
    """What the selected sub-tab gives the engine."""

    image: Image.Image
    mask: Image.Image | None


def mask_from_layers(editor_value: dict[str, Any] | None) -> Image.Image | None:
    """White where any layer of an ImageEditor value was painted (alpha > 0), else black."""
    if not editor_value:
        return None
    layers = [layer for layer in editor_value.get("layers") or [] if layer is not None]
    background = editor_value.get("background")
    if not layers or background is None:
        return None
    painted = np.zeros((background.height, background.width), dtype=bool)
    for layer in layers:
        alpha = np.asarray(layer.convert("RGBA").resize(background.size, Image.Resampling.NEAREST))[..., 3]
        painted |= alpha > 0
    if not painted.any():
        return None
    return Image.fromarray(np.where(painted, 255, 0).astype(np.uint8), mode="L")


def init_from_mode(mode: str, values: dict[str, Any]) -> InitImages:
    """The init image (and mask) of one sub-tab; a clear error when something is missing."""
    if mode == "img2img":
        image = values.get("img2img")
        if image is None:
            raise gr.Error("Upload an image into the img2img tab first.")
        return InitImages(image, None)
    if mode in ("sketch", "inpaint", "inpaint_sketch"):
        editor = values.get(mode) or {}
        background = editor.get("background")
        if background is None:
            raise gr.Error(f"Upload an image into the {MODE_LABELS[MODES.index(mode)]} tab first.")
        if mode == "sketch":
            return InitImages(editor.get("composite") or background, None)
        mask = mask_from_layers(editor)
        if mask is None:
            raise gr.Error("Draw a mask over the image first.")
        image = editor.get("composite") if mode == "inpaint_sketch" else background
        return InitImages(image or background, mask)
    if mode == "inpaint_upload":
        base, mask = values.get("inpaint_base"), values.get("inpaint_mask")
        if base is None or mask is None:
            raise gr.Error("Upload both the image and its mask.")
        return InitImages(base, mask)
    raise ValueError(f"unknown img2img mode {mode!r}")


def _flatten(image: Image.Image) -> Image.Image:
    """RGBA uploads/canvases -> RGB on white (A1111 img2img_background_color default)."""
    if image.mode == "RGBA":
        canvas = Image.new("RGB", image.size, (255, 255, 255))
        canvas.paste(image, mask=image.split()[3])
        return canvas
    return image.convert("RGB")


def _mode_inputs() -> dict[str, Any]:
    editors: dict[str, Any] = {}
    with gr.Tabs(elem_id="mode_img2img") as tabs:
        with gr.Tab("img2img", id="img2img_img2img_tab", elem_id="img2img_img2img_tab") as t0:
            editors["img2img"] = gr.Image(
                type="pil",
                label="Image for img2img",
                format="png",
                elem_id="img2img_image",
                image_mode="RGBA",
                height=480,
            )
        with gr.Tab("Sketch", id="img2img_sketch_tab", elem_id="img2img_img2img_sketch_tab") as t1:
            editors["sketch"] = gr.ImageEditor(
                type="pil",
                label="Image for img2img",
                format="png",
                elem_id="img2img_sketch",
                height=480,
                brush=gr.Brush(colors=SKETCH_COLORS, color_mode="defaults"),
            )
        with gr.Tab("Inpaint", id="img2img_inpaint_tab", elem_id="img2img_inpaint_tab") as t2:
            editors["inpaint"] = gr.ImageEditor(
                type="pil",
                label="Image for inpainting with mask",
                format="png",
                elem_id="img2maskimg",
                height=480,
                brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=24),
            )
        with gr.Tab("Inpaint sketch", id="img2img_inpaint_sketch_tab", elem_id="img2img_inpaint_sketch_tab") as t3:
            editors["inpaint_sketch"] = gr.ImageEditor(
                type="pil",
                label="Color sketch inpainting",
                format="png",
                elem_id="inpaint_sketch",
                height=480,
                brush=gr.Brush(colors=SKETCH_COLORS, color_mode="defaults"),
            )
        with gr.Tab("Inpaint upload", id="img2img_inpaint_upload_tab", elem_id="img2img_inpaint_upload_tab") as t4:
            editors["inpaint_base"] = gr.Image(type="pil", label="Image", format="png", elem_id="img_inpaint_base")
            editors["inpaint_mask"] = gr.Image(
                type="pil", label="Mask", format="png", elem_id="img_inpaint_mask", image_mode="L"
            )
        with gr.Tab("Batch", id="img2img_batch_tab", elem_id="img2img_batch_tab") as t5:
            _batch_inputs(editors)
    editors["tabs"] = tabs
    editors["tab_list"] = [t0, t1, t2, t3, t4, t5]
    return editors


def _batch_inputs(editors: dict[str, Any]) -> None:
    gr.Markdown(
        "Process images in a folder on the machine where the server is running. Use an empty output "
        "folder to save pictures normally instead of writing to the output folder. Add an inpaint "
        "batch mask folder to enable inpaint batch processing."
    )
    editors["batch_input"] = gr.Textbox(label="Input directory", elem_id="img2img_batch_input_dir")
    editors["batch_output"] = gr.Textbox(label="Output directory", elem_id="img2img_batch_output_dir")
    editors["batch_mask"] = gr.Textbox(
        label="Inpaint batch mask directory (required for inpaint batch processing only)",
        elem_id="img2img_batch_inpaint_mask_dir",
    )
    with gr.Accordion("PNG info", open=False):
        editors["batch_use_png_info"] = gr.Checkbox(
            False, label="Append png info to prompts", elem_id="img2img_batch_use_png_info"
        )
        editors["batch_png_info_dir"] = gr.Textbox(
            label="PNG info directory",
            placeholder="Leave empty to use input directory",
            elem_id="img2img_batch_png_info_dir",
        )
        editors["batch_png_info_props"] = gr.CheckboxGroup(
            list(PNG_INFO_FIELDS), label="Parameters to take from png info", elem_id="img2img_batch_png_info_props"
        )


def build_img2img(ctx: UiContext, counter: TokenCounter) -> Fields:
    toprow = build_toprow(ctx, "img2img", counter)
    build_extra_networks(ctx, "img2img", ctx.services.networks)
    mode = gr.Number(0, visible="hidden", precision=0, elem_id="img2img_selected_mode")
    with gr.Row(equal_height=False, elem_id="img2img_settings_and_results", elem_classes=["settings-and-results"]):
        with gr.Column(elem_id="img2img_settings", scale=1, min_width=300):
            interrogate_buttons = build_interrogate_buttons()
            editors = _mode_inputs()
            fields: Fields = {}
            fields["resize_mode"] = gr.Radio(
                list(RESIZE_MODE_NAMES),
                value=RESIZE_MODE_NAMES[0],
                type="index",
                label="Resize mode",
                elem_id="resize_mode",
            )
            with gr.Group(elem_id="inpaint_controls"):
                fields["mask_blur"] = gr.Slider(0, 64, value=4, step=1, label="Mask blur", elem_id="img2img_mask_blur")
                fields["inpainting_mask_invert"] = gr.Radio(
                    list(MASK_MODES), value=MASK_MODES[0], type="index", label="Mask mode", elem_id="img2img_mask_mode"
                )
                fields["inpainting_fill"] = gr.Radio(
                    list(INPAINTING_FILL_NAMES),
                    value="original",
                    type="index",
                    label="Masked content",
                    elem_id="img2img_inpainting_fill",
                )
                with gr.Row():
                    fields["inpaint_full_res"] = gr.Radio(
                        list(INPAINT_AREAS),
                        value=INPAINT_AREAS[0],
                        type="index",
                        label="Inpaint area",
                        elem_id="img2img_inpaint_full_res",
                    )
                    fields["inpaint_full_res_padding"] = gr.Slider(
                        0,
                        256,
                        value=32,
                        step=4,
                        label="Only masked padding, pixels",
                        elem_id="img2img_inpaint_full_res_padding",
                    )
            fields.update(params.sampler_controls(ctx, "img2img"))
            with gr.Tabs(elem_id="img2img_tabs_resize"):
                with gr.Tab("Resize to", id="img2img_tab_resize_to") as resize_to_tab:
                    fields.update(params.size_controls("img2img"))
                with gr.Tab("Resize by", id="img2img_tab_resize_by") as resize_by_tab:
                    scale_by = gr.Slider(0.05, 4.0, value=1.0, step=0.05, label="Scale", elem_id="img2img_scale")
            scale_mode = gr.Number(0, visible="hidden", precision=0, elem_id="img2img_scale_mode")
            resize_to_tab.select(lambda: 0, outputs=[scale_mode], queue=False)
            resize_by_tab.select(lambda: 1, outputs=[scale_mode], queue=False)
            fields.update(params.batch_and_cfg("img2img"))
            fields["denoising_strength"] = gr.Slider(
                0.0, 1.0, value=0.75, step=0.01, label="Denoising strength", elem_id="img2img_denoising_strength"
            )
            seed_fields, reuse = params.seed_controls("img2img")
            fields.update(seed_fields)
            fields.update(params.refiner_controls(ctx, "img2img"))
            override = params.override_settings_dropdown("img2img")
            scripts = build_scripts_ui(ctx, "img2img")
        with gr.Column(scale=1, min_width=300):
            panel = output_panel(ctx, "img2img")
    for index, tab in enumerate(editors["tab_list"]):
        tab.select(lambda _i=index: _i, outputs=[mode], queue=False)
    fields["prompt"] = toprow.prompt
    fields["negative_prompt"] = toprow.negative_prompt
    fields["styles"] = toprow.styles
    extra_names = [
        "img2img",
        "sketch",
        "inpaint",
        "inpaint_sketch",
        "inpaint_base",
        "inpaint_mask",
        "batch_input",
        "batch_output",
        "batch_mask",
        "batch_use_png_info",
        "batch_png_info_dir",
        "batch_png_info_props",
    ]
    extra_inputs = [mode, scale_mode, scale_by, *(editors[n] for n in extra_names)]
    params.wire_reuse_seed(reuse, fields, panel.generation_info, panel.selected)
    wire_interrupt_skip(ctx, toprow, panel.task_id)
    wire_generate(ctx, toprow, fields, override, panel, _job_factory(ctx, extra_names), extra_inputs, scripts)
    wire_paste(ctx, "img2img", toprow, fields, override, scripts)
    image_names = ["img2img", "sketch", "inpaint", "inpaint_sketch", "inpaint_base"]
    image_inputs = [editors[n] for n in image_names]
    wire_interrogate(ctx, interrogate_buttons, toprow.prompt, mode, MODES, image_names, image_inputs)
    targets = ctx.targets
    targets.fields["img2img"] = fields
    targets.override_settings["img2img"] = override
    targets.images["img2img"] = editors["img2img"]
    targets.images["inpaint"] = editors["inpaint"]
    targets.img2img_mode_tabs = editors["tabs"]
    targets.img2img_mode = mode
    ctx.ui_config.register_all("img2img", list(fields.values()))
    params.start_at_native_size(ctx, fields)
    return fields


def _scaled_size(image: Image.Image, scale: float) -> tuple[int, int]:
    w, h = int(image.width * scale), int(image.height * scale)
    return max(8, w - w % 8), max(8, h - h % 8)


def _job_factory(ctx: UiContext, extra_names: list[str]) -> JobFactory:
    generation = ctx.services.generation

    def make(
        data: dict[str, Any], extra: Sequence[Any], user: str | None, hooks: ScriptHooks | None
    ) -> Callable[[JobControl], Any]:
        mode_index, scale_mode, scale_by, *rest = extra
        values = dict(zip(extra_names, rest, strict=True))
        mode = MODES[int(mode_index or 0)]
        if mode == "batch":
            return _batch_job(ctx, data, values, user, hooks)
        init = init_from_mode(mode, values)
        image = _flatten(init.image)
        if int(scale_mode or 0) == 1:
            data["width"], data["height"] = _scaled_size(image, float(scale_by or 1.0))
        if init.mask is None:
            data = {
                k: v
                for k, v in data.items()
                if k
                not in (
                    "mask_blur",
                    "inpainting_mask_invert",
                    "inpainting_fill",
                    "inpaint_full_res",
                    "inpaint_full_res_padding",
                )
            }
        request = Img2ImgRequest(**data, save_images=True)
        check_generation_request(ctx.services.access, ctx.services.options, request)
        mask = init.mask.convert("L") if init.mask is not None else None
        return lambda control: generation.img2img(
            request, control, user=user, init_images=[image], mask=mask, hooks=hooks
        )

    return make


def _image_files(folder: str) -> list[Path]:
    path = Path(folder)
    if not path.is_dir():
        raise gr.Error(f"Input directory {folder!r} does not exist.")
    return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _batch_job(
    ctx: UiContext, data: dict[str, Any], values: dict[str, Any], user: str | None, hooks: ScriptHooks | None
) -> Callable[[JobControl], Any]:
    """A1111's img2img batch: every image of a folder (with its mask from the mask folder)."""
    if ctx.services.access.path_settings_locked:  # reading and writing server folders
        raise gr.Error("Batch from directory is disabled on this server (--hide-ui-dir-config or --listen).")
    files = _image_files(str(values.get("batch_input") or ""))
    if not files:
        raise gr.Error("The input directory holds no images.")
    output = str(values.get("batch_output") or "").strip()
    mask_dir = Path(str(values.get("batch_mask") or "")) if values.get("batch_mask") else None
    overrides = dict(data.get("override_settings") or {})
    if output:
        overrides.update({"outdir_samples": output, "save_to_dirs": False})
    generation = ctx.services.generation
    first = Img2ImgRequest(**dict(data, override_settings=overrides or None), save_images=True)
    check_generation_request(ctx.services.access, ctx.services.options, first)

    def run(control: JobControl) -> GenerationResult:
        merged: GenerationResult | None = None
        for path in files:
            control.check()
            image = Image.open(path)
            fields = dict(data, override_settings=overrides or None)
            if values.get("batch_use_png_info"):
                fields.update(_png_info_fields(ctx, path, values, data))
            mask = _batch_mask(mask_dir, path)
            request = Img2ImgRequest(**fields, save_images=True)
            check_generation_request(ctx.services.access, ctx.services.options, request)  # png info fields
            result = generation.img2img(
                request, control, user=user, init_images=[_flatten(image)], mask=mask, hooks=hooks
            )
            if merged is None:
                merged = result
            else:
                merged.images += result.images
                merged.infotexts += result.infotexts
                merged.saved_paths += result.saved_paths
            if result.interrupted:
                merged.interrupted = True
                break
        assert merged is not None
        return merged

    return run


def _batch_mask(mask_dir: Path | None, image_path: Path) -> Image.Image | None:
    if mask_dir is None:
        return None
    candidates = [mask_dir / image_path.name, *(mask_dir / f"{image_path.stem}{ext}" for ext in IMAGE_EXTENSIONS)]
    for candidate in candidates:
        if candidate.is_file():
            return Image.open(candidate).convert("L")
    return None


def _png_info_fields(ctx: UiContext, path: Path, values: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    folder = str(values.get("batch_png_info_dir") or "").strip()
    source = Path(folder) / path.name if folder else path
    if not source.is_file():
        return {}
    text = read_info_from_image(Image.open(source)).parameters
    if not text:
        return {}
    wanted = set(values.get("batch_png_info_props") or [])
    field_of = {
        "Prompt": "prompt",
        "Negative prompt": "negative_prompt",
        "Seed": "seed",
        "CFG scale": "cfg_scale",
        "Sampler": "sampler_name",
        "Steps": "steps",
    }
    pasted = infotext_to_ui_values(text, tab="img2img", registry=ctx.services.registry, settings=ctx.settings)
    out = {field_of[k]: pasted.fields[field_of[k]] for k in wanted if field_of.get(k) in pasted.fields}
    for key in ("prompt", "negative_prompt"):  # A1111 appends the png info prompts to the UI's
        if key in out:
            out[key] = f"{data.get(key) or ''} {out[key]}".strip()
    if "sampler_name" in out and "scheduler" in pasted.fields:
        out["scheduler"] = pasted.fields["scheduler"]
    return out
