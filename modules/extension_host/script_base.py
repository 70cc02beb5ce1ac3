"""The `Script` base class extensions subclass (served as `modules.scripts.Script`).

Same names and call signatures as A1111's modules/scripts.py (shared/reference/extension-api.md
§2): `title()`, `show(is_img2img)`, `ui(is_img2img)`, the processing hooks in call order, the UI
component hooks and `elem_id()`. The hook bodies here do nothing; the runner only calls the
hooks a subclass overrides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from modules.generation.hooks import (  # shared with the generation code, which builds them
    MaskBlendArgs,
    PostprocessBatchListArgs,
    PostprocessImageArgs,
    PostProcessMaskOverlayArgs,
    PostSampleArgs,
)

AlwaysVisible: Any = object()
"""Return this from `show()` for a script that is always shown and always run."""

# Processing hooks an always-on script may override, in A1111's call order.
PROCESSING_HOOKS = (
    "setup",
    "before_process",
    "process",
    "before_process_batch",
    "after_extra_networks_activate",
    "process_batch",
    "process_before_every_sampling",
    "before_hr",
    "on_mask_blend",
    "post_sample",
    "postprocess_batch",
    "postprocess_batch_list",
    "postprocess_image",
    "postprocess_maskoverlay",
    "postprocess_image_after_composite",
    "postprocess",
)

__all__ = [
    "PROCESSING_HOOKS",
    "AlwaysVisible",
    "MaskBlendArgs",
    "OnComponent",
    "PostProcessMaskOverlayArgs",
    "PostSampleArgs",
    "PostprocessBatchListArgs",
    "PostprocessImageArgs",
    "Script",
    "ScriptBuiltinUI",
]


@dataclass
class OnComponent:
    component: Any


class Script:
    """Base class of txt2img/img2img scripts. Attributes below are set by the runner."""

    name: str | None = None  # lower-cased title, set when the UI/args layout is built
    section: str | None = None
    filename: str | None = None
    args_from: int | None = None
    args_to: int | None = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname: str | None = None
    group: Any = None
    create_group = True
    infotext_fields: list[Any] | None = None
    paste_field_names: list[str] | None = None
    api_info: Any = None
    on_before_component_elem_id: list[tuple[str, Any]] | None = None
    on_after_component_elem_id: list[tuple[str, Any]] | None = None
    setup_for_ui_only = False
    controls: list[Any] | None = None
    sorting_priority = 0

    def title(self) -> str:
        raise NotImplementedError(f"{type(self).__name__} must define title()")

    def ui(self, is_img2img: bool) -> Any:
        """Create Gradio components; their values arrive as *args in every hook."""
        return None

    def show(self, is_img2img: bool) -> Any:
        """False: hidden; True: in the Script dropdown; AlwaysVisible: always shown and run."""
        return True

    def run(self, p: Any, *args: Any) -> Any:
        """Dropdown script: do the whole job, usually `processing.process_images(p)`; return Processed."""
        return None

    def setup(self, p: Any, *args: Any) -> None:
        pass

    def before_process(self, p: Any, *args: Any) -> None:
        pass

    def process(self, p: Any, *args: Any) -> None:
        pass

    def before_process_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def after_extra_networks_activate(self, p: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def process_before_every_sampling(self, p: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def process_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def postprocess_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def postprocess_batch_list(self, p: Any, pp: PostprocessBatchListArgs, *args: Any, **kwargs: Any) -> None:
        pass

    def on_mask_blend(self, p: Any, mba: MaskBlendArgs, *args: Any) -> None:
        pass

    def post_sample(self, p: Any, ps: PostSampleArgs, *args: Any) -> None:
        pass

    def postprocess_image(self, p: Any, pp: PostprocessImageArgs, *args: Any) -> None:
        pass

    def postprocess_maskoverlay(self, p: Any, ppmo: PostProcessMaskOverlayArgs, *args: Any) -> None:
        pass

    def postprocess_image_after_composite(self, p: Any, pp: PostprocessImageArgs, *args: Any) -> None:
        pass

    def postprocess(self, p: Any, processed: Any, *args: Any) -> None:
        pass

    def before_hr(self, p: Any, *args: Any) -> None:
        pass

    def before_component(self, component: Any, **kwargs: Any) -> None:
        pass

    def after_component(self, component: Any, **kwargs: Any) -> None:
        pass

    def on_before_component(self, callback: Any, *, elem_id: str) -> None:
        """Call `callback(OnComponent)` before the component with this elem_id is created."""
        if self.on_before_component_elem_id is None:
            self.on_before_component_elem_id = []
        self.on_before_component_elem_id.append((elem_id, callback))

    def on_after_component(self, callback: Any, *, elem_id: str) -> None:
        if self.on_after_component_elem_id is None:
            self.on_after_component_elem_id = []
        self.on_after_component_elem_id.append((elem_id, callback))

    def describe(self) -> str:
        return ""

    def elem_id(self, item_id: str) -> str:
        """`script_<tab>_<title>_<item>`; the tab part only when the script shows the same on both tabs."""
        need_tab = self.show(True) == self.show(False)
        tab = ("img2img_" if self.is_img2img else "txt2img_") if need_tab else ""
        title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))
        return f"script_{tab}{title}_{item_id}"


class ScriptBuiltinUI(Script):
    setup_for_ui_only = True

    def elem_id(self, item_id: str) -> str:
        need_tab = self.show(True) == self.show(False)
        tab = ("img2img_" if self.is_img2img else "txt2img_") if need_tab else ""
        return f"{tab}{item_id}"

    def show(self, is_img2img: bool) -> Any:
        return AlwaysVisible
