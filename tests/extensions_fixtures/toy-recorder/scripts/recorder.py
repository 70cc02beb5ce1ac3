"""Records every processing hook with its arguments on p.toy_calls (for hook-order tests)."""

import gradio as gr

from modules import scripts, shared


class Recorder(scripts.Script):
    def title(self):
        return "Hook recorder"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.Checkbox(False, label="Record"), gr.Number(7, label="Token")]

    def _log(self, p, name, enabled, token, **extra):
        if enabled:
            p.toy_calls.append((name, token, extra))

    def setup(self, p, enabled, token):
        p.toy_calls = []
        self._log(
            p, "setup", enabled, token, state_job=shared.state.job_count, steps_opt=shared.opts.CLIP_stop_at_last_layers
        )

    def before_process(self, p, enabled, token):
        self._log(p, "before_process", enabled, token)

    def process(self, p, enabled, token):
        self._log(p, "process", enabled, token, prompts=len(p.all_prompts), seeds=list(p.all_seeds))

    def before_process_batch(self, p, enabled, token, **kwargs):
        self._log(
            p, "before_process_batch", enabled, token, batch_number=kwargs["batch_number"], seeds=list(kwargs["seeds"])
        )

    def process_batch(self, p, enabled, token, **kwargs):
        self._log(
            p, "process_batch", enabled, token, batch_number=kwargs["batch_number"], prompts=list(kwargs["prompts"])
        )

    def process_before_every_sampling(self, p, enabled, token, **kwargs):
        self._log(p, "process_before_every_sampling", enabled, token, keys=sorted(kwargs))

    def postprocess_batch(self, p, enabled, token, **kwargs):
        self._log(
            p,
            "postprocess_batch",
            enabled,
            token,
            batch_number=kwargs["batch_number"],
            shape=tuple(kwargs["images"].shape),
        )

    def postprocess_batch_list(self, p, pp, enabled, token, **kwargs):
        self._log(
            p, "postprocess_batch_list", enabled, token, batch_number=kwargs["batch_number"], count=len(pp.images)
        )

    def postprocess_image(self, p, pp, enabled, token):
        self._log(p, "postprocess_image", enabled, token, size=pp.image.size)

    def postprocess(self, p, processed, enabled, token):
        self._log(p, "postprocess", enabled, token, images=len(processed.images), seed=processed.seed)
