"""Event wiring shared by txt2img and img2img: Generate (streamed job), paste infotext, send-to."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import gradio as gr
from gradio.components import Component
from PIL import Image

from modules.access.policy import AccessDenied
from modules.core.jobs import JobControl
from modules.core.options import OptionError
from modules.generation.hooks import ScriptHooks
from modules.generation.infotext_fields import Tab
from modules.models.errors import ModelError
from modules.networks.infotext import LORA_HASHES
from modules.ui.common import Fields, UiContext, bind_values, caller_of_gradio, error_html, updates_for, user_of
from modules.ui.outputs import OutputPanel, gallery_paths, selected_infotext, stream_job
from modules.ui.params import refiner_request_values
from modules.ui.paste import infotext_to_ui_values, override_settings_from_entries, with_refiner_toggle
from modules.ui.scripts_ui import ScriptPasteField, ScriptsUi, paste_script_updates, unique_components
from modules.ui.toprow import Toprow
from modules.workflows.runner import JobKind, describe

log = logging.getLogger(__name__)

# (values by field name, extra input values, user, script hooks or None) -> the job function to
# queue; the factory checks the request it builds (check_generation_request) before returning
JobFactory = Callable[[dict[str, Any], Sequence[Any], str | None, ScriptHooks | None], Callable[[JobControl], Any]]


def wire_generate(
    ctx: UiContext,
    toprow: Toprow,
    fields: Fields,
    override: gr.Dropdown,
    panel: OutputPanel,
    make_job: JobFactory,
    extra_inputs: Sequence[Component] = (),
    scripts: ScriptsUi | None = None,
) -> None:
    """Generate: component values -> request (by field name) + the scripts' hooks for the values
    their controls show -> queued job -> streamed results."""
    names = list(fields)
    n_extra = len(extra_inputs)
    script_inputs = list(scripts.inputs) if scripts is not None else []
    n_head = n_extra + len(script_inputs)
    kind = toprow.tab

    def run(request: gr.Request, *values: Any) -> Iterator[dict[Component, Any]]:
        extra, script_values = values[:n_extra], values[n_extra:n_head]
        overrides, field_values = values[n_head], values[n_head + 1 :]
        data = bind_values(names, field_values)
        refiner_request_values(data)
        try:
            entries = override_settings_from_entries(overrides or [], ctx.services.registry)
            data["override_settings"] = entries or None
            hooks = scripts.hooks(script_values) if scripts is not None else None
            job_fn = make_job(data, extra, user_of(request), hooks)
        except (ValueError, OptionError, AccessDenied, ModelError) as exc:  # pydantic ValidationError is a ValueError
            yield {panel.html_info: error_html(describe(exc)), panel.progress: ""}
            return
        yield from stream_job(ctx, panel, JobKind(kind), job_fn, caller_of_gradio(request))

    inputs = [*extra_inputs, *script_inputs, override, *(fields[n] for n in names)]
    toprow.generate.click(
        run,
        inputs=inputs,
        outputs=panel.stream_outputs,
        show_progress="hidden",
        concurrency_limit=None,  # the job queue orders the work; the UI must stay responsive
        api_name=f"{kind}_generate",
    )


def wire_paste(
    ctx: UiContext, tab: Tab, toprow: Toprow, fields: Fields, override: gr.Dropdown, scripts: ScriptsUi | None = None
) -> None:
    """↙: fill the tab (scripts' fields too) from the infotext in the prompt box (or params.txt
    when the box is empty)."""
    names = list(fields)
    extras = scripts.paste_fields if scripts is not None else []
    outputs = [*(fields[n] for n in names), override, *script_outputs(fields, extras)]

    def paste(prompt: str) -> dict[Component, Any]:
        text = prompt or ""
        if not text.strip():
            params_file = ctx.services.paths.params_file
            text = params_file.read_text(encoding="utf8") if params_file.is_file() else ""
        if not text.strip():
            return {}
        return paste_updates(ctx, tab, fields, override, text, extras)

    toprow.paste.click(paste, inputs=[toprow.prompt], outputs=outputs, show_progress="hidden")


def script_outputs(fields: Fields, extras: Sequence[ScriptPasteField]) -> list[Component]:
    """Script components a paste writes, each once and not already among the tab's fields."""
    taken = {id(c) for c in fields.values()}
    return [c for c in unique_components(extras) if id(c) not in taken]


PROMPT_KEYS = ("Prompt", "Negative prompt", "Hires prompt", "Hires negative prompt")


def _on_infotext_pasted(ctx: UiContext, text: str, params: dict[str, Any]) -> None:
    """A1111's on_infotext_pasted: the built-in Lora step first (each `<lora:NAME:` whose hash is in
    "Lora hashes" points at the local file with that hash), then the extensions' callbacks."""
    hashes = params.get(LORA_HASHES)
    if hashes:
        preferred = str(ctx.settings.get("lora_preferred_name") or "Alias from file")
        for key in PROMPT_KEYS:
            if isinstance(params.get(key), str):
                params[key] = ctx.services.networks.rewrite_tags_by_hash(
                    params[key], str(hashes), preferred_name=preferred
                )
    if ctx.extension_host is not None:
        ctx.extension_host.callbacks.infotext_pasted(text, params)


def paste_updates(
    ctx: UiContext,
    tab: Tab,
    fields: Fields,
    override: gr.Dropdown,
    text: str,
    extras: Sequence[ScriptPasteField] = (),
) -> dict[Component, Any]:
    """Updates for the tab's fields (by request name), "Override settings" and the scripts' paste
    fields in `extras` (on_infotext_pasted callbacks see the parsed params first, as in A1111)."""
    host = ctx.extension_host
    pasted = infotext_to_ui_values(
        text,
        tab=tab,
        registry=ctx.services.registry,
        settings=ctx.settings,
        styles=ctx.services.generation.styles,
        accepted_fields=fields,
        on_parsed=lambda text, params: _on_infotext_pasted(ctx, text, params),
    )
    values = pasted.fields
    if "refiner_enable" in fields:
        values = with_refiner_toggle(values, lambda name: _checkpoint_title(ctx, name))
    updates: dict[Component, Any] = updates_for(fields, values)
    updates[override] = gr.update(
        choices=pasted.override_entries, value=pasted.override_entries, visible=bool(pasted.override_entries)
    )
    if extras:
        script_updates = paste_script_updates(extras, pasted.params, host.problems if host is not None else None)
        updates.update({c: v for c, v in script_updates.items() if c not in updates})
    return updates


def _checkpoint_title(ctx: UiContext, name: str) -> str | None:
    try:
        return str(ctx.services.models.find_checkpoint(name).title)
    except ModelError:  # unknown or unreadable: the dropdown shows the pasted name as written
        return None


def wire_send_to(ctx: UiContext) -> None:
    """After all tabs exist: each output panel's Send to img2img / inpaint / extras buttons."""
    for panel in ctx.output_panels:
        _wire_send_image(ctx, panel, panel.send_img2img, "img2img", "img2img")
        _wire_send_image(ctx, panel, panel.send_inpaint, "inpaint", "img2img")
        _wire_send_image(ctx, panel, panel.send_extras, "extras", "extras")


def selected_image(gallery: Any, index: float | None, generation_info: str) -> tuple[Image.Image, str]:
    paths = gallery_paths(gallery)
    if not paths:
        raise gr.Error("No image to send: generate one first.")
    position = int(index) if index is not None and 0 <= int(index) < len(paths) else -1
    if position < 0:
        first = json.loads(generation_info or "{}").get("index_of_first_image", 0) if generation_info else 0
        position = min(int(first), len(paths) - 1)
    image = Image.open(paths[position])
    image.load()
    return image, selected_infotext(generation_info, position)


def _wire_send_image(ctx: UiContext, panel: OutputPanel, button: gr.Button, target: str, main_tab: str) -> None:
    targets = ctx.targets
    image_component = targets.images.get(target)
    if image_component is None:
        button.visible = False
        return
    fields = targets.fields.get("img2img", {}) if target in ("img2img", "inpaint") else {}
    override: Any = targets.override_settings.get("img2img")
    names = [
        n
        for n in (
            "prompt",
            "negative_prompt",
            "seed",
            "steps",
            "sampler_name",
            "scheduler",
            "cfg_scale",
            "width",
            "height",
            "styles",
        )
        if n in fields
    ]
    outputs: list[Component] = [image_component, targets.main_tabs]
    if targets.img2img_mode_tabs is not None and target in ("img2img", "inpaint"):
        outputs.append(targets.img2img_mode_tabs)
    if targets.img2img_mode is not None and target in ("img2img", "inpaint"):
        outputs.append(targets.img2img_mode)
    outputs += [fields[n] for n in names]
    if override is not None and names:
        outputs.append(override)
    scripts: ScriptsUi | None = targets.scripts.get("img2img") if names else None
    extras = scripts.send_fields() if scripts is not None else []  # A1111: the scripts' paste_field_names
    outputs += script_outputs(fields, extras)

    def send(gallery: Any, index: float | None, info: str) -> dict[Component, Any]:
        image, text = selected_image(gallery, index, info)
        value: Any = {"background": image, "layers": [], "composite": image} if target == "inpaint" else image
        updates: dict[Component, Any] = {image_component: value, targets.main_tabs: gr.Tabs(selected=main_tab)}
        if targets.img2img_mode_tabs is not None and target in ("img2img", "inpaint"):
            updates[targets.img2img_mode_tabs] = gr.Tabs(selected=f"img2img_{target}_tab")
        if targets.img2img_mode is not None and target in ("img2img", "inpaint"):
            updates[targets.img2img_mode] = 0 if target == "img2img" else 2
        if text and names and override is not None:
            updates.update(paste_updates(ctx, "img2img", {n: fields[n] for n in names}, override, text, extras))
        return updates

    button.click(send, inputs=[panel.gallery, panel.selected, panel.generation_info], outputs=outputs)
