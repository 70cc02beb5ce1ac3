"""Built-in "X/Y/Z plot" script: one image per combination of up to three axis values, laid out
in a grid with legends (A1111's scripts/xyz_grid.py: same title, axis names and order, argument
order, value syntax and infotext keys, so API clients that send `x_type` as an index work).

Every cell runs on a copy of `p`; axes (modules/extension_host/xyz_axes.py) write settings into that
copy's `override_settings`, and a Checkpoint/VAE axis leaves the previously active model (and its
VAE) active again after the job.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image

from modules import images, processing, scripts, shared
from modules.extension_host.script_jobs import copy_p, grids_dir, model_restored, overall_progress
from modules.extension_host.xyz_axes import (
    Axis,
    AxisOption,
    AxisValueError,
    axis_options,
    pick_option,
    read_axis,
)
from modules.generation.xyz_values import join_csv

log = logging.getLogger("xyz_grid")

# --- the job ----------------------------------------------------------------------------------


@dataclass
class Cell:
    image: Image.Image
    infotext: str
    prompt: str
    negative_prompt: str
    seed: int
    subseed: int


def loop_order(axes: list[Axis]) -> list[int]:
    """Axis indexes (0=X, 1=Y, 2=Z) from outer to inner loop: costly axes outside, else Z, Y, X."""
    return sorted([2, 1, 0], key=lambda i: -axes[i].option.cost)


def cell_indexes(axes: list[Axis]) -> Iterator[tuple[int, int, int]]:
    order = loop_order(axes)
    counts = [len(a.values) for a in axes]
    for a in range(counts[order[0]]):
        for b in range(counts[order[1]]):
            for c in range(counts[order[2]]):
                index = [0, 0, 0]
                index[order[0]], index[order[1]], index[order[2]] = a, b, c
                yield index[0], index[1], index[2]


def fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Cells of different sizes (Size axis) go top-left into cells of the largest size."""
    if image.size == size:
        return image
    canvas = Image.new("RGB", size, "black")
    canvas.paste(image, (0, 0))
    return canvas


def grid_infotext(pc: Any, axes: list[Axis], title: str) -> str:
    """The first cell's infotext plus the plot's own keys (A1111: Script, X Type, X Values...)."""
    view = copy.copy(pc)
    view.extra_generation_params = dict(pc.extra_generation_params)
    view.extra_generation_params["Script"] = title
    for axis in axes:
        if not axis.used:
            continue
        view.extra_generation_params[f"{axis.name} Type"] = axis.option.label
        view.extra_generation_params[f"{axis.name} Values"] = axis.text
        if axis.option.label in ("Seed", "Var. seed"):
            view.extra_generation_params[f"Fixed {axis.name} Values"] = ", ".join(str(v) for v in axis.values)
    return str(processing.create_infotext(view, use_main_prompt=True))


class Script(scripts.Script):
    def title(self) -> str:
        return "X/Y/Z plot"

    def ui(self, is_img2img: bool) -> list[Any]:
        return build_ui(self, axis_options(is_img2img))

    def run(
        self,
        p: Any,
        x_type: Any = 1,
        x_values: Any = "",
        x_values_dropdown: Any = None,
        y_type: Any = 0,
        y_values: Any = "",
        y_values_dropdown: Any = None,
        z_type: Any = 0,
        z_values: Any = "",
        z_values_dropdown: Any = None,
        draw_legend: bool = True,
        include_lone_images: bool = False,
        include_sub_grids: bool = False,
        no_fixed_seeds: bool = False,
        vary_seeds_x: bool = False,
        vary_seeds_y: bool = False,
        vary_seeds_z: bool = False,
        margin_size: Any = 0,
        csv_mode: bool = False,
        *_ignored: Any,
    ) -> Any:
        options = axis_options(isinstance(p, processing.StableDiffusionProcessingImg2Img))
        if not no_fixed_seeds:
            processing.fix_seed(p)
        if not shared.opts.return_grid:
            p.batch_size = 1
        given = (
            ("X", x_type, x_values, x_values_dropdown),
            ("Y", y_type, y_values, y_values_dropdown),
            ("Z", z_type, z_values, z_values_dropdown),
        )
        axes = [
            read_axis(
                p,
                name,
                pick_option(options, kind, name),
                text,
                dropdown,
                csv_mode=bool(csv_mode),
                fix_seeds=not no_fixed_seeds,
            )
            for name, kind, text, dropdown in given
        ]
        check_size(p, axes)
        job = PlotJob(self.title(), axes, (bool(vary_seeds_x), bool(vary_seeds_y), bool(vary_seeds_z)))
        with model_restored():
            job.run_cells(p)
            texts = job.grid_infotexts()
        return job.result(
            texts, bool(draw_legend), bool(include_lone_images), bool(include_sub_grids), int(margin_size or 0)
        )


def check_size(p: Any, axes: list[Axis]) -> None:
    count = len(axes[0].values) * len(axes[1].values) * len(axes[2].values)
    limit = float(shared.opts.data.get("img_max_size_mp", 200) or 200)
    megapixels = count * p.width * p.height / 1_000_000
    if megapixels > limit:
        raise AxisValueError(f"the grid would be too large ({megapixels:.0f} MPixels; the limit is {limit:.0f})")


class PlotJob:
    """The cells of one plot, in the order the loops ran them, then grids and the result."""

    def __init__(self, title: str, axes: list[Axis], vary_seeds: tuple[bool, bool, bool]):
        self.title = title
        self.axes = axes
        self.vary_seeds = vary_seeds
        self.cells: dict[tuple[int, int, int], Cell] = {}
        self.cell_p: dict[tuple[int, int, int], Any] = {}  # corner cells' p, for grid infotexts
        self.errors: list[BaseException] = []

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.axes[0].values), len(self.axes[1].values), len(self.axes[2].values)

    def run_cells(self, p: Any) -> None:
        nx, ny, nz = self.shape
        with overall_progress(nx * ny * nz * p.n_iter) as progress:
            for number, index in enumerate(cell_indexes(self.axes), start=1):
                if shared.state.interrupted or shared.state.stopping_generation:
                    break
                shared.state.job = f"{number} out of {nx * ny * nz}"
                self._run_cell(p, index)
                if progress is not None:
                    progress.finished_run(p.n_iter)
        if not self.cells:
            if self.errors:
                raise self.errors[0]
            raise RuntimeError("X/Y/Z plot: no image was made (interrupted?)")

    def _run_cell(self, p: Any, index: tuple[int, int, int]) -> None:
        pc = copy_p(p)
        for axis, i in zip(self.axes, index, strict=True):
            axis.option.apply(pc, axis.values[i], axis.values)
        nx, ny, _ = self.shape
        offset = sum(i * n for i, n, on in zip(index, (1, nx, nx * ny), self.vary_seeds, strict=True) if on)
        if offset and isinstance(pc.seed, int) and pc.seed != -1:
            pc.seed += offset
        try:
            res = processing.process_images(pc)
        except Exception as exc:  # A1111: a failing cell stays blank, the plot goes on
            log.error("X/Y/Z plot: cell %s failed: %s", index, exc)
            self.errors.append(exc)
            return
        if not res.images:
            return
        self.cells[index] = Cell(  # A1111: the first image; with several per cell, their grid
            res.images[0],
            res.infotexts[0],
            pc.all_prompts[0] if pc.all_prompts else pc.prompt,
            pc.all_negative_prompts[0] if pc.all_negative_prompts else pc.negative_prompt,
            pc.all_seeds[0] if pc.all_seeds else pc.seed,
            pc.all_subseeds[0] if pc.all_subseeds else pc.subseed,
        )
        if index[:2] == (0, 0) or not self.cell_p:
            self.cell_p.setdefault(index, pc)
            self.cell_p.setdefault((0, 0, -1), pc)  # fallback for corners that failed

    def _corner(self, iz: int) -> Any:
        return self.cell_p.get((0, 0, iz)) or self.cell_p[(0, 0, -1)]

    def grid_infotexts(self) -> list[str]:
        """[main grid (all axes), then one per Z value (X and Y only)], as A1111 writes them."""
        main = grid_infotext(self._corner(0), self.axes, self.title)
        subs = [grid_infotext(self._corner(iz), self.axes[:2], self.title) for iz in range(self.shape[2])]
        return [main, *subs]

    def ordered_cells(self) -> list[tuple[tuple[int, int, int], Cell | None]]:
        nx, ny, nz = self.shape
        order = [(ix, iy, iz) for iz in range(nz) for iy in range(ny) for ix in range(nx)]
        return [(i, self.cells.get(i)) for i in order]

    def result(
        self, texts: list[str], draw_legend: bool, lone_images: bool, sub_grids: bool, margin: int
    ) -> processing.Processed:
        nx, ny, nz = self.shape
        cells = self.ordered_cells()
        made = [c for _, c in cells if c is not None]
        size = (max(c.image.width for c in made), max(c.image.height for c in made))
        tiles = [fit(c.image, size) if c is not None else Image.new("RGB", size, "black") for _, c in cells]
        labels = [[a.option.format(v) for v in a.values] for a in self.axes]
        subgrids = []
        for iz in range(nz):
            grid = images.image_grid(tiles[iz * nx * ny : (iz + 1) * nx * ny], rows=ny)
            if draw_legend:
                hor = [[images.GridAnnotation(t)] for t in labels[0]]
                ver = [[images.GridAnnotation(t)] for t in labels[1]]
                grid = images.draw_grid_annotations(grid, size[0], size[1], hor, ver, margin)
            subgrids.append(grid)
        main = images.image_grid(subgrids, rows=1)
        if draw_legend:
            titles = [[images.GridAnnotation(t)] for t in labels[2]]
            main = images.draw_grid_annotations(
                main, subgrids[0].width, subgrids[0].height, titles, [[images.GridAnnotation()]]
            )
        grids = [main, *(subgrids if sub_grids else [])]
        grid_texts = [texts[0], *(texts[1:] if sub_grids else [])]
        first_p = self._corner(0)
        self._save(first_p, grids, grid_texts)
        out_images, out_texts = list(grids), list(grid_texts)
        if lone_images:
            out_images += [c.image for c in made]
            out_texts += [c.infotext for c in made]
        view = copy_p(first_p)  # what Processed.js() reports: the cells' prompts and seeds
        view.all_prompts = [c.prompt for c in made]
        view.all_negative_prompts = [c.negative_prompt for c in made]
        view.all_seeds = [c.seed for c in made]
        view.all_subseeds = [c.subseed for c in made]
        return processing.Processed(
            view,
            out_images,
            seed=made[0].seed,
            info=out_texts[0],
            subseed=made[0].subseed,
            infotexts=out_texts,
            index_of_first_image=len(grids) if lone_images else 0,
            comments=self._failures(),
        )

    def _failures(self) -> str:
        if not self.errors:
            return ""
        first = self.errors[0]
        count = len(self.errors)
        return f"X/Y/Z plot: {count} cell(s) failed and were left blank; first error: {type(first).__name__}: {first}"

    def _save(self, p: Any, grids: list[Image.Image], texts: list[str]) -> None:
        if not shared.opts.grid_save or p.do_not_save_grid:
            return
        for grid, text in zip(grids, texts, strict=True):
            images.save_image(
                grid,
                grids_dir(p, str(shared.data_path)),
                "xyz_grid",
                info=text,
                extension=shared.opts.grid_format,
                prompt=p.prompt,
                seed=p.seed,
                grid=True,
                p=p,
            )


# --- UI ---------------------------------------------------------------------------------------


def build_ui(script: Script, options: list[AxisOption]) -> list[Any]:
    import gradio as gr

    from modules.ui_components import ToolButton

    labels = [o.label for o in options]
    rows = []
    for name, default in (("x", 1), ("y", 0), ("z", 0)):
        with gr.Row():
            kind = gr.Dropdown(
                label=f"{name.upper()} type",
                choices=labels,
                value=labels[default],
                type="index",
                elem_id=script.elem_id(f"{name}_type"),
            )
            text = gr.Textbox(label=f"{name.upper()} values", lines=1, elem_id=script.elem_id(f"{name}_values"))
            picked = gr.Dropdown(
                label=f"{name.upper()} values",
                visible=False,
                multiselect=True,
                choices=[],
                allow_custom_value=True,  # pasted/API values are checked when the plot runs
                interactive=True,
                elem_id=script.elem_id(f"{name}_values_dropdown"),
            )
            fill = ToolButton(value="\U0001f4d2", elem_id=f"xyz_grid_fill_{name}_tool_button", visible=False)
        rows.append((kind, text, picked, fill))
    with gr.Row():
        draw_legend = gr.Checkbox(label="Draw legend", value=True, elem_id=script.elem_id("draw_legend"))
        no_fixed_seeds = gr.Checkbox(label="Keep -1 for seeds", value=False, elem_id=script.elem_id("no_fixed_seeds"))
        include_lone = gr.Checkbox(
            label="Include Sub Images", value=False, elem_id=script.elem_id("include_lone_images")
        )
        include_sub = gr.Checkbox(label="Include Sub Grids", value=False, elem_id=script.elem_id("include_sub_grids"))
        csv_mode = gr.Checkbox(
            label="Use text inputs instead of dropdowns", value=False, elem_id=script.elem_id("csv_mode")
        )
    with gr.Row():
        vary = [
            gr.Checkbox(label=f"Vary seeds for {n}", value=False, elem_id=script.elem_id(f"vary_seeds_{n.lower()}"))
            for n in "XYZ"
        ]
        margin = gr.Slider(
            label="Grid margins (px)", minimum=0, maximum=500, value=0, step=2, elem_id=script.elem_id("margin_size")
        )

    def select_axis(index: Any, values: str, picked: Any, csv: bool) -> tuple[Any, Any, Any]:
        option = options[int(index or 0)] if isinstance(index, int) else pick_option(options, index, "axis")
        choices = option.choices() if option.choices is not None else None
        dropdown = choices is not None and not csv
        update = gr.update(visible=dropdown, choices=choices or [])
        kept = [v for v in picked or [] if v in (choices or [])]
        if kept != list(picked or []):  # only drop values of another axis; never rewrite a fresh swap
            update = gr.update(visible=dropdown, choices=choices or [], value=kept)
        return gr.update(visible=choices is not None), gr.update(visible=not dropdown), update

    def fill_values(index: Any, csv: bool) -> tuple[Any, Any]:
        option = options[int(index or 0)] if isinstance(index, int) else pick_option(options, index, "axis")
        if option.choices is None:
            return gr.update(), gr.update()
        return (
            (gr.update(value=join_csv(option.choices())), gr.update())
            if csv
            else (gr.update(), gr.update(value=option.choices()))
        )

    for kind, text, picked, fill in rows:
        kind.change(select_axis, inputs=[kind, text, picked, csv_mode], outputs=[fill, text, picked])
        csv_mode.change(select_axis, inputs=[kind, text, picked, csv_mode], outputs=[fill, text, picked])
        fill.click(fill_values, inputs=[kind, csv_mode], outputs=[text, picked])

    def swap(type_a: Any, text_a: str, picked_a: Any, type_b: Any, text_b: str, picked_b: Any) -> tuple[Any, ...]:
        a, b = (pick_option(options, t if t is not None else 0, "axis") for t in (type_a, type_b))
        # the choices travel with the values: a dropdown refuses values that are not among its choices
        return (
            *(b.label, text_b, gr.update(choices=b.choices() if b.choices else [], value=picked_b)),
            *(a.label, text_a, gr.update(choices=a.choices() if a.choices else [], value=picked_a)),
        )

    with gr.Row():
        for (first, second), label in (((0, 1), "Swap X/Y axes"), ((1, 2), "Swap Y/Z axes"), ((0, 2), "Swap X/Z axes")):
            pair = [*rows[first][:3], *rows[second][:3]]
            button = gr.Button(
                value=label, elem_id=f"{label.split()[1].lower().replace('/', '')}_grid_swap_axes_button"
            )
            button.click(swap, inputs=pair, outputs=pair)
    script.infotext_fields = [
        (component, f"{axis} {key}")
        for (kind, text, _, _), axis in zip(rows, "XYZ", strict=True)
        for component, key in ((kind, "Type"), (text, "Values"))
    ]
    # A1111's argument order (API clients send script_args in exactly this order)
    return [
        *(c for row in rows for c in row[:3]),
        draw_legend,
        include_lone,
        include_sub,
        no_fixed_seeds,
        *vary,
        margin,
        csv_mode,
    ]
