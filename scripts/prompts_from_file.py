"""Built-in "Prompts from file or textbox" script (A1111's scripts/prompts_from_file.py): one job
per non-empty line; a line is a prompt, or A1111's options `--prompt "..." --steps 10 --seed 5`
(values with spaces in quotes; --prompt/--negative_prompt take every word up to the next option).

A line that cannot be read fails the whole job with its line number before anything is drawn.
"""

from __future__ import annotations

import copy
import random
import shlex
from collections.abc import Callable
from typing import Any

from modules import processing, scripts, shared
from modules.extension_host.script_jobs import copy_p, model_restored, overall_progress
from modules.generation import samplers


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ValueError(f"expected true or false, got {value!r}")
    return value.lower() == "true"


def _sampler(value: str) -> str:
    return samplers.find_sampler(value)[0].name  # unknown names raise with the valid ones listed


def _sampler_index(value: str) -> str:
    names = samplers.sampler_names()
    index = int(value)
    if not 0 <= index < len(names):
        raise ValueError(f"sampler index {index} is not in 0..{len(names) - 1}")
    return names[index]


def _styles(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


# The options A1111 accepts on a line, with how each value is read.
LINE_OPTIONS: dict[str, Callable[[str], Any]] = {
    "sd_model": str,
    "outpath_samples": str,
    "outpath_grids": str,
    "prompt_for_display": str,
    "prompt": str,
    "negative_prompt": str,
    "styles": _styles,
    "seed": int,
    "subseed_strength": float,
    "subseed": int,
    "seed_resize_from_h": int,
    "seed_resize_from_w": int,
    "sampler_index": _sampler_index,
    "sampler_name": _sampler,
    "scheduler": lambda v: samplers.find_scheduler(v).label,
    "batch_size": int,
    "n_iter": int,
    "steps": int,
    "cfg_scale": float,
    "width": int,
    "height": int,
    "restore_faces": _bool,
    "tiling": _bool,
    "do_not_save_samples": _bool,
    "do_not_save_grid": _bool,
}
_GREEDY = ("prompt", "negative_prompt")  # these take all words up to the next --option


def parse_line(line: str) -> dict[str, Any]:
    """`--key value ...` -> {key: value}; raises ValueError naming the bad part."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise ValueError(f"cannot split the line ({exc})") from None
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(words):
        word = words[pos]
        if not word.startswith("--"):
            raise ValueError(f'options must start with "--": {word!r}')
        tag = word[2:]
        if tag not in LINE_OPTIONS:
            raise ValueError(f"unknown option {word!r} (known: {', '.join('--' + k for k in LINE_OPTIONS)})")
        if pos + 1 >= len(words) or (words[pos + 1].startswith("--") and tag not in _GREEDY):
            raise ValueError(f"missing value for {word}")
        pos += 1
        if tag in _GREEDY:
            taken = []
            while pos < len(words) and not words[pos].startswith("--"):
                taken.append(words[pos])
                pos += 1
            out[tag] = " ".join(taken)
            continue
        try:
            out[tag] = LINE_OPTIONS[tag](words[pos])
        except ValueError as exc:
            raise ValueError(f"bad value for {word}: {exc}") from None
        pos += 1
    return out


def parse_lines(text: str) -> list[dict[str, Any]]:
    jobs = []
    for number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("--"):  # a plain prompt (A1111 checks for "--" anywhere; a prompt may hold it)
            jobs.append({"prompt": line})
            continue
        try:
            jobs.append(parse_line(line))
        except ValueError as exc:
            raise ValueError(f"Prompts from file: line {number}: {exc}: {line!r}") from None
    return jobs


def apply_job(p: Any, job: dict[str, Any], prompt_position: str) -> Any:
    """A copy of `p` with the line's values; the line's prompts join the UI prompt (start/end)."""
    pc = copy_p(p)
    for key, value in job.items():
        if key == "sd_model":
            pc.override_settings["sd_model_checkpoint"] = value
        elif key not in ("prompt", "negative_prompt"):
            setattr(pc, key, value)
    for key in ("prompt", "negative_prompt"):
        given, base = job.get(key), getattr(p, key)
        if given and base:
            setattr(pc, key, f"{given} {base}" if prompt_position == "start" else f"{base} {given}")
        elif given:
            setattr(pc, key, given)
    return pc


class Script(scripts.Script):
    def title(self) -> str:
        return "Prompts from file or textbox"

    def ui(self, is_img2img: bool) -> list[Any]:
        import gradio as gr

        iterate = gr.Checkbox(label="Iterate seed every line", value=False, elem_id=self.elem_id("checkbox_iterate"))
        iterate_batch = gr.Checkbox(
            label="Use same random seed for all lines", value=False, elem_id=self.elem_id("checkbox_iterate_batch")
        )
        position = gr.Radio(
            ["start", "end"], label="Insert prompts at the", value="start", elem_id=self.elem_id("prompt_position")
        )
        prompt_txt = gr.Textbox(
            label="List of prompt inputs", lines=2, max_lines=30, elem_id=self.elem_id("prompt_txt")
        )
        upload = gr.File(label="Upload prompt inputs", type="binary", elem_id=self.elem_id("file"))
        upload.change(fn=_file_text, inputs=[upload], outputs=[upload, prompt_txt], show_progress="hidden")
        return [iterate, iterate_batch, position, prompt_txt]

    def run(
        self,
        p: Any,
        checkbox_iterate: bool = False,
        checkbox_iterate_batch: bool = False,
        prompt_position: str = "start",
        prompt_txt: str = "",
        *_ignored: Any,
    ) -> Any:
        jobs = parse_lines(str(prompt_txt or ""))
        if not jobs:
            raise ValueError("Prompts from file: no prompts given (one prompt or option line per line)")
        p.do_not_save_grid = True
        if (checkbox_iterate or checkbox_iterate_batch) and p.seed == -1:
            p.seed = random.randrange(4294967294)
        all_images: list[Any] = []
        infotexts: list[str] = []
        done: list[Any] = []
        total = sum(int(job.get("n_iter", p.n_iter)) for job in jobs)
        with model_restored(), overall_progress(total) as progress:
            for number, job in enumerate(jobs, start=1):
                if shared.state.interrupted or shared.state.stopping_generation:
                    break
                shared.state.job = f"{number} out of {len(jobs)}"
                pc = apply_job(p, job, prompt_position)
                res = processing.process_images(pc)
                all_images += res.images
                infotexts += res.infotexts
                done.append(pc)
                if progress is not None:
                    progress.finished_run(pc.n_iter)
                if checkbox_iterate:
                    p.seed = p.seed + p.batch_size * p.n_iter
        return self._result(done, all_images, infotexts)

    @staticmethod
    def _result(done: list[Any], all_images: list[Any], infotexts: list[str]) -> Any:
        if not done:
            raise RuntimeError("Prompts from file: interrupted before the first line")
        view = copy.copy(done[0])
        for name in ("all_prompts", "all_negative_prompts", "all_seeds", "all_subseeds"):
            setattr(view, name, [v for pc in done for v in getattr(pc, name)])
        return processing.Processed(
            view,
            all_images,
            seed=view.all_seeds[0] if view.all_seeds else -1,
            info=infotexts[0] if infotexts else "",
            infotexts=infotexts,
        )


def _file_text(upload: Any) -> tuple[Any, Any]:
    """An uploaded file's text goes into the textbox and the upload clears itself; clearing it
    calls this again with None, which must leave the text alone."""
    if not isinstance(upload, bytes):
        return None, gr_update()
    return None, upload.decode("utf-8", errors="replace")


def gr_update() -> Any:
    import gradio as gr

    return gr.update()
