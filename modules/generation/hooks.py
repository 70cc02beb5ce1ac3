"""Hook points where A1111 calls its Script hooks, so the extensions runner can attach scripts.

The generation code calls these methods at A1111's points and in A1111's order
(shared/reference/extension-api.md §2). The default does nothing; the extension runner
provides an implementation that dispatches to each always-on script with its args.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class ScriptHooks:
    """No-op hooks; subclass and override what you need."""

    def for_request(
        self,
        tab: str,
        script_name: str | None = None,
        script_args: Sequence[Any] = (),
        alwayson_scripts: Mapping[str, Any] | None = None,
    ) -> ScriptHooks:
        """The hooks of one API request (A1111's script_name/script_args/alwayson_scripts)."""
        return self

    def setup(self, p: Any) -> None:
        """When `p` gets its scripts and args, before anything else."""

    def run(self, p: Any, control: Any) -> Any:
        """A chosen dropdown script's run(); its result replaces process(), None means "not handled"."""
        return None

    def before_process(self, p: Any) -> None:
        pass

    def process(self, p: Any) -> None:
        pass

    def before_process_batch(
        self, p: Any, *, batch_number: int, prompts: list[str], seeds: list[int], subseeds: list[int]
    ) -> None:
        pass

    def process_batch(
        self, p: Any, *, batch_number: int, prompts: list[str], seeds: list[int], subseeds: list[int]
    ) -> None:
        pass

    def process_before_every_sampling(self, p: Any, *, x: Any, noise: Any, c: Any, uc: Any) -> None:
        pass

    def postprocess_batch(self, p: Any, images: Any, *, batch_number: int) -> None:
        pass

    def postprocess_batch_list(self, p: Any, pp: Any, *, batch_number: int) -> None:
        pass

    def after_extra_networks_activate(self, p: Any, **kwargs: Any) -> None:
        pass

    def before_hr(self, p: Any) -> None:
        pass

    def on_mask_blend(self, p: Any, mba: Any) -> None:
        pass

    def post_sample(self, p: Any, ps: Any) -> None:
        pass

    def postprocess_image(self, p: Any, pp: Any) -> None:
        pass

    def postprocess_maskoverlay(self, p: Any, ppmo: Any) -> None:
        pass

    def postprocess_image_after_composite(self, p: Any, pp: Any) -> None:
        pass

    def postprocess(self, p: Any, processed: Any) -> None:
        pass


class PostprocessImageArgs:
    """A1111's `scripts.PostprocessImageArgs`: a hook may replace `.image`."""

    def __init__(self, image: Any):
        self.image = image


class PostprocessBatchListArgs:
    """A1111's `scripts.PostprocessBatchListArgs`: hooks may edit `.images` in place."""

    def __init__(self, images: list[Any]):
        self.images = images
