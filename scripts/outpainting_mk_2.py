"""Built-in "Outpainting mk2" img2img script (A1111's scripts/outpainting_mk_2.py, titled
"Outpainting mk2"): grow the picture one side at a time; the new strip is first filled with noise
that has the picture's spectrum and colours (modules/generation/outpaint.py), then the strip and
the edge of the picture next to it (at most the UI's Width or Height) are inpainted.

script_args: [info (the UI's HTML note, ignored), pixels, mask_blur, direction (list of "left",
"right", "up", "down"), noise_q (fall-off exponent), color_variation]. Batch size makes that many
variants; a grid comes first when there is more than one image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from modules import images, processing, scripts, shared
from modules.extension_host.script_jobs import copy_p, grids_dir, overall_progress
from modules.generation.outpaint import DIRECTIONS, expansion, matched_noise


@dataclass(frozen=True)
class _Side:
    """One growth step: which side, by how many pixels."""

    name: str
    amount: int

    @property
    def horizontal(self) -> bool:
        return self.name in ("left", "right")

    @property
    def first(self) -> bool:  # the new strip is at the start of its axis
        return self.name in ("left", "up")


@dataclass
class _Run:
    """What carries over from one img2img pass of the job to the next."""

    seed: int
    infotext: str = ""


@dataclass(frozen=True)
class _Noise:
    fall_off: float  # noise_q
    color_variation: float


def _grown_size(init: Image.Image, side: _Side) -> tuple[int, int]:
    return init.width + (side.amount if side.horizontal else 0), init.height + (0 if side.horizontal else side.amount)


def _keep_box(side: _Side, size: tuple[int, int], inset: int) -> tuple[int, int, int, int]:
    """The picture's box in an image of `size` whose growing side is the new strip (+ inset)."""
    box = [0, 0, size[0], size[1]]
    axis = 0 if side.horizontal else 1
    if side.first:
        box[axis] = side.amount + inset
    else:
        box[axis + 2] = size[axis] - side.amount - inset
    return box[0], box[1], box[2], box[3]


def _canvas(init: Image.Image, side: _Side, blur: int, noise: _Noise) -> tuple[Image.Image, Image.Image]:
    """(the grown picture with the new strip filled by matched noise, its mask), on a canvas
    rounded up to 64 pixels (the part beyond the grown size is cut off afterwards)."""
    res_w, res_h = _grown_size(init, side)
    canvas = Image.new("RGB", (math.ceil(res_w / 64) * 64, math.ceil(res_h / 64) * 64))
    offset = side.amount if side.first else 0
    canvas.paste(init, (offset, 0) if side.horizontal else (0, offset))
    mask = Image.new("RGB", canvas.size, "white")
    ImageDraw.Draw(mask).rectangle(_keep_box(side, (res_w, res_h), blur), fill="black")
    filled = matched_noise(np.asarray(canvas) / 255.0, np.asarray(mask) / 255.0, noise.fall_off, noise.color_variation)
    return Image.fromarray(np.clip(filled * 255.0, 0, 255).astype(np.uint8), "RGB"), mask


def _work_box(side: _Side, grown: tuple[int, int], tile: tuple[int, int]) -> tuple[int, int, int, int]:
    """The part that is inpainted: the new strip and the picture's edge, at most one tile deep."""
    w = min(tile[0], grown[0]) if side.horizontal else grown[0]
    h = grown[1] if side.horizontal else min(tile[1], grown[1])
    x = 0 if side.name != "right" else grown[0] - w
    y = 0 if side.name != "down" else grown[1] - h
    return x, y, x + w, y + h


class Script(scripts.Script):
    def title(self) -> str:
        return "Outpainting mk2"

    def show(self, is_img2img: bool) -> bool:
        return is_img2img

    def ui(self, is_img2img: bool) -> list[Any]:
        import gradio as gr

        info = gr.HTML("<p>Recommended settings: Sampling Steps: 80-100, Sampler: Euler a, Denoising strength: 0.8</p>")
        pixels = gr.Slider(
            label="Pixels to expand", minimum=8, maximum=256, step=8, value=128, elem_id=self.elem_id("pixels")
        )
        mask_blur = gr.Slider(
            label="Mask blur", minimum=0, maximum=64, step=1, value=8, elem_id=self.elem_id("mask_blur")
        )
        direction = gr.CheckboxGroup(
            label="Outpainting direction",
            choices=list(DIRECTIONS),
            value=list(DIRECTIONS),
            elem_id=self.elem_id("direction"),
        )
        noise_q = gr.Slider(
            label="Fall-off exponent (lower=higher detail)",
            minimum=0.0,
            maximum=4.0,
            step=0.01,
            value=1.0,
            elem_id=self.elem_id("noise_q"),
        )
        color_variation = gr.Slider(
            label="Color variation",
            minimum=0.0,
            maximum=1.0,
            step=0.01,
            value=0.05,
            elem_id=self.elem_id("color_variation"),
        )
        return [info, pixels, mask_blur, direction, noise_q, color_variation]

    def run(
        self,
        p: Any,
        _info: Any = None,
        pixels: Any = 128,
        mask_blur: Any = 8,
        direction: Any = DIRECTIONS,
        noise_q: Any = 1.0,
        color_variation: Any = 0.05,
    ) -> Any:
        if not p.init_images:
            raise ValueError("Outpainting mk2 needs an init image")
        processing.fix_seed(p)
        source = p.init_images[0].convert("RGB")
        grow = expansion(source.width, source.height, int(pixels), list(direction or []))
        sides = [_Side(name, getattr(grow, name)) for name in DIRECTIONS if getattr(grow, name) > 0]
        noise, blur = _Noise(float(noise_q), float(color_variation)), int(mask_blur)
        batch_count, batch_size = max(1, int(p.n_iter)), max(1, int(p.batch_size))
        made: list[Image.Image] = []
        state = _Run(p.seed)
        with overall_progress(batch_count * len(sides)) as progress:
            for _n in range(batch_count):
                pictures = [source] * batch_size
                for side in sides:
                    if shared.state.interrupted:
                        break
                    pictures = self._grow(p, state, pictures, side, blur, noise)
                    if progress is not None:
                        progress.finished_run(1)
                else:
                    made += pictures
        if not made:
            raise RuntimeError("Outpainting mk2: nothing was generated (interrupted?)")
        return self._result(p, made, state.infotext)

    def _grow(
        self, p: Any, state: _Run, pictures: list[Image.Image], side: _Side, blur: int, noise: _Noise
    ) -> list[Image.Image]:
        """Grow every picture of the batch by one side: one img2img pass over the batch."""
        grown = _grown_size(pictures[0], side)
        canvases = [_canvas(picture, side, blur, noise) for picture in pictures]
        box = _work_box(side, grown, (p.width, p.height))
        size = (box[2] - box[0], box[3] - box[1])
        latent_mask = Image.new("RGB", size, "white")
        keep = _keep_box(side, size, blur * 2)
        if keep[2] > keep[0] and keep[3] > keep[1]:  # else the work area is all new strip
            ImageDraw.Draw(latent_mask).rectangle(keep, fill="black")
        pc = copy_p(p)
        pc.n_iter, pc.batch_size, pc.do_not_save_grid, pc.do_not_save_samples = 1, len(pictures), True, True
        pc.width, pc.height, pc.seed = size[0], size[1], state.seed
        pc.mask_blur, pc.inpaint_full_res, pc.inpainting_fill = blur * 4, False, 1
        pc.init_images = [canvas.crop(box) for canvas, _ in canvases]
        pc.image_mask, pc.latent_mask = canvases[0][1].crop(box), latent_mask
        processed = processing.process_images(pc)
        state.infotext = state.infotext or processed.info
        state.seed = processed.seed + 1
        outputs = processed.images[processed.index_of_first_image :]
        results = []
        for (canvas, _), output in zip(canvases, outputs, strict=False):
            canvas.paste(output, box[:2])
            results.append(canvas.crop((0, 0, *grown)))
        return results

    def _result(self, p: Any, made: list[Image.Image], infotext: str) -> Any:
        opts = shared.opts
        shown = made
        if len(made) > 1:
            grid = images.image_grid(made)
            if opts.grid_save and not p.do_not_save_grid:
                folder = grids_dir(p, str(shared.data_path))
                images.save_image(
                    grid, folder, "grid", p.seed, p.prompt, opts.grid_format, info=infotext, grid=True, p=p
                )
            if opts.return_grid:
                shown = [grid, *made]
        if opts.samples_save and not p.do_not_save_samples:
            for image in made:
                images.save_image(
                    image, p.outpath_samples, "", p.seed, p.prompt, opts.samples_format, info=infotext, p=p
                )
        first = len(shown) - len(made)
        return processing.Processed(
            p, shown, p.seed, infotext, infotexts=[infotext] * len(shown), index_of_first_image=first
        )
