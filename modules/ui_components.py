"""A1111's `modules.ui_components` for extensions, on Gradio 6.

Subclasses keep Gradio's front-end component (`get_block_name`) and its props (`get_config` reads
them from the Gradio class's `__init__` signature, which `*args, **kwargs` here would hide), so
they render as the component they extend, label and value included. `InputAccordion` is a checkbox (its value is what scripts receive) shown
as the first row of an accordion; `with InputAccordion(False, label="X") as enabled:` puts the
body into the accordion and yields the checkbox, as in A1111.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gradio as gr

from modules.extension_host.gradio_compat import with_gradio_props

__all__ = [
    "DropdownEditable",
    "DropdownMulti",
    "FormColumn",
    "FormComponent",
    "FormGroup",
    "FormHTML",
    "FormRow",
    "InputAccordion",
    "ResizeHandleRow",
    "ToolButton",
]


@contextmanager
def _without_stub_files() -> Iterator[None]:
    """Gradio writes a .pyi stub next to the module of every component subclass it sees defined;
    keep that from happening for these classes (no files written at import)."""
    from gradio import component_meta

    original = component_meta.create_or_modify_pyi
    component_meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:
        yield
    finally:
        component_meta.create_or_modify_pyi = original


with _without_stub_files():

    class _GradioProps:
        """First base of each class here: the props are those of the Gradio component extended."""

        def get_config(self, cls: Any = None) -> dict[str, Any]:
            own = super().get_config(cls) if cls is not None else super().get_config()  # type: ignore[misc]
            return with_gradio_props(self, own)

    class FormComponent:
        webui_do_not_create_gradio_pyi_thank_you = True

        def get_expected_parent(self) -> Any:
            return gr.components.Form

    class ToolButton(_GradioProps, gr.Button, FormComponent):
        """Small button with a single emoji as text, fits inside gradio forms."""

        def __init__(self, *args: Any, **kwargs: Any):
            classes = kwargs.pop("elem_classes", [])
            super().__init__(*args, elem_classes=["tool", *classes], **kwargs)

        def get_block_name(self) -> str:
            return "button"

    class ResizeHandleRow(_GradioProps, gr.Row):
        def __init__(self, **kwargs: Any):
            super().__init__(**kwargs)
            self.elem_classes = [*(self.elem_classes or []), "resize-handle-row"]

        def get_block_name(self) -> str:
            return "row"

    class FormRow(_GradioProps, gr.Row, FormComponent):
        def get_block_name(self) -> str:
            return "row"

    class FormColumn(_GradioProps, gr.Column, FormComponent):
        def get_block_name(self) -> str:
            return "column"

    class FormGroup(_GradioProps, gr.Group, FormComponent):
        def get_block_name(self) -> str:
            return "group"

    class FormHTML(_GradioProps, gr.HTML, FormComponent):
        def get_block_name(self) -> str:
            return "html"

    class FormColorPicker(_GradioProps, gr.ColorPicker, FormComponent):
        def get_block_name(self) -> str:
            return "colorpicker"

    class DropdownMulti(_GradioProps, gr.Dropdown, FormComponent):
        def __init__(self, **kwargs: Any):
            super().__init__(multiselect=True, **kwargs)

        def get_block_name(self) -> str:
            return "dropdown"

    class DropdownEditable(_GradioProps, gr.Dropdown, FormComponent):
        def __init__(self, **kwargs: Any):
            super().__init__(allow_custom_value=True, **kwargs)

        def get_block_name(self) -> str:
            return "dropdown"

    class InputAccordion(_GradioProps, gr.Checkbox):
        """A checkbox that opens an accordion: the checkbox value is the script argument.

        The checkbox's elem_id is `<elem_id>-checkbox` (A1111), the accordion's `<elem_id>`."""

        global_index = 0

        def __init__(self, value: bool, **kwargs: Any):
            self.accordion_id = kwargs.get("elem_id")
            if self.accordion_id is None:
                self.accordion_id = f"input-accordion-{InputAccordion.global_index}"
                InputAccordion.global_index += 1
            label = kwargs.pop("label", "")
            kwargs.pop("open", None)
            checkbox_kwargs = {**kwargs, "elem_id": f"{self.accordion_id}-checkbox", "render": False}
            super().__init__(value, label=label, **checkbox_kwargs)
            self.accordion = gr.Accordion(label=label, open=bool(value), elem_id=self.accordion_id)
            with self.accordion:
                self.render()

        def extra(self) -> gr.Column:
            """A column for small controls next to the checkbox (inside the accordion here)."""
            return gr.Column(elem_id=f"{self.accordion_id}-extra", elem_classes="input-accordion-extra", min_width=0)

        def __enter__(self) -> InputAccordion:
            self.accordion.__enter__()
            return self

        def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
            self.accordion.__exit__(exc_type, exc_val, exc_tb)

        def get_block_name(self) -> str:
            return "checkbox"
