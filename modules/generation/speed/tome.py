"""Token merging (ToMe for Stable Diffusion) as a removable patch on a diffusers UNet.

Algorithm (Bolya & Hoffman 2023, "Token Merging for Fast Stable Diffusion"), as A1111 uses it
(ratio from settings, no random destinations, self-attention only, highest resolution only,
2x2 cells):

1. At each transformer block whose token count is the latent's (h*w, "max downsample 1"), split
   the tokens into destinations (the top-left token of every 2x2 cell) and sources (the rest).
2. Compare every source with every destination by cosine similarity of the block's input.
3. The r = int(N * ratio) sources with the highest best-match score are averaged into their best
   destination; self-attention runs on the N - r remaining tokens.
4. Afterwards every merged source receives its destination's output again ("unmerge"), so the
   rest of the block sees N tokens.

The patch is three kinds of forward hooks (UNet: remember the latent size; block: plan the
merge; self-attention: merge before, unmerge after). Removing the hooks restores the model
exactly: no weight or module is replaced.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from modules.models.ldm_views import called_unet

MAX_RATIO = 0.9  # A1111's slider maximum; at 1.0 every source would merge


@dataclass(frozen=True)
class MergePlan:
    """Which tokens of one [B, N, C] sequence merge into which, for one block call.

    Positions are token indices in the row-major h x w grid. `merged`/`kept` index the source
    list; `merged_into` gives, for each merged source, its destination (index into `dst_pos`).
    """

    tokens: int
    src_pos: torch.Tensor  # [S]
    dst_pos: torch.Tensor  # [D]
    merged: torch.Tensor  # [B, r]
    kept: torch.Tensor  # [B, S - r]
    merged_into: torch.Tensor  # [B, r]

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, C] -> [B, N - r, C]: kept sources, then destinations averaged with their sources."""
        channels = x.shape[-1]
        src = x.index_select(1, self.src_pos)
        dst = x.index_select(1, self.dst_pos)
        kept = src.gather(1, _expand(self.kept, channels))
        moving = src.gather(1, _expand(self.merged, channels))
        dst = dst.scatter_reduce(1, _expand(self.merged_into, channels), moving, reduce="mean", include_self=True)
        return torch.cat([kept, dst], dim=1)

    def unmerge(self, y: torch.Tensor) -> torch.Tensor:
        """[B, N - r, C] -> [B, N, C]: every merged source takes its destination's value."""
        batch, _, channels = y.shape
        n_kept = self.kept.shape[1]
        kept, dst = y[:, :n_kept], y[:, n_kept:]
        src = y.new_empty(batch, self.src_pos.numel(), channels)
        src.scatter_(1, _expand(self.kept, channels), kept)
        src.scatter_(1, _expand(self.merged, channels), dst.gather(1, _expand(self.merged_into, channels)))
        out = y.new_empty(batch, self.tokens, channels)
        out.index_copy_(1, self.dst_pos, dst)
        out.index_copy_(1, self.src_pos, src)
        return out


def _expand(index: torch.Tensor, channels: int) -> torch.Tensor:
    return index.unsqueeze(-1).expand(-1, -1, channels)


def grid_partition(h: int, w: int, sy: int = 2, sx: int = 2, device: Any = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(source positions, destination positions) of an h x w token grid: one destination per sy x sx
    cell (its top-left token); tokens of incomplete cells at the right/bottom edge are sources."""
    is_dst = torch.zeros(h, w, dtype=torch.bool)
    is_dst[: (h // sy) * sy : sy, : (w // sx) * sx : sx] = True
    flat = is_dst.flatten()
    return (~flat).nonzero().squeeze(1).to(device), flat.nonzero().squeeze(1).to(device)


def plan_merge(metric: torch.Tensor, h: int, w: int, r: int, *, sy: int = 2, sx: int = 2) -> MergePlan | None:
    """Bipartite soft matching of the tokens of `metric` [B, h*w, C]; None when nothing can merge."""
    batch, tokens, _ = metric.shape
    if tokens != h * w:
        raise ValueError(f"token merging: {tokens} tokens do not form a {h}x{w} grid")
    if r <= 0 or h < sy or w < sx:
        return None
    src_pos, dst_pos = grid_partition(h, w, sy, sx, metric.device)
    r = min(r, src_pos.numel())
    unit = metric / metric.norm(dim=-1, keepdim=True)
    scores = unit.index_select(1, src_pos) @ unit.index_select(1, dst_pos).transpose(1, 2)  # [B, S, D]
    best_score, best_dst = scores.max(dim=-1)
    order = best_score.argsort(dim=-1, descending=True)
    merged = order[:, :r]
    return MergePlan(
        tokens=tokens,
        src_pos=src_pos,
        dst_pos=dst_pos,
        merged=merged,
        kept=order[:, r:],
        merged_into=best_dst.gather(1, merged),
    )


@dataclass
class TokenMergingState:
    """Mutable state shared by the hooks of one patched UNet (one job at a time uses a model)."""

    ratio: float
    max_downsample: int = 1
    latent_hw: tuple[int, int] | None = None
    plans: dict[int, MergePlan | None] = field(default_factory=dict)  # id(block) -> plan of its current call
    merged_calls: int = 0  # self-attention calls that ran on merged tokens (for reports and tests)
    handles: list[RemovableHandle] = field(default_factory=list)

    def plan_for(self, hidden: torch.Tensor) -> MergePlan | None:
        if self.ratio <= 0 or self.latent_hw is None or hidden.ndim != 3:
            return None
        lat_h, lat_w = self.latent_hw
        tokens = hidden.shape[1]
        downsample = math.ceil(math.sqrt(lat_h * lat_w // max(tokens, 1)))
        if downsample > self.max_downsample:
            return None
        h, w = math.ceil(lat_h / downsample), math.ceil(lat_w / downsample)
        if h * w != tokens:
            return None  # an unusual layout: leave it alone rather than guess
        return plan_merge(hidden, h, w, int(tokens * self.ratio))


def _self_attention_blocks(unet: torch.nn.Module) -> list[torch.nn.Module]:
    """Transformer blocks whose attn1 is self-attention (every SD/SDXL UNet block)."""
    return [
        m
        for m in unet.modules()
        if isinstance(getattr(m, "attn1", None), torch.nn.Module)
        and hasattr(m, "norm1")
        and not getattr(m, "only_cross_attention", False)
    ]


def _first_arg(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> Any:
    return args[0] if args else kwargs.get(name)


def _install(unet: torch.nn.Module, state: TokenMergingState) -> list[RemovableHandle]:
    """Hooks on the diffusers UNet and on its ldm-shaped view (what generation calls): a call
    through the view reaches the diffusers attention layers with no plan of theirs, so no token
    is merged twice."""
    handles = _install_on(unet, state)
    view = called_unet(unet)
    if view is not unet:
        handles += _install_on(view, state)
    return handles


def _install_on(unet: torch.nn.Module, state: TokenMergingState) -> list[RemovableHandle]:
    def remember_size(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        sample = _first_arg(args, kwargs, "sample")
        state.latent_hw = (int(sample.shape[-2]), int(sample.shape[-1]))

    handles = [unet.register_forward_pre_hook(remember_size, with_kwargs=True)]
    for block in _self_attention_blocks(unet):
        key = id(block)

        def plan(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], key: int = key) -> None:
            state.plans[key] = state.plan_for(_first_arg(args, kwargs, "hidden_states"))

        def merge(
            _module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], key: int = key
        ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
            current = state.plans.get(key)
            if current is None:
                return None
            state.merged_calls += 1
            if args:
                return (current.merge(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": current.merge(kwargs["hidden_states"])}

        def unmerge(_module: torch.nn.Module, _args: tuple[Any, ...], output: Any, key: int = key) -> Any:
            current = state.plans.pop(key, None)
            return output if current is None else current.unmerge(output)

        attn1: torch.nn.Module = block.get_submodule("attn1")
        handles.append(block.register_forward_pre_hook(plan, with_kwargs=True))
        handles.append(attn1.register_forward_pre_hook(merge, with_kwargs=True))
        handles.append(attn1.register_forward_hook(unmerge))
    return handles


_STATE_ATTR = "_speed_token_merging"  # set on a patched UNet while the patch is active


@contextmanager
def token_merging(unet: torch.nn.Module, ratio: float, *, max_downsample: int = 1) -> Iterator[TokenMergingState]:
    """Merge tokens in the UNet's self-attention at `ratio` while inside; removes every hook after.

    Nested use on an already patched UNet (the hires pass inside a job) only changes the ratio
    for the inner block and puts the outer ratio back afterwards.
    """
    if not 0.0 <= ratio <= MAX_RATIO:
        raise ValueError(f"token merging ratio must be between 0 and {MAX_RATIO}, got {ratio}")
    if max_downsample not in (1, 2, 4, 8):
        raise ValueError(f"token merging max_downsample must be 1, 2, 4 or 8, got {max_downsample}")
    outer: TokenMergingState | None = unet.__dict__.get(_STATE_ATTR)
    if outer is not None:
        previous = outer.ratio
        outer.ratio = ratio
        if ratio > 0 and not outer.handles:
            outer.handles = _install(unet, outer)  # the outer patch removes them at its end
        try:
            yield outer
        finally:
            outer.ratio = previous
        return
    state = TokenMergingState(ratio=ratio, max_downsample=max_downsample)
    if ratio > 0:
        state.handles = _install(unet, state)
    unet.__dict__[_STATE_ATTR] = state
    try:
        yield state
    finally:
        for handle in state.handles:
            handle.remove()
        state.handles.clear()
        unet.__dict__.pop(_STATE_ATTR, None)
