"""Built-in "SD upscale" img2img script (A1111's scripts/sd_upscale.py): upscale the init image
with an upscaler, cut it into tiles of the Width x Height set in the UI, run img2img on every
tile (so the model adds detail at the new size) and join the tiles again with faded overlaps.

script_args: [info (the UI's HTML note, ignored), overlap, upscaler_index, scale_factor];
upscaler_index indexes `shared.sd_upscalers` (0 None, 1 Lanczos, 2 Nearest, then model files).
Batch count makes that many upscales, seeds seed, seed+1, ...; batch size runs tiles together.
"""

from __future__ import annotations

import math
from typing import Any

from PIL import Image

from modules import images, processing, scripts, shared
from modules.extension_host.script_jobs import copy_p, overall_progress


def _pick_upscaler(index: Any) -> Any:
    upscalers = shared.sd_upscalers
    if isinstance(index, str) and not index.lstrip("-").isdigit():  # a name works too
        for item in upscalers:
            if item.name.lower() == index.lower():
                return item
        raise ValueError(f"SD upscale: unknown upscaler {index!r}; available: {[u.name for u in upscalers]}")
    number = int(index)
    if not 0 <= number < len(upscalers):
        raise ValueError(f"SD upscale: upscaler index {number} is not in 0..{len(upscalers) - 1}")
    return upscalers[number]


class Script(scripts.Script):
    def title(self) -> str:
        return "SD upscale"

    def show(self, is_img2img: bool) -> bool:
        return is_img2img

    def ui(self, is_img2img: bool) -> list[Any]:
        import gradio as gr

        info = gr.HTML(
            "<p>Will upscale the image by the selected scale factor; use width and height to set tile size</p>"
        )
        overlap = gr.Slider(
            minimum=0, maximum=256, step=16, label="Tile overlap", value=64, elem_id=self.elem_id("overlap")
        )
        scale_factor = gr.Slider(
            minimum=1.0, maximum=4.0, step=0.05, label="Scale Factor", value=2.0, elem_id=self.elem_id("scale_factor")
        )
        names = [u.name for u in shared.sd_upscalers]
        upscaler_index = gr.Radio(
            label="Upscaler", choices=names, value=names[0], type="index", elem_id=self.elem_id("upscaler_index")
        )
        return [info, overlap, upscaler_index, scale_factor]

    def run(
        self, p: Any, _info: Any = None, overlap: Any = 64, upscaler_index: Any = 0, scale_factor: Any = 2.0
    ) -> Any:
        if not p.init_images:
            raise ValueError("SD upscale needs an init image")
        processing.fix_seed(p)
        upscaler = _pick_upscaler(upscaler_index)
        overlap, scale = int(overlap), float(scale_factor)
        if not 0 <= overlap < min(p.width, p.height):
            raise ValueError(f"SD upscale: tile overlap {overlap} must be below the tile size {p.width}x{p.height}")
        p.extra_generation_params["SD upscale overlap"] = overlap
        p.extra_generation_params["SD upscale upscaler"] = upscaler.name
        source = p.init_images[0]
        image = source if upscaler.name == "None" else upscaler.scaler.upscale(source, scale, upscaler.data_path)
        if image.width < p.width or image.height < p.height:  # tiles must fit: the image is at least one tile
            image = image.resize((max(image.width, p.width), max(image.height, p.height)), Image.Resampling.LANCZOS)
        tiles = [tile for _y, _h, row in images.split_grid(image, p.width, p.height, overlap).tiles for tile in row]
        batch_size, upscale_count = max(1, int(p.batch_size)), max(1, int(p.n_iter))
        batches = math.ceil(len(tiles) / batch_size)
        results, infotext, first_seed = [], "", p.seed
        with overall_progress(batches * upscale_count) as progress:
            for n in range(upscale_count):
                grid = images.split_grid(image, p.width, p.height, overlap)
                row_tiles = [tile for _y, _h, row in grid.tiles for tile in row]
                seed = first_seed + n
                done: list[Image.Image] = []
                for i in range(batches):
                    if shared.state.interrupted:
                        break
                    pc = copy_p(p)
                    pc.n_iter, pc.do_not_save_grid, pc.do_not_save_samples = 1, True, True
                    pc.init_images = [t[2] for t in row_tiles[i * batch_size : (i + 1) * batch_size]]
                    pc.batch_size, pc.seed = len(pc.init_images), seed
                    processed = processing.process_images(pc)
                    infotext = infotext or processed.info
                    seed = processed.seed + 1
                    done += processed.images[processed.index_of_first_image :][: len(pc.init_images)]
                    if progress is not None:
                        progress.finished_run(1)
                for k, tile in enumerate(row_tiles):
                    tile[2] = done[k] if k < len(done) else Image.new("RGB", (p.width, p.height))
                results.append(images.combine_grid(grid))
                if shared.opts.samples_save and not p.do_not_save_samples:
                    images.save_image(
                        results[-1],
                        p.outpath_samples,
                        "",
                        first_seed + n,
                        p.prompt,
                        shared.opts.samples_format,
                        info=infotext,
                        p=p,
                    )
        if not infotext:
            raise RuntimeError("SD upscale: no tile was made (interrupted?)")
        return processing.Processed(p, results, first_seed, infotext, infotexts=[infotext] * len(results))
