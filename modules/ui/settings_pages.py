"""The Settings tab's "Actions" and "Sysinfo" pages (A1111's): browser notifications, unloading
and reloading the checkpoint through the job queue, and the system information report
(`/internal/sysinfo`) with a check that a report was not edited."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from modules.core.jobs import JobControl
from modules.ui.common import UiContext, caller_of_gradio
from modules.workflows.runner import JobKind
from modules.workflows.sysinfo import check

SYSINFO_LINKS = (
    '<p><a href="./internal/sysinfo-download" class="sysinfo_big_link" download>Download system info</a></p>'
    '<p><a href="./internal/sysinfo" target="_blank">(or open as text in a new page)</a></p>'
)


def build_actions_page(ctx: UiContext) -> None:
    with gr.Row():
        notify = gr.Button("Request browser notifications", elem_id="request_notifications")
        unload = gr.Button("Unload SD checkpoint to RAM", elem_id="sett_unload_sd_model")
        reload = gr.Button("Load SD checkpoint to VRAM from RAM", elem_id="sett_reload_sd_model")
    outcome = gr.HTML(elem_id="settings_actions_result")
    # A1111: the browser asks the user; the answer decides whether completions notify
    notify.click(None, js="() => { requestNotificationPermission(); }")
    models = ctx.services.models
    unload.click(_model_action(ctx, JobKind.UNLOAD_MODEL, models.unload, "Checkpoint unloaded."), outputs=[outcome])

    def reload_active() -> str:
        loaded = models.reload()
        return "Checkpoint loaded." if loaded is not None else "No checkpoint is loaded; the next job loads it."

    reload.click(_model_action(ctx, JobKind.RELOAD_MODEL, reload_active, None), outputs=[outcome])


def _model_action(ctx: UiContext, kind: JobKind, action: Callable[[], Any], done: str | None) -> Callable[..., str]:
    """The same queued job and admin rule as POST /sdapi/v1/unload-checkpoint / reload-checkpoint."""

    def run(request: gr.Request) -> str:
        caller = caller_of_gradio(request)
        if not ctx.services.access.may_change_settings(caller.user):
            return '<p class="error">Only administrators may load or unload the checkpoint.</p>'

        def job(_: JobControl) -> Any:
            return action()

        try:
            said = ctx.services.runner.submit(caller, kind, job).wait()
        except Exception as exc:  # boundary: said on the page
            return f'<p class="error">{html.escape(f"{type(exc).__name__}: {exc}")}</p>'
        return f"<p>{html.escape(done or str(said))}</p>"

    return run


def build_sysinfo_page() -> None:
    gr.HTML(SYSINFO_LINKS, elem_id="sysinfo_download")
    gr.HTML("<p>Check system info for validity</p>")
    upload = gr.File(label="Sysinfo", file_types=[".json", ".txt"], elem_id="sysinfo_check_file", type="filepath")
    verdict = gr.HTML(elem_id="sysinfo_validity")

    def validate(path: str | None) -> str:
        if not path:
            return ""
        text = Path(path).read_text(encoding="utf8", errors="replace")
        return "<p>Valid</p>" if check(text) else "<p>Invalid</p>"

    upload.change(validate, inputs=[upload], outputs=[verdict], show_progress="hidden")
