"""Built-in "Loopback" img2img script (A1111's scripts/loopback.py): each output becomes the next
loop's init image, n loops in a row; the denoising strength moves from the UI's value to the
final one along a curve (Linear, Aggressive = fast at first, Lazy = slow at first).

script_args: [loops, final_denoising_strength, denoising_curve, append_interrogation]
(append_interrogation: "None", "CLIP" or "DeepBooru" adds the interrogated image description to
the prompt at every loop). Result: a grid of all loops (batch count 1) or of each batch's last
image, then those images; infotext has "Final denoising strength" and "Denoising curve".
"""

from __future__ import annotations

import math
from typing import Any

from modules import images, processing, scripts, shared
from modules.extension_host.script_jobs import copy_p, grids_dir, overall_progress

CURVES = ("Aggressive", "Linear", "Lazy")


def denoising_at(loop: int, loops: int, first: float, final: float, curve: str) -> float:
    """The strength for loop `loop` (0-based): `first` at 0, `final` at the last loop."""
    if loops <= 1:
        return first
    progress = loop / (loops - 1)
    if curve == "Aggressive":
        shape = math.sin(progress * math.pi / 2)
    elif curve == "Lazy":
        shape = 1 - math.cos(progress * math.pi / 2)
    else:
        shape = progress
    return first + (final - first) * shape


def _interrogate(kind: str, image: Any) -> str:
    from modules.extension_host.facade import current
    from modules.interrogate.service import InterrogationService

    services = current().services
    model = "clip" if kind == "CLIP" else "deepdanbooru"
    return InterrogationService(services.models, services.paths, services.options).interrogate(image, model)


class Script(scripts.Script):
    def title(self) -> str:
        return "Loopback"

    def show(self, is_img2img: bool) -> bool:
        return is_img2img

    def ui(self, is_img2img: bool) -> list[Any]:
        import gradio as gr

        loops = gr.Slider(minimum=1, maximum=32, step=1, label="Loops", value=4, elem_id=self.elem_id("loops"))
        final = gr.Slider(
            minimum=0,
            maximum=1,
            step=0.01,
            label="Final denoising strength",
            value=0.5,
            elem_id=self.elem_id("final_denoising_strength"),
        )
        curve = gr.Dropdown(label="Denoising strength curve", choices=list(CURVES), value="Linear")
        append = gr.Dropdown(
            label="Append interrogated prompt at each iteration", choices=["None", "CLIP", "DeepBooru"], value="None"
        )
        return [loops, final, curve, append]

    def run(
        self,
        p: Any,
        loops: Any = 4,
        final_denoising_strength: Any = 0.5,
        denoising_curve: str = "Linear",
        append_interrogation: str = "None",
        *_ignored: Any,
    ) -> Any:
        loops, final = int(loops), float(final_denoising_strength)
        if loops < 1 or denoising_curve not in CURVES or append_interrogation not in ("None", "CLIP", "DeepBooru"):
            raise ValueError(
                f"Loopback: loops must be >= 1 (got {loops}), curve one of {list(CURVES)} (got {denoising_curve!r}), "
                f"interrogation None, CLIP or DeepBooru (got {append_interrogation!r})"
            )
        processing.fix_seed(p)
        p.extra_generation_params["Final denoising strength"] = final
        p.extra_generation_params["Denoising curve"] = denoising_curve
        first = float(p.denoising_strength if p.denoising_strength is not None else 0.75)
        batch_count, seed = max(1, int(p.n_iter)), p.seed
        shown: list[Any] = []
        infotexts: list[str] = []
        with overall_progress(loops * batch_count) as progress:
            for _n in range(batch_count):
                init, last = list(p.init_images), None
                for i in range(loops):
                    if shared.state.interrupted or shared.state.skipped:
                        break
                    pc = copy_p(p)
                    pc.n_iter, pc.batch_size, pc.do_not_save_grid = 1, 1, True
                    pc.init_images, pc.seed = init, seed
                    pc.denoising_strength = denoising_at(i, loops, first, final, denoising_curve)
                    if i > 0:
                        pc.inpainting_fill = 1  # masked content "original" after the first loop (A1111)
                    if append_interrogation != "None":
                        found = _interrogate(append_interrogation, init[0])
                        pc.prompt = f"{p.prompt}, {found}" if p.prompt else found
                    processed = processing.process_images(pc)
                    seed = processed.seed + 1
                    last = processed.images[processed.index_of_first_image]
                    init = [last]
                    if batch_count == 1:
                        shown.append(last)
                        infotexts.append(processed.infotexts[processed.index_of_first_image])
                    if progress is not None:
                        progress.finished_run(1)
                if batch_count > 1 and last is not None:
                    shown.append(last)
                    infotexts.append(processed.infotexts[processed.index_of_first_image])
        if not shown:
            raise RuntimeError("Loopback: no image was made (interrupted?)")
        return self._result(p, shown, infotexts)

    def _result(self, p: Any, shown: list[Any], infotexts: list[str]) -> Any:
        if len(shown) < 2:
            return processing.Processed(p, shown, p.seed, infotexts[0], infotexts=infotexts)
        grid = images.image_grid(shown, rows=1)
        if shared.opts.grid_save and not p.do_not_save_grid:
            images.save_image(
                grid,
                grids_dir(p, str(shared.data_path)),
                "grid",
                p.seed,
                p.prompt,
                shared.opts.grid_format,
                info=infotexts[0],
                grid=True,
                p=p,
            )
        if not shared.opts.return_grid:
            return processing.Processed(p, shown, p.seed, infotexts[0], infotexts=infotexts)
        return processing.Processed(
            p, [grid, *shown], p.seed, infotexts[0], infotexts=[infotexts[0], *infotexts], index_of_first_image=1
        )
