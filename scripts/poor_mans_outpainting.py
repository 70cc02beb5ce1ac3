"""Built-in "Poor man's outpainting" img2img script (A1111's scripts/poor_mans_outpainting.py):
grow the canvas on the chosen sides, then inpaint the new border tile by tile (tiles of the UI's
Width x Height, overlapping by the expansion) while the original picture stays as it was.

script_args: [pixels, mask_blur, inpainting_fill (0 fill, 1 original, 2 latent noise,
3 latent nothing), direction (list of "left", "right", "up", "down")].
"""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageDraw

from modules import images, processing, scripts, shared
from modules.extension_host.script_jobs import copy_p, overall_progress
from modules.generation.img2img import MASKED_CONTENT
from modules.generation.outpaint import DIRECTIONS, Expansion, expansion


def _kept_box(grow: Expansion, inset: int) -> tuple[int, int, int, int]:
    """The original picture's box on the canvas, shrunk by `inset` on the sides that grow."""
    return (
        grow.left + (inset if grow.left else 0),
        grow.up + (inset if grow.up else 0),
        grow.width - grow.right - (inset if grow.right else 0),
        grow.height - grow.down - (inset if grow.down else 0),
    )


def _mask(grow: Expansion, inset: int) -> Image.Image:
    mask = Image.new("L", (grow.width, grow.height), "white")
    ImageDraw.Draw(mask).rectangle(_kept_box(grow, inset), fill="black")
    return mask


class Script(scripts.Script):
    def title(self) -> str:
        return "Poor man's outpainting"

    def show(self, is_img2img: bool) -> bool:
        return is_img2img

    def ui(self, is_img2img: bool) -> list[Any]:
        import gradio as gr

        pixels = gr.Slider(
            label="Pixels to expand", minimum=8, maximum=256, step=8, value=128, elem_id=self.elem_id("pixels")
        )
        mask_blur = gr.Slider(
            label="Mask blur", minimum=0, maximum=64, step=1, value=4, elem_id=self.elem_id("mask_blur")
        )
        fill = gr.Radio(
            label="Masked content",
            choices=list(MASKED_CONTENT),
            value="fill",
            type="index",
            elem_id=self.elem_id("inpainting_fill"),
        )
        direction = gr.CheckboxGroup(
            label="Outpainting direction",
            choices=list(DIRECTIONS),
            value=list(DIRECTIONS),
            elem_id=self.elem_id("direction"),
        )
        return [pixels, mask_blur, fill, direction]

    def run(
        self, p: Any, pixels: Any = 128, mask_blur: Any = 4, inpainting_fill: Any = 0, direction: Any = DIRECTIONS
    ) -> Any:
        if not p.init_images:
            raise ValueError("Poor man's outpainting needs an init image")
        fill = MASKED_CONTENT.index(inpainting_fill) if isinstance(inpainting_fill, str) else int(inpainting_fill)
        if not 0 <= fill < len(MASKED_CONTENT):
            raise ValueError(f"Poor man's outpainting: masked content must be 0-3 or one of {list(MASKED_CONTENT)}")
        processing.fix_seed(p)
        source = p.init_images[0].convert("RGB")
        pixels, blur = int(pixels), int(mask_blur)
        grow = expansion(source.width, source.height, pixels, list(direction or []))
        canvas = Image.new("RGB", (grow.width, grow.height))
        canvas.paste(source, (grow.left, grow.up))
        tiles = images.split_grid(canvas, p.width, p.height, pixels)
        masks = images.split_grid(_mask(grow, blur * 2), p.width, p.height, pixels)
        latent_masks = images.split_grid(_mask(grow, blur // 2), p.width, p.height, pixels)
        inner = _kept_box(grow, 0)
        work = []
        for (y, h, row), (_, _, mask_row), (_, _, latent_row) in zip(
            tiles.tiles, masks.tiles, latent_masks.tiles, strict=True
        ):
            for tile, mask, latent in zip(row, mask_row, latent_row, strict=True):
                x, w = tile[0], tile[1]
                if x >= inner[0] and x + w <= inner[2] and y >= inner[1] and y + h <= inner[3]:
                    continue  # the tile lies inside the original picture: nothing to do
                work.append((tile, mask[2], latent[2]))
        seed, infotext = p.seed, ""
        with overall_progress(len(work)) as progress:
            for tile, mask, latent in work:
                if shared.state.interrupted:
                    break
                pc = copy_p(p)
                pc.n_iter, pc.batch_size, pc.do_not_save_grid, pc.do_not_save_samples = 1, 1, True, True
                pc.mask_blur, pc.inpainting_fill, pc.inpaint_full_res = blur * 2, fill, False
                pc.init_images, pc.image_mask, pc.latent_mask, pc.seed = [tile[2]], mask, latent, seed
                processed = processing.process_images(pc)
                infotext = infotext or processed.info
                seed = processed.seed + 1
                tile[2] = processed.images[processed.index_of_first_image]
                if progress is not None:
                    progress.finished_run(1)
        if not infotext:
            raise RuntimeError("Poor man's outpainting: nothing was generated (interrupted?)")
        combined = images.combine_grid(tiles)
        if shared.opts.samples_save and not p.do_not_save_samples:
            images.save_image(
                combined, p.outpath_samples, "", p.seed, p.prompt, shared.opts.samples_format, info=infotext, p=p
            )
        return processing.Processed(p, [combined], p.seed, infotext, infotexts=[infotext])
