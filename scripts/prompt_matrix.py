"""Built-in "Prompt matrix" script (A1111's scripts/prompt_matrix.py): `a | b | c` makes one image
per combination of the optional parts `b`, `c` (always with `a`), then a grid whose column and
row legends show which parts each image has (absent parts struck through).

Each combination runs as its own pass of `process_images` on a copy of `p`: this engine takes a
single prompt per job, so A1111's list-of-prompts trick becomes one run per combination.
"""

from __future__ import annotations

from typing import Any

from modules import images, processing, scripts, shared
from modules.extension_host.script_jobs import copy_p, grids_dir, overall_progress

MAX_PARTS = 12  # 2**12 images is already far more than anyone wants in one grid


def combinations(prompt: str, *, put_at_start: bool, delimiter: str) -> tuple[list[str], list[str]]:
    """(the parts, stripped, one prompt per combination); combination i has optional part n
    when bit n of i is set, as in A1111, so the grid's columns/rows follow the bits."""
    parts = prompt.split("|")
    optional = len(parts) - 1
    if optional > MAX_PARTS:
        raise ValueError(
            f"Prompt matrix: {optional} optional parts would make {2**optional} images (at most {MAX_PARTS} parts)"
        )
    prompts = []
    for number in range(2**optional):
        chosen = [text.strip().strip(",") for n, text in enumerate(parts[1:]) if number & (1 << n)]
        base = parts[0].strip()
        ordered = [*chosen, base] if put_at_start else [base, *chosen]
        prompts.append(delimiter.join(ordered))
    return [part.strip() for part in parts], prompts


class Script(scripts.Script):
    def title(self) -> str:
        return "Prompt matrix"

    def ui(self, is_img2img: bool) -> list[Any]:
        import gradio as gr

        gr.HTML("<br>")
        with gr.Row():
            put_at_start = gr.Checkbox(
                label="Put variable parts at start of prompt", value=False, elem_id=self.elem_id("put_at_start")
            )
            different_seeds = gr.Checkbox(
                label="Use different seed for each picture", value=False, elem_id=self.elem_id("different_seeds")
            )
        with gr.Row():
            prompt_type = gr.Radio(
                ["positive", "negative"], label="Select prompt", value="positive", elem_id=self.elem_id("prompt_type")
            )
            delimiter = gr.Radio(
                ["comma", "space"],
                label="Select joining char",
                value="comma",
                elem_id=self.elem_id("variations_delimiter"),
            )
        margin_size = gr.Slider(
            label="Grid margins (px)", minimum=0, maximum=500, value=0, step=2, elem_id=self.elem_id("margin_size")
        )
        return [put_at_start, different_seeds, prompt_type, delimiter, margin_size]

    def run(
        self,
        p: Any,
        put_at_start: bool = False,
        different_seeds: bool = False,
        prompt_type: str = "positive",
        variations_delimiter: str = "comma",
        margin_size: Any = 0,
        *_ignored: Any,
    ) -> Any:
        if prompt_type not in ("positive", "negative"):
            raise ValueError(f"Prompt matrix: prompt_type must be 'positive' or 'negative', not {prompt_type!r}")
        processing.fix_seed(p)
        positive = prompt_type == "positive"
        delimiter = " " if variations_delimiter == "space" else ", "
        source = p.prompt if positive else p.negative_prompt
        parts, prompts = combinations(source, put_at_start=bool(put_at_start), delimiter=delimiter)
        results: list[tuple[Any, Any, str]] = []
        with overall_progress(len(prompts)) as progress:
            for i, text in enumerate(prompts):
                if shared.state.interrupted or shared.state.stopping_generation:
                    break
                pc = copy_p(p)
                pc.do_not_save_grid = True
                pc.batch_size, pc.n_iter = 1, 1
                pc.seed = p.seed + (i if different_seeds else 0)
                setattr(pc, "prompt" if positive else "negative_prompt", text)
                res = processing.process_images(pc)
                if res.images:
                    results.append((pc, res.images[-1], res.infotexts[-1]))
                if progress is not None:
                    progress.finished_run(1)
        if not results:
            raise RuntimeError("Prompt matrix: no image was made (interrupted?)")
        return self._result(p, parts, results, int(margin_size or 0))

    def _result(self, p: Any, parts: list[str], results: list[tuple[Any, Any, str]], margin: int) -> Any:
        cells = [image for _, image, _ in results]
        grid = images.image_grid(cells, rows=1 << ((len(parts) - 1) // 2))
        if len(results) == 2 ** (len(parts) - 1):  # an interrupted matrix has no full legend
            grid = images.draw_prompt_matrix(grid, cells[0].width, cells[0].height, parts, margin)
        view = copy_p(results[0][0])  # what Processed.js() reports: every combination
        for name in ("all_prompts", "all_negative_prompts", "all_seeds", "all_subseeds"):
            setattr(view, name, [getattr(pc, name)[0] for pc, _, _ in results])
        infotexts = [text for _, _, text in results]
        if shared.opts.grid_save and not p.do_not_save_grid:
            folder = grids_dir(p, str(shared.data_path))
            images.save_image(
                grid,
                folder,
                "prompt_matrix",
                extension=shared.opts.grid_format,
                prompt=p.prompt,
                seed=view.all_seeds[0],
                grid=True,
                p=view,
                info=infotexts[0],
            )
        return processing.Processed(
            view,
            [grid, *cells],
            seed=view.all_seeds[0],
            info=infotexts[0],
            infotexts=[infotexts[0], *infotexts],
            index_of_first_image=1,
        )
