"""The results column of a tab: progress with ETA and live preview, gallery, generation info, buttons.

Jobs run in the job queue; the Gradio handler is a generator that polls the job's JobControl
and streams progress HTML, then the images. Gallery images are the saved files when they were
saved (so a download is the saved file, infotext included), else PNGs carrying the infotext.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components import Component
from PIL import Image

from modules.access.policy import Caller
from modules.core.jobs import Job, JobControl, JobInterrupted, QueueFull
from modules.generation.filename_pattern import FilenameContext
from modules.generation.image_io import read_info_from_image
from modules.generation.processing import GenerationResult
from modules.generation.saving import SavingOptions, save_image
from modules.ui.common import UiContext, error_html, infotext_html, tool_button
from modules.workflows.runner import JobKind, describe

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
LOG_CSV_COLUMNS = [
    "prompt",
    "seed",
    "width",
    "height",
    "sampler",
    "cfgs",
    "steps",
    "filename",
    "negative_prompt",
    "sd_model_name",
    "sd_model_hash",
]


@dataclass
class OutputPanel:
    tab: str
    gallery: gr.Gallery
    progress: gr.HTML
    html_info: gr.HTML
    generation_info: gr.Textbox  # hidden JSON of GenerationResult.js()
    task_id: gr.Textbox  # hidden id of the running job (for Interrupt / Skip)
    selected: gr.Number  # hidden index of the selected gallery image (-1: none)
    send_img2img: gr.Button
    send_inpaint: gr.Button
    send_extras: gr.Button
    files: gr.File

    @property
    def stream_outputs(self) -> list[Component]:
        return [self.gallery, self.progress, self.html_info, self.generation_info, self.task_id, self.selected]


def output_panel(ctx: UiContext, tab: str) -> OutputPanel:
    with gr.Column(elem_id=f"{tab}_results", elem_classes=["results"]):
        progress = gr.HTML(elem_id=f"{tab}_progress", elem_classes=["progress-panel"])
        gallery = gr.Gallery(
            label="Output",
            format="png",
            elem_id=f"{tab}_gallery",
            columns=4,
            height="auto",
            object_fit="contain",
            interactive=False,
            type="filepath",
        )
        with gr.Row(elem_id=f"image_buttons_{tab}", elem_classes=["image-buttons"]):
            folder = tool_button("📂", f"{tab}_open_folder")
            folder.visible = ctx.is_local and not ctx.services.args.hide_ui_dir_config
            save = tool_button("💾", f"save_{tab}")
            save_zip = tool_button("🗃️", f"save_zip_{tab}")
            send_img2img = tool_button("🖼️", f"{tab}_send_to_img2img")
            send_inpaint = tool_button("🎨️", f"{tab}_send_to_inpaint")
            send_extras = tool_button("📐", f"{tab}_send_to_extras")
        files = gr.File(None, file_count="multiple", interactive=False, visible=False, elem_id=f"download_files_{tab}")
        html_info = gr.HTML(elem_id=f"html_info_{tab}", elem_classes=["html-info"])
        generation_info = gr.Textbox(visible="hidden", elem_id=f"generation_info_{tab}")
        task_id = gr.Textbox(visible="hidden", elem_id=f"{tab}_task_id")
        selected = gr.Number(-1, visible="hidden", precision=0, elem_id=f"{tab}_selected_index")
    panel = OutputPanel(
        tab,
        gallery,
        progress,
        html_info,
        generation_info,
        task_id,
        selected,
        send_img2img,
        send_inpaint,
        send_extras,
        files,
    )
    _wire_buttons(ctx, panel, folder, save, save_zip)
    ctx.output_panels.append(panel)
    return panel


# --- streaming a job ----------------------------------------------------------------------------


def progress_html(job: Job, position: int, preview: str | None) -> str:
    control = job.control
    if position > 0:
        text = f"In queue: {position}"
        width = 0.0
    else:
        done = control.progress()
        eta = control.eta()
        width = done * 100
        text = f"{width:.0f}%" + (f" ETA: {_seconds(eta)}" if eta is not None else "")
        if control.job_count > 1:
            text += f" · batch {control.job_no + 1}/{control.job_count}"
        if control.sampling_steps:
            text += f" · step {control.sampling_step}/{control.sampling_steps}"
    bar = f'<div class="progressDiv"><div class="progress" style="width:{width:.1f}%">{text}</div></div>'
    image = f'<div class="livePreview"><img src="{preview}" alt="live preview"></div>' if preview else ""
    return bar + image


def _seconds(value: float) -> str:
    value = max(0, int(value))
    return f"{value // 60}m {value % 60:02d}s" if value >= 60 else f"{value}s"


def _preview_data_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def preview_at_output_size(image: Image.Image, size: tuple[int, int] | None) -> Image.Image:
    """A cheap preview is latent-sized (1/8): shown scaled to the image being made."""
    if size is None or image.size == size:
        return image.copy()
    return image.resize(size, Image.Resampling.BILINEAR)


def gallery_items(ctx: UiContext, result: GenerationResult) -> list[Any]:
    """Saved files where they exist (offset by a leading grid), else PNG-able images with infotext."""
    saved = list(result.saved_paths)
    offset = result.index_of_first_image
    items: list[Any] = []
    for i, (image, text) in enumerate(zip(result.images, result.infotexts, strict=True)):
        index = i - offset
        if 0 <= index < len(saved) and saved[index].lower().endswith(".png") and Path(saved[index]).is_file():
            items.append(saved[index])
            continue
        copy = image.copy()
        copy.info["parameters"] = text
        items.append(copy)
    return items


def stream_job(
    ctx: UiContext, panel: OutputPanel, kind: JobKind, fn: Callable[[JobControl], Any], caller: Caller
) -> Iterator[dict[Component, Any]]:
    """Submit `fn` for the caller (the same runner and quota as the API) and stream progress,
    then the result, into `panel`."""
    runner = ctx.services.runner
    started = time.perf_counter()
    try:
        job = runner.submit(caller, kind, fn)
    except (QueueFull, ValueError) as exc:  # the caller's queue limit: said in the tab, nothing queued
        yield {panel.progress: "", panel.html_info: error_html(describe(exc))}
        return
    yield {panel.task_id: job.id, panel.progress: progress_html(job, ctx.services.jobs.position(job), None)}
    preview_id, preview_uri = -1, None
    for position in runner.stream(job, POLL_SECONDS):
        control = job.control
        if control.preview is not None and control.preview_id != preview_id:
            # A1111 shows the live preview where the result will be, at the output's size
            preview = preview_at_output_size(control.preview, control.preview_size)
            preview_id, preview_uri = control.preview_id, _preview_data_uri(preview)
        yield {panel.progress: progress_html(job, position, preview_uri)}
    try:
        result = job.wait()
    except JobInterrupted:
        yield {panel.progress: "", panel.html_info: infotext_html("Interrupted before it started."), panel.task_id: ""}
        return
    except Exception as exc:  # boundary: show the job's error in the tab instead of a stack trace
        yield {
            panel.progress: "",
            panel.html_info: error_html(f"{type(exc).__name__}: {describe(exc)}"),
            panel.task_id: "",
        }
        return
    yield result_updates(ctx, panel, result, time.perf_counter() - started)


def time_taken_html(seconds: float) -> str:
    """A1111's footer under the generation info: "Time taken: 1 min. 2.3 sec."."""
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.1f} sec."
    if minutes >= 1:
        text = f"{int(minutes)} min. {text}"
    return (
        f'<div class="performance"><p class="time">Time taken: <wbr><span class="measurement">{text}</span></p></div>'
    )


def result_updates(
    ctx: UiContext, panel: OutputPanel, result: GenerationResult, seconds: float | None = None
) -> dict[Component, Any]:
    info = result.info
    comments = "; ".join(str(v) for v in result.p.comments.values() if isinstance(v, str))
    html_text = infotext_html(info, comments) if info else "<p>No images.</p>"
    if result.interrupted:
        html_text += "<p><b>Interrupted</b></p>"
    if seconds is not None:
        html_text += time_taken_html(seconds)
    return {
        panel.gallery: gallery_items(ctx, result),
        panel.progress: "",
        panel.html_info: html_text,
        panel.generation_info: result.info_json(),
        panel.task_id: "",
        panel.selected: -1,
    }


# --- buttons --------------------------------------------------------------------------------------


def selected_infotext(generation_info: str, index: int) -> str:
    try:
        data = json.loads(generation_info or "{}")
    except ValueError:
        return ""
    texts = data.get("infotexts") or []
    if not texts:
        return ""
    return str(texts[index] if 0 <= index < len(texts) else texts[data.get("index_of_first_image", 0)])


def gallery_paths(gallery: Any) -> list[str]:
    """File paths of a Gallery value (type="filepath": [(path, caption), ...])."""
    out = []
    for item in gallery or []:
        path = item[0] if isinstance(item, (list, tuple)) else item
        if isinstance(path, dict):
            path = path.get("path") or path.get("name")
        if path:
            out.append(str(path))
    return out


def save_to_log(ctx: UiContext, gallery: Any, generation_info: str, index: int, *, as_zip: bool) -> list[str]:
    """A1111's Save / Zip buttons: copies into outdir_save with infotext, a log.csv row per image."""
    paths = gallery_paths(gallery)
    if not paths:
        raise gr.Error("Nothing to save: generate an image first.")
    settings = ctx.settings
    chosen = list(range(len(paths))) if as_zip or index < 0 else [index]
    outdir = ctx.resolve_dir(str(settings["outdir_save"]))
    options = SavingOptions.from_settings(settings, filenames_max_length=ctx.services.args.filenames_max_length)
    saved: list[Path] = []
    rows = []
    info = json.loads(generation_info or "{}")
    for i in chosen:
        image = Image.open(paths[i])
        text = read_info_from_image(image).parameters or selected_infotext(generation_info, i)
        seeds = info.get("all_seeds") or [info.get("seed")]
        seed = seeds[min(max(i - int(info.get("index_of_first_image", 0)), 0), len(seeds) - 1)] if seeds else None
        ctx_name = FilenameContext(seed=seed, prompt=info.get("prompt"), negative_prompt=info.get("negative_prompt"))
        result = save_image(image, outdir, ctx=ctx_name, options=options, infotext=text, save_to_dirs=False)
        saved.append(result.path)
        rows.append(_log_row(info, seed, result.path))
    if settings.get("save_write_log_csv", True):
        _append_log_csv(outdir / "log.csv", rows)
    if as_zip:
        zip_path = outdir / f"images_{time.strftime('%Y%m%d%H%M%S')}.zip"
        with zipfile.ZipFile(zip_path, "w") as archive:
            for path in saved:
                archive.write(path, path.name)
        return [str(zip_path)]
    return [str(p) for p in saved]


def _log_row(info: dict[str, Any], seed: Any, path: Path) -> list[Any]:
    return [
        info.get("prompt", ""),
        seed,
        info.get("width"),
        info.get("height"),
        info.get("sampler_name"),
        info.get("cfg_scale"),
        info.get("steps"),
        path.name,
        info.get("negative_prompt", ""),
        info.get("sd_model_name"),
        info.get("sd_model_hash"),
    ]


def _append_log_csv(path: Path, rows: list[list[Any]]) -> None:
    new = not path.exists()
    with path.open("a", encoding="utf8", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(LOG_CSV_COLUMNS)
        writer.writerows(rows)


def open_folder(path: Path) -> None:
    """Open a folder in the desktop's file manager (local sessions only)."""
    path.mkdir(parents=True, exist_ok=True)
    if sys.platform == "win32":
        os.startfile(path)  # type: ignore[attr-defined]
    elif sys.platform == "darwin":
        subprocess.Popen(["open", str(path)])
    else:
        subprocess.Popen(["xdg-open", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wire_buttons(ctx: UiContext, panel: OutputPanel, folder: gr.Button, save: gr.Button, save_zip: gr.Button) -> None:
    tab = panel.tab

    def do_open() -> None:
        if not ctx.is_local or ctx.services.args.hide_ui_dir_config:
            raise gr.Error("Opening folders is only possible on a local session.")
        settings = ctx.settings
        key = "outdir_samples" if settings.get("outdir_samples") else f"outdir_{tab}_samples"
        open_folder(ctx.resolve_dir(str(settings.get(key) or "outputs")))

    def do_save(gallery: Any, info: str, index: float | None, as_zip: bool) -> Any:
        files = save_to_log(ctx, gallery, info, int(index if index is not None else -1), as_zip=as_zip)
        names = ", ".join(Path(f).name for f in files)
        return gr.update(value=files, visible=True), infotext_html(selected_infotext(info, int(index or 0))) + (
            f"<p>Saved: {names}</p>"
        )

    folder.click(do_open, queue=False)
    inputs = [panel.gallery, panel.generation_info, panel.selected]
    save.click(lambda g, i, s: do_save(g, i, s, False), inputs=inputs, outputs=[panel.files, panel.html_info])
    save_zip.click(lambda g, i, s: do_save(g, i, s, True), inputs=inputs, outputs=[panel.files, panel.html_info])

    def on_select(info: str, evt: gr.SelectData) -> tuple[int, Any]:
        index = int(evt.index) if isinstance(evt.index, int) else -1
        text = selected_infotext(info, index)
        return index, infotext_html(text) if text else gr.update()

    panel.gallery.select(on_select, inputs=[panel.generation_info], outputs=[panel.selected, panel.html_info])
