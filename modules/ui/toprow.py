"""The top row of txt2img/img2img: prompts with token counters, Generate/Interrupt/Skip, styles, paste."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any

import gradio as gr

from modules.core.jobs import JobNotFound
from modules.extension_host.generation_hooks import before_token_counter
from modules.generation.chunking import PromptChunker, TokenCount
from modules.generation.conditioning import count_prompt_tokens
from modules.generation.styles import PromptStyle, StyleDatabase
from modules.models.tokenizer import load_clip_tokenizer
from modules.ui.common import UiContext, tool_button, user_of


class TokenCounter:
    """A1111's prompt token counter on the offline CLIP tokenizer (same BPE for SD1/SD2/SDXL)."""

    def __init__(self, cache_root: Any) -> None:
        self._cache_root = cache_root
        self._chunker: PromptChunker | None = None
        self._lock = threading.Lock()

    def _get_chunker(self) -> PromptChunker:
        with self._lock:
            if self._chunker is None:
                self._chunker = PromptChunker(load_clip_tokenizer(self._cache_root))
            return self._chunker

    def count(self, prompt: str, steps: int, *, is_positive: bool = True, comments: bool = True) -> TokenCount:
        """The longest text the prompt turns into (AND parts, editing schedule), as in A1111."""
        return count_prompt_tokens(
            self._get_chunker(), prompt, steps, is_positive=is_positive, remove_comments=comments
        )


def token_counter_html(count: TokenCount) -> str:
    return f"<span>{count.count}/{count.limit}</span>"


@dataclass
class Toprow:
    tab: str
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    token_counter: gr.HTML
    negative_token_counter: gr.HTML
    generate: gr.Button
    interrupt: gr.Button
    skip: gr.Button
    styles: gr.Dropdown
    paste: gr.Button


def build_toprow(ctx: UiContext, tab: str, counter: TokenCounter) -> Toprow:
    styles_db = ctx.services.generation.styles
    with gr.Row(elem_id=f"{tab}_toprow", elem_classes=["toprow"]):
        with gr.Column(scale=6, elem_id=f"{tab}_prompt_container", min_width=240):
            with gr.Row(elem_classes=["prompt-row"]):
                prompt = gr.Textbox(
                    label="Prompt",
                    lines=3,
                    placeholder="Prompt\n(Press Ctrl+Enter to generate, Alt+Enter to skip, Esc to interrupt)",
                    elem_id=f"{tab}_prompt",
                    elem_classes=["prompt"],
                )
                token_counter = gr.HTML(
                    "<span>0/75</span>", elem_id=f"{tab}_token_counter", elem_classes=["token-counter"]
                )
            with gr.Row(elem_classes=["prompt-row"]):
                negative = gr.Textbox(
                    label="Negative prompt",
                    lines=2,
                    placeholder="Negative prompt\n(Press Ctrl+Enter to generate, Alt+Enter to skip, Esc to interrupt)",
                    elem_id=f"{tab}_neg_prompt",
                    elem_classes=["prompt"],
                )
                negative_counter = gr.HTML(
                    "<span>0/75</span>", elem_id=f"{tab}_negative_token_counter", elem_classes=["token-counter"]
                )
        with gr.Column(scale=1, elem_id=f"{tab}_actions_column", min_width=150):
            with gr.Row(elem_id=f"{tab}_generate_box", elem_classes=["generate-box"]):
                interrupt = gr.Button("Interrupt", elem_id=f"{tab}_interrupt", elem_classes=["generate-box-interrupt"])
                skip = gr.Button("Skip", elem_id=f"{tab}_skip", elem_classes=["generate-box-skip"])
                generate = gr.Button("Generate", variant="primary", elem_id=f"{tab}_generate")
            with gr.Row(elem_id=f"{tab}_tools", elem_classes=["style-tools"]):
                paste = tool_button("↙️", f"{tab}_paste")  # A1111 clients and extensions look these ids up
                clear = tool_button("🗑️", f"{tab}_clear_prompt")
                apply_style = tool_button("🖌️", f"{tab}_style_apply")
                refresh_styles = tool_button("🔄", f"{tab}_style_refresh")
            styles = gr.Dropdown(
                sorted(styles_db.styles),
                value=[],
                multiselect=True,
                label="Styles",
                elem_id=f"{tab}_styles",
                show_label=False,
            )
    _style_editor(ctx, tab, styles, styles_db, prompt, negative)
    row = Toprow(tab, prompt, negative, token_counter, negative_counter, generate, interrupt, skip, styles, paste)
    _wire_toprow(ctx, row, counter, clear, apply_style, refresh_styles)
    return row


def _style_editor(
    ctx: UiContext, tab: str, styles: gr.Dropdown, db: StyleDatabase, prompt: gr.Textbox, negative: gr.Textbox
) -> None:
    with gr.Accordion("Edit styles", open=False, elem_id=f"{tab}_edit_styles"):
        name = gr.Dropdown(
            sorted(db.styles), label="Style", allow_custom_value=True, elem_id=f"{tab}_edit_style_name", value=None
        )
        style_prompt = gr.Textbox(label="Style prompt", lines=2, elem_id=f"{tab}_edit_style_prompt")
        style_negative = gr.Textbox(label="Style negative prompt", lines=2, elem_id=f"{tab}_edit_style_neg_prompt")
        with gr.Row():
            copy = gr.Button("Copy from prompts", elem_id=f"{tab}_edit_style_copy", size="sm")
            save = gr.Button("Save", elem_id=f"{tab}_edit_style_save", size="sm", variant="primary")
            delete = gr.Button("Delete", elem_id=f"{tab}_edit_style_delete", size="sm", variant="stop")

    def load(style_name: str | None) -> tuple[str, str]:
        style = db.styles.get(style_name or "")
        return (style.prompt, style.negative_prompt) if style else ("", "")

    def store(style_name: str | None, text: str, neg: str) -> tuple[Any, Any]:
        if not style_name or not style_name.strip():
            raise gr.Error("Give the style a name first.")
        db.save_style(PromptStyle(style_name.strip(), text, neg))
        db.save()
        names = sorted(db.styles)
        return gr.update(choices=names), gr.update(choices=names)

    def remove(style_name: str | None) -> tuple[Any, Any, str, str]:
        if not style_name or style_name not in db.styles:
            raise gr.Error(f"No style named {style_name!r}.")
        db.delete_style(style_name)
        db.save()
        names = sorted(db.styles)
        return gr.update(choices=names, value=None), gr.update(choices=names), "", ""

    name.change(load, inputs=[name], outputs=[style_prompt, style_negative], queue=False)
    copy.click(lambda p, n: (p, n), inputs=[prompt, negative], outputs=[style_prompt, style_negative], queue=False)
    save.click(store, inputs=[name, style_prompt, style_negative], outputs=[name, styles])
    delete.click(remove, inputs=[name], outputs=[name, styles, style_prompt, style_negative])


def _wire_toprow(
    ctx: UiContext, row: Toprow, counter: TokenCounter, clear: gr.Button, apply_style: gr.Button, refresh: gr.Button
) -> None:
    db = ctx.services.generation.styles

    def count(text: str, style_names: list[str] | None, positive: bool) -> str:
        settings = ctx.settings
        steps = 20  # prompt-editing schedules are counted at A1111's default
        if ctx.extension_host is not None:  # on_before_token_counter may change what is counted
            counted = before_token_counter(
                ctx.extension_host.callbacks, text or "", steps, list(style_names or []), is_positive=positive
            )
            text, steps, style_names = counted.prompt, int(counted.steps), list(counted.styles)
        if style_names:
            text = (db.apply_styles_to_prompt if positive else db.apply_negative_styles_to_prompt)(text, style_names)
        return token_counter_html(
            counter.count(text or "", steps, is_positive=positive, comments=bool(settings["enable_prompt_comments"]))
        )

    for box, out, positive in (
        (row.prompt, row.token_counter, True),
        (row.negative_prompt, row.negative_token_counter, False),
    ):
        box.change(
            lambda t, s, _p=positive: count(t, s, _p),
            inputs=[box, row.styles],
            outputs=[out],
            trigger_mode="always_last",
            show_progress="hidden",
            queue=False,
        )

    def apply(prompt: str, negative: str, names: list[str] | None) -> tuple[str, str, list[str]]:
        names = names or []
        return db.apply_styles_to_prompt(prompt, names), db.apply_negative_styles_to_prompt(negative, names), []

    apply_style.click(
        apply,
        inputs=[row.prompt, row.negative_prompt, row.styles],
        outputs=[row.prompt, row.negative_prompt, row.styles],
    )
    # A1111 asks "Delete prompt?" in the browser first; Cancel keeps both prompts
    clear.click(
        None,
        inputs=[row.prompt, row.negative_prompt],
        outputs=[row.prompt, row.negative_prompt],
        js="(p, n) => confirm_clear_prompt(p, n)",
        queue=False,
    )

    def reload_styles(current: list[str] | None) -> Any:
        db.reload()
        names = sorted(db.styles)
        return gr.update(choices=names, value=[n for n in current or [] if n in names])

    refresh.click(reload_styles, inputs=[row.styles], outputs=[row.styles])


def wire_interrupt_skip(ctx: UiContext, row: Toprow, task_id: gr.Textbox) -> None:
    """Interrupt / Skip act on this tab's running job (by its id), never on another user's."""
    jobs = ctx.services.jobs

    def interrupt(job_id: str, request: gr.Request) -> None:
        user = user_of(request)
        if not job_id:
            jobs.interrupt(user=user)
            return
        try:
            job = jobs.get(job_id, user=user)
        except JobNotFound:
            return
        control = job.control
        # A1111: with interrupt_after_current, the first click on a multi-batch job finishes the batch.
        if (
            bool(ctx.settings["interrupt_after_current"])
            and control.job_count > 1
            and not control.stopping_after_current.is_set()
        ):
            control.stop_after_current()
            return
        jobs.interrupt(job_id, user=user)

    def skip(job_id: str, request: gr.Request) -> None:
        with contextlib.suppress(JobNotFound):
            jobs.skip(job_id or None, user=user_of(request))

    row.interrupt.click(interrupt, inputs=[task_id], queue=False)
    row.skip.click(skip, inputs=[task_id], queue=False)
