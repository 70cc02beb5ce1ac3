"""Built-in "img2img alternative test" script (A1111's scripts/img2imgalt.py): instead of adding
random noise to the init image, find the noise that the model would turn into that image under
the "original" prompt (the sampler run backwards, modules/generation/find_noise.py), then sample
forward from it with the new prompt: the composition stays, the prompt's change is applied.
Works best with Euler, denoising strength 1 and the decode prompt describing the image.

script_args: [original_prompt, original_negative_prompt, cfg (decode CFG scale), st (decode
steps), randomness (0 = only the found noise, 1 = only the seed's), sigma_adjustment].
"""

from __future__ import annotations

from typing import Any

from modules import processing, scripts
from modules.generation.find_noise import DecodeSettings, noise_finder


class Script(scripts.Script):
    def title(self) -> str:
        return "img2img alternative test"

    def show(self, is_img2img: bool) -> bool:
        return is_img2img

    def ui(self, is_img2img: bool) -> list[Any]:
        import gradio as gr

        original_prompt = gr.Textbox(label="Original prompt", lines=1, elem_id=self.elem_id("original_prompt"))
        original_negative = gr.Textbox(
            label="Original negative prompt", lines=1, elem_id=self.elem_id("original_negative_prompt")
        )
        cfg = gr.Slider(
            label="Decode CFG scale", minimum=0.0, maximum=15.0, step=0.1, value=1.0, elem_id=self.elem_id("cfg")
        )
        steps = gr.Slider(label="Decode steps", minimum=1, maximum=150, step=1, value=50, elem_id=self.elem_id("st"))
        randomness = gr.Slider(
            label="Randomness", minimum=0.0, maximum=1.0, step=0.01, value=0.0, elem_id=self.elem_id("randomness")
        )
        sigma_adjustment = gr.Checkbox(
            label="Sigma adjustment for finding noise for image", value=False, elem_id=self.elem_id("sigma_adjustment")
        )
        return [original_prompt, original_negative, cfg, steps, randomness, sigma_adjustment]

    def run(
        self,
        p: Any,
        original_prompt: str = "",
        original_negative_prompt: str = "",
        cfg: Any = 1.0,
        st: Any = 50,
        randomness: Any = 0.0,
        sigma_adjustment: Any = False,
    ) -> Any:
        decode = DecodeSettings(
            str(original_prompt or ""),
            str(original_negative_prompt or ""),
            float(cfg),
            int(st),
            float(randomness),
            bool(sigma_adjustment),
        )
        if decode.steps < 1 or not 0.0 <= decode.randomness <= 1.0:
            raise ValueError(f"img2img alternative test: decode steps must be >= 1 and randomness 0-1, got {decode}")
        p.batch_size, p.n_iter = 1, 1  # one found noise per job, as in A1111
        p.find_noise = noise_finder(decode)
        p.extra_generation_params.update(
            {
                "Decode prompt": decode.prompt,
                "Decode negative prompt": decode.negative_prompt,
                "Decode CFG scale": decode.cfg_scale,
                "Decode steps": decode.steps,
                "Randomness": decode.randomness,
                "Sigma Adjustment": decode.sigma_adjustment,
            }
        )
        return processing.process_images(p)
