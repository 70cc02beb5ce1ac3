"""A1111's `modules.sd_hijack_optimizations` for extensions: the SdOptimization base class.

Extensions add their optimizations through `script_callbacks.on_list_optimizers`; one is applied
with `sd_hijack.model_hijack.apply_optimizations(name)`. Their apply() typically replaces
`ldm.modules.attention.CrossAttention.forward`, which the generation UNet runs through; undo()
puts back our own forwards. The built-in attention choices stay our speed settings'.
"""

from __future__ import annotations

import ldm.modules.attention
import ldm.modules.diffusionmodules.model
import sgm.modules.attention

__all__ = ["SdOptimization"]

# each class's own forward (None: inherited, as sgm's CrossAttention from ldm's)
_OWN_FORWARDS = {
    cls: cls.__dict__.get("forward")
    for cls in (
        ldm.modules.attention.CrossAttention,
        sgm.modules.attention.CrossAttention,
        ldm.modules.diffusionmodules.model.AttnBlock,
    )
}


class SdOptimization:
    name: str | None = None
    label: str | None = None
    cmd_opt: str | None = None
    priority: int = 0

    def title(self) -> str:
        return str(self.name) if self.label is None else f"{self.name} - {self.label}"

    def is_available(self) -> bool:
        return True

    def apply(self) -> None:
        pass

    def undo(self) -> None:
        for cls, forward in _OWN_FORWARDS.items():
            if forward is not None:
                cls.forward = forward  # type: ignore[method-assign]
            elif "forward" in cls.__dict__:
                delattr(cls, "forward")
