"""The Train tab (A1111 layout and element ids): Create embedding, Create hypernetwork, Preprocess
images and Train sub-tabs, and an output column with progress, the latest preview and the result.

Buttons call modules/ui/train_actions.py; training runs as a queued job (services.training) and the
handlers are generators that poll its progress, so the page stays responsive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.components import Component

from modules.networks.hypernetworks import activation_classes
from modules.train.requests import DEFAULT_HYPERNETWORK_SIZES, WEIGHT_INITS
from modules.ui.common import UiContext, caller_of_gradio, tool_button, user_of
from modules.ui.train_actions import (
    TXT2IMG_PREVIEW_FIELDS,
    TrainView,
    create_embedding_action,
    create_hypernetwork_action,
    embedding_names,
    hypernetwork_names,
    interrupt_action,
    preprocess_action,
    template_names,
    train_action,
)

Parts = dict[str, Any]  # field or button name -> component of one sub-tab
HYPERNETWORK_SIZE_CHOICES = ["768", "1024", "320", "640", "1280"]
WIKI = "https://github.com/AUTOMATIC1111/stable-diffusion-webui/wiki/Textual-Inversion"


@dataclass
class TrainOutputs:
    """The output column (A1111: ti_output, ti_gallery, ti_progress, ti_error) plus our extras."""

    output: gr.Textbox
    gallery: gr.Gallery
    progress: gr.HTML
    outcome: gr.HTML
    preview: gr.Image
    task_id: gr.Textbox

    @property
    def all(self) -> list[Component]:
        return [self.output, self.gallery, self.progress, self.outcome, self.preview, self.task_id]

    def updates(self, view: TrainView) -> dict[Component, Any]:
        out: dict[Component, Any] = {self.progress: view.progress, self.task_id: "" if view.done else view.task_id}
        if view.output is not None:
            out[self.output] = view.output
        if view.outcome is not None:
            out[self.outcome] = view.outcome
        if view.reset:
            out[self.preview] = gr.update(value=None, visible=False)
            out[self.gallery] = []
        if view.preview is not None:
            out[self.preview] = gr.update(value=view.preview, visible=True)
        if view.gallery is not None:
            out[self.gallery] = view.gallery
        return out


def _activation_choices() -> list[str]:
    return ["linear", *sorted(k for k in activation_classes() if k != "linear")]


def _create_embedding_tab() -> Parts:
    f: Parts = {}
    f["name"] = gr.Textbox(label="Name", elem_id="train_new_embedding_name")
    f["init_text"] = gr.Textbox("*", label="Initialization text", elem_id="train_initialization_text")
    f["num_vectors_per_token"] = gr.Slider(
        1, 75, value=1, step=1, label="Number of vectors per token", elem_id="train_nvpt"
    )
    f["overwrite_old"] = gr.Checkbox(False, label="Overwrite Old Embedding", elem_id="train_overwrite_old_embedding")
    with gr.Row():
        gr.HTML("", scale=3)
        f["button"] = gr.Button("Create embedding", variant="primary", elem_id="train_create_embedding", scale=1)
    return f


def _create_hypernetwork_tab() -> Parts:
    f: Parts = {}
    f["name"] = gr.Textbox(label="Name", elem_id="train_new_hypernetwork_name")
    f["enable_sizes"] = gr.CheckboxGroup(
        HYPERNETWORK_SIZE_CHOICES,
        value=[str(s) for s in DEFAULT_HYPERNETWORK_SIZES],
        label="Modules",
        elem_id="train_new_hypernetwork_sizes",
    )
    f["layer_structure"] = gr.Textbox(
        "1, 2, 1",
        label="Enter hypernetwork layer structure",
        placeholder="1st and last digit must be 1. ex:'1, 2, 1'",
        elem_id="train_new_hypernetwork_layer_structure",
    )
    f["activation_func"] = gr.Dropdown(
        _activation_choices(),
        value="linear",
        label="Select activation function of hypernetwork. Recommended : Swish / Linear(none)",
        elem_id="train_new_hypernetwork_activation_func",
    )
    f["weight_init"] = gr.Dropdown(
        list(WEIGHT_INITS),
        value="Normal",
        label="Select Layer weights initialization. Recommended: Kaiming for relu-like, Xavier for sigmoid-like, "
        "Normal otherwise",
        elem_id="train_new_hypernetwork_initialization_option",
    )
    f["add_layer_norm"] = gr.Checkbox(
        False, label="Add layer normalization", elem_id="train_new_hypernetwork_add_layer_norm"
    )
    f["use_dropout"] = gr.Checkbox(False, label="Use dropout", elem_id="train_new_hypernetwork_use_dropout")
    f["dropout_structure"] = gr.Textbox(
        "0, 0, 0",
        label="Enter hypernetwork Dropout structure (or empty). Recommended : 0~0.35 incrementing sequence: "
        "0, 0.05, 0.15",
        placeholder="1st and last digit must be 0 and values should be between 0 and 1. ex:'0, 0.01, 0'",
        elem_id="train_new_hypernetwork_dropout_structure",
    )
    f["overwrite_old"] = gr.Checkbox(
        False, label="Overwrite Old Hypernetwork", elem_id="train_overwrite_old_hypernetwork"
    )
    with gr.Row():
        gr.HTML("", scale=3)
        f["button"] = gr.Button("Create hypernetwork", variant="primary", elem_id="train_create_hypernetwork", scale=1)
    return f


def _preprocess_tab() -> Parts:
    f: Parts = {}
    f["process_src"] = gr.Textbox(label="Source directory", elem_id="train_process_src")
    f["process_dst"] = gr.Textbox(label="Destination directory", elem_id="train_process_dst")
    f["process_width"] = gr.Slider(64, 2048, value=512, step=8, label="Width", elem_id="train_process_width")
    f["process_height"] = gr.Slider(64, 2048, value=512, step=8, label="Height", elem_id="train_process_height")
    f["preprocess_txt_action"] = gr.Dropdown(
        ["ignore", "copy", "prepend", "append"],
        value="ignore",
        label="Existing Caption txt Action",
        elem_id="train_preprocess_txt_action",
    )
    with gr.Row():
        f["process_keep_original_size"] = gr.Checkbox(
            False, label="Keep original size", elem_id="train_process_keep_original_size"
        )
        f["process_flip"] = gr.Checkbox(False, label="Create flipped copies", elem_id="train_process_flip")
        f["process_split"] = gr.Checkbox(False, label="Split oversized images", elem_id="train_process_split")
        f["process_multicrop"] = gr.Checkbox(False, label="Auto-sized crop", elem_id="train_process_multicrop")
        f["process_caption_from_filename"] = gr.Checkbox(
            True, label="Create caption from file name", elem_id="train_process_caption_from_filename"
        )
        f["overwrite"] = gr.Checkbox(False, label="Overwrite destination files", elem_id="train_process_overwrite")
    with gr.Row(visible=False) as flip_row:
        f["flip_modes"] = gr.CheckboxGroup(
            ["Horizontal", "Vertical", "Both"], value=["Horizontal"], label="Flip", elem_id="train_process_flip_modes"
        )
    with gr.Row(visible=False) as split_row:
        f["process_split_threshold"] = gr.Slider(
            0.0, 1.0, value=0.5, step=0.05, label="Split image threshold", elem_id="train_process_split_threshold"
        )
        f["process_overlap_ratio"] = gr.Slider(
            0.0, 0.9, value=0.2, step=0.05, label="Split image overlap ratio", elem_id="train_process_overlap_ratio"
        )
    with gr.Column(visible=False) as multicrop_col:
        _multicrop_controls(f)
    with gr.Row():
        gr.HTML("", scale=3)
        with gr.Column(scale=1):
            f["interrupt"] = gr.Button("Interrupt", elem_id="train_interrupt_preprocessing")
            f["button"] = gr.Button("Preprocess", variant="primary", elem_id="train_run_preprocess")
    for toggle, shown in ((f["process_flip"], flip_row), (f["process_split"], split_row)):
        toggle.change(lambda on: gr.update(visible=bool(on)), inputs=[toggle], outputs=[shown], queue=False)
    f["process_multicrop"].change(
        lambda on: gr.update(visible=bool(on)), inputs=[f["process_multicrop"]], outputs=[multicrop_col], queue=False
    )
    return f


def _multicrop_controls(f: Parts) -> None:
    gr.Markdown("Each image is center-cropped with an automatically chosen width and height.")
    with gr.Row():
        f["process_multicrop_mindim"] = gr.Slider(
            64, 2048, value=384, step=8, label="Dimension lower bound", elem_id="train_process_multicrop_mindim"
        )
        f["process_multicrop_maxdim"] = gr.Slider(
            64, 2048, value=768, step=8, label="Dimension upper bound", elem_id="train_process_multicrop_maxdim"
        )
    with gr.Row():
        f["process_multicrop_minarea"] = gr.Slider(
            64 * 64,
            2048 * 2048,
            value=64 * 64,
            step=1,
            label="Area lower bound",
            elem_id="train_process_multicrop_minarea",
        )
        f["process_multicrop_maxarea"] = gr.Slider(
            64 * 64,
            2048 * 2048,
            value=640 * 640,
            step=1,
            label="Area upper bound",
            elem_id="train_process_multicrop_maxarea",
        )
    with gr.Row():
        f["process_multicrop_objective"] = gr.Radio(
            ["Maximize area", "Minimize error"],
            value="Maximize area",
            label="Resizing objective",
            elem_id="train_process_multicrop_objective",
        )
        f["process_multicrop_threshold"] = gr.Slider(
            0.0, 1.0, value=0.1, step=0.01, label="Error threshold", elem_id="train_process_multicrop_threshold"
        )


def _refresh_dropdown(
    dropdown: gr.Dropdown, names: Callable[[], list[str]], elem_id: str, *, default: str | None = None
) -> None:
    """A1111's 🔄 next to a list: read the folder again, keep the selection if it still exists."""
    button = tool_button("🔄", elem_id)

    def refresh(current: str | None) -> Any:
        fresh = names()
        value = current if current in fresh else (default if default in fresh else None)
        return gr.update(choices=fresh, value=value)

    button.click(refresh, inputs=[dropdown], outputs=[dropdown], queue=False)


def _train_tab(ctx: UiContext) -> Parts:
    f: Parts = {}
    gr.HTML(
        "<p style='margin-bottom: 0.7em'>Train an embedding or Hypernetwork; you must specify a directory with a "
        f'set of 1:1 ratio images <a href="{WIKI}" style="font-weight:bold;">[wiki]</a></p>'
    )
    with gr.Row():
        f["train_embedding"] = gr.Dropdown(
            embedding_names(ctx), value=None, label="Embedding", elem_id="train_embedding"
        )
        _refresh_dropdown(f["train_embedding"], lambda: embedding_names(ctx), "refresh_train_embedding_name")
        f["train_hypernetwork"] = gr.Dropdown(
            hypernetwork_names(ctx), value=None, label="Hypernetwork", elem_id="train_hypernetwork"
        )
        _refresh_dropdown(f["train_hypernetwork"], lambda: hypernetwork_names(ctx), "refresh_train_hypernetwork_name")
    with gr.Row():
        f["embedding_learn_rate"] = gr.Textbox(
            "0.005",
            label="Embedding Learning rate",
            placeholder="Embedding Learning rate",
            elem_id="train_embedding_learn_rate",
        )
        f["hypernetwork_learn_rate"] = gr.Textbox(
            "0.00001",
            label="Hypernetwork Learning rate",
            placeholder="Hypernetwork Learning rate",
            elem_id="train_hypernetwork_learn_rate",
        )
    with gr.Row():
        f["clip_grad_mode"] = gr.Dropdown(
            ["disabled", "value", "norm"], value="disabled", label="Gradient Clipping", elem_id="train_clip_grad_mode"
        )
        f["clip_grad_value"] = gr.Textbox(
            "0.1", placeholder="Gradient clip value", show_label=False, elem_id="train_clip_grad_value"
        )
    with gr.Row():
        f["batch_size"] = gr.Number(1, label="Batch size", precision=0, elem_id="train_batch_size")
        f["gradient_step"] = gr.Number(
            1, label="Gradient accumulation steps", precision=0, elem_id="train_gradient_step"
        )
    f["data_root"] = gr.Textbox(
        label="Dataset directory", placeholder="Path to directory with input images", elem_id="train_dataset_directory"
    )
    f["log_directory"] = gr.Textbox(
        "textual_inversion",
        label="Log directory",
        placeholder="Path to directory where to write outputs",
        elem_id="train_log_directory",
    )
    with gr.Row():
        templates = template_names(ctx)
        default_template = "style_filewords.txt" if "style_filewords.txt" in templates else None
        f["template_filename"] = gr.Dropdown(
            templates, value=default_template, label="Prompt template", elem_id="train_template_file"
        )
        # A1111's element id, typo included (extensions and user scripts look it up)
        _refresh_dropdown(f["template_filename"], lambda: template_names(ctx), "refrsh_train_template_file")
    f["training_width"] = gr.Slider(64, 2048, value=512, step=8, label="Width", elem_id="train_training_width")
    f["training_height"] = gr.Slider(64, 2048, value=512, step=8, label="Height", elem_id="train_training_height")
    f["varsize"] = gr.Checkbox(False, label="Do not resize images", elem_id="train_varsize")
    f["steps"] = gr.Number(100000, label="Max steps", precision=0, elem_id="train_steps")
    with gr.Row():
        f["create_image_every"] = gr.Number(
            500,
            label="Save an image to log directory every N steps, 0 to disable",
            precision=0,
            elem_id="train_create_image_every",
        )
        f["save_every"] = gr.Number(
            500,
            label="Save a copy of embedding to log directory every N steps, 0 to disable",
            precision=0,
            elem_id="train_save_embedding_every",
        )
    _train_checkboxes(f)
    with gr.Row():
        f["train_embedding_button"] = gr.Button("Train Embedding", variant="primary", elem_id="train_train_embedding")
        f["interrupt"] = gr.Button("Interrupt", elem_id="train_interrupt_training")
        f["train_hypernetwork_button"] = gr.Button(
            "Train Hypernetwork", variant="primary", elem_id="train_train_hypernetwork"
        )
    return f


def _train_checkboxes(f: Parts) -> None:
    f["use_weight"] = gr.Checkbox(False, label="Use PNG alpha channel as loss weight", elem_id="use_weight")
    f["save_image_with_stored_embedding"] = gr.Checkbox(
        True, label="Save images with embedding in PNG chunks", elem_id="train_save_image_with_stored_embedding"
    )
    f["preview_from_txt2img"] = gr.Checkbox(
        False,
        label="Read parameters (prompt, etc...) from txt2img tab when making previews",
        elem_id="train_preview_from_txt2img",
    )
    f["shuffle_tags"] = gr.Checkbox(
        False, label="Shuffle tags by ',' when creating prompts.", elem_id="train_shuffle_tags"
    )
    f["tag_drop_out"] = gr.Slider(
        0, 1, value=0, step=0.1, label="Drop out tags when creating prompts.", elem_id="train_tag_drop_out"
    )
    f["latent_sampling_method"] = gr.Radio(
        ["once", "deterministic", "random"],
        value="once",
        label="Choose latent sampling method",
        elem_id="train_latent_sampling_method",
    )


def _output_column() -> TrainOutputs:
    with gr.Column(elem_id="ti_gallery_container"):
        output = gr.Textbox("", show_label=False, interactive=False, elem_id="ti_output")
        progress = gr.HTML("", elem_id="ti_progress")
        preview = gr.Image(
            label="Preview", type="pil", format="png", interactive=False, visible=False, elem_id="ti_preview"
        )
        gallery = gr.Gallery(label="Output", show_label=False, columns=4, format="png", elem_id="ti_gallery")
        outcome = gr.HTML("", elem_id="ti_error")
        task_id = gr.Textbox("", visible="hidden", elem_id="train_task_id")
    return TrainOutputs(output, gallery, progress, outcome, preview, task_id)


def build_train(ctx: UiContext) -> dict[str, Any]:
    """Builds the Train tab (inside the caller's gr.Tab); returns its parts by name."""
    gr.HTML(f"<p style='margin-bottom: 0.7em'>See <b><a href=\"{WIKI}\">wiki</a></b> for detailed explanation.</p>")
    with gr.Row(variant="compact", equal_height=False):
        with gr.Tabs(elem_id="train_tabs"):
            with gr.Tab("Create embedding", id="create_embedding", elem_id="train_create_embedding_tab"):
                emb = _create_embedding_tab()
            with gr.Tab("Create hypernetwork", id="create_hypernetwork", elem_id="train_create_hypernetwork_tab"):
                hyper = _create_hypernetwork_tab()
            with gr.Tab("Preprocess images", id="preprocess_images", elem_id="train_preprocess_tab"):
                prep = _preprocess_tab()
            with gr.Tab("Train", id="train", elem_id="train_train_tab"):
                train = _train_tab(ctx)
        outputs = _output_column()
    _wire(ctx, emb, hyper, prep, train, outputs)
    _register_defaults(ctx, [emb, hyper, prep, train])
    return {
        "create_embedding": emb,
        "create_hypernetwork": hyper,
        "preprocess": prep,
        "train": train,
        "outputs": outputs,
    }


def _fields(parts: Parts) -> tuple[list[str], list[Component]]:
    """The value components of a sub-tab (buttons left out), as (request names, components)."""
    named = [(k, c) for k, c in parts.items() if not isinstance(c, gr.Button)]
    return [k for k, _ in named], [c for _, c in named]


def _preview_sources(ctx: UiContext) -> tuple[list[str], list[Component]]:
    """txt2img fields that "Read parameters from txt2img tab" passes to previews (when that tab exists)."""
    txt2img = ctx.targets.fields.get("txt2img", {})
    pairs = [(preview, txt2img[name]) for name, preview in TXT2IMG_PREVIEW_FIELDS.items() if name in txt2img]
    return [p for p, _ in pairs], [c for _, c in pairs]


def _wire(
    ctx: UiContext,
    emb: Parts,
    hyper: Parts,
    prep: Parts,
    train: Parts,
    out: TrainOutputs,
) -> None:
    creators = (
        (emb, create_embedding_action, train["train_embedding"]),
        (hyper, create_hypernetwork_action, train["train_hypernetwork"]),
    )
    for parts, action, dropdown in creators:
        names, inputs = _fields(parts)

        def create(*values: Any, _action: Any = action, _names: Sequence[str] = names) -> tuple[Any, str, str]:
            result = _action(ctx, dict(zip(_names, values, strict=True)))
            value = result.selected if result.selected is not None else gr.update()
            return gr.update(choices=result.choices, value=value), result.output, result.outcome

        parts["button"].click(create, inputs=inputs, outputs=[dropdown, out.output, out.outcome])

    train_names, train_inputs = _fields(train)
    preview_names, preview_inputs = _preview_sources(ctx)
    all_names = [*train_names, *preview_names]
    for kind in ("embedding", "hypernetwork"):

        def run(request: gr.Request, *values: Any, _kind: str = kind) -> Iterator[dict[Component, Any]]:
            views = train_action(ctx, _kind, dict(zip(all_names, values, strict=True)), caller_of_gradio(request))
            for view in views:
                yield out.updates(view)

        train[f"train_{kind}_button"].click(
            run,
            inputs=[*train_inputs, *preview_inputs],
            outputs=out.all,
            show_progress="hidden",
            concurrency_limit=None,  # the job queue serialises training; the handler only polls
        )

    prep_names, prep_inputs = _fields(prep)

    def run_preprocess(request: gr.Request, *values: Any) -> Iterator[dict[Component, Any]]:
        for view in preprocess_action(ctx, dict(zip(prep_names, values, strict=True)), caller_of_gradio(request)):
            yield out.updates(view)

    prep["button"].click(
        run_preprocess, inputs=prep_inputs, outputs=out.all, show_progress="hidden", concurrency_limit=None
    )

    def interrupt(job_id: str, request: gr.Request) -> None:
        interrupt_action(ctx, job_id, user_of(request))

    for button in (train["interrupt"], prep["interrupt"]):
        button.click(interrupt, inputs=[out.task_id], queue=False)


def _register_defaults(ctx: UiContext, parts: Sequence[Parts]) -> None:
    """ui-config.json defaults ("train/<label>/value"); the Train sub-tab first so that it owns the
    labels it shares with the other sub-tabs (Width, Height)."""
    ordered = [parts[-1], *parts[:-1]]
    dynamic = {"train_embedding", "train_hypernetwork"}  # lists of files: a stored default goes stale
    for group in ordered:
        names, components = _fields(group)
        ctx.ui_config.register_all("train", [c for n, c in zip(names, components, strict=True) if n not in dynamic])
