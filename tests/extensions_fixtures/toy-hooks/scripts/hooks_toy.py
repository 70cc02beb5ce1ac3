"""Records every processing hook and generation callback (name and key arguments) on
p.toy_hooks, and changes what the chosen modes ask for, so tests can see the changes land.

Modes (comma-separated, second script argument):
  cond        on_cfg_denoiser: text_cond := text_uncond (the prompt stops mattering)
  keep        on_mask_blend: blended latent := init latent (inpainting changes nothing)
  zero        post_sample: samples := zeros (every seed decodes the same image)
  quiet       on_extra_noise: noise := zeros (extra noise adds nothing)
  rename      on_before_image_saved: file toy-<seed>.png, pnginfo "toy" key, infotext suffix
  strip       on_image_grid: one row with every image
  boom        on_cfg_denoiser raises (isolation)
"""

import gradio as gr
import torch

from modules import script_callbacks, scripts, shared

# The job being traced (extensions keep such state at module level; callbacks get no p).
TRACE = {"p": None, "modes": (), "models": []}


def _record(name, **details):
    p = TRACE["p"]
    if p is not None:
        p.toy_hooks.append((name, details))


def _on(mode):
    return mode in TRACE["modes"]


class HookTracer(scripts.Script):
    def title(self):
        return "Hook tracer"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.Checkbox(False, label="Trace"), gr.Textbox("", label="Modes")]

    def setup(self, p, enabled, modes):
        p.toy_hooks = []
        TRACE["p"] = p if enabled else None
        TRACE["modes"] = tuple(m.strip() for m in str(modes).split(",") if m.strip()) if enabled else ()
        _record("setup")

    def before_process(self, p, *args):
        _record("before_process")

    def process(self, p, enabled, modes):
        _record("process", prompts=list(p.all_prompts))
        if enabled:
            p.extra_generation_params["Toy hooks"] = modes or "trace"

    def before_process_batch(self, p, *args, **kw):
        _record("before_process_batch", batch_number=kw["batch_number"])

    def after_extra_networks_activate(self, p, *args, **kw):
        _record(
            "after_extra_networks_activate",
            batch_number=kw["batch_number"],
            networks=sorted(kw["extra_network_data"]),
            hr=p.is_hr_pass,
        )

    def process_batch(self, p, *args, **kw):
        _record("process_batch", batch_number=kw["batch_number"])

    def process_before_every_sampling(self, p, *args, **kw):
        _record("process_before_every_sampling", hr=p.is_hr_pass, shape=tuple(kw["x"].shape))

    def before_hr(self, p, *args):
        _record("before_hr", hr=p.is_hr_pass)

    def on_mask_blend(self, p, mba, *args):
        _record("on_mask_blend", final=mba.is_final_blend)
        if _on("keep"):
            mba.blended_latent = mba.init_latent.clone()

    def post_sample(self, p, ps, *args):
        _record("post_sample", shape=tuple(ps.samples.shape))
        if _on("zero"):
            ps.samples = torch.zeros_like(ps.samples)

    def postprocess_batch(self, p, *args, **kw):
        _record("postprocess_batch", batch_number=kw["batch_number"])

    def postprocess_batch_list(self, p, pp, *args, **kw):
        _record("postprocess_batch_list", count=len(pp.images))

    def postprocess_image(self, p, pp, *args):
        _record("postprocess_image", size=pp.image.size)

    def postprocess_maskoverlay(self, p, ppmo, *args):
        _record("postprocess_maskoverlay", index=ppmo.index, masked=ppmo.mask_for_overlay is not None)

    def postprocess_image_after_composite(self, p, pp, *args):
        _record("postprocess_image_after_composite", size=pp.image.size)

    def postprocess(self, p, processed, *args):
        _record("postprocess", images=len(processed.images))
        TRACE["p"] = None


def on_cfg_denoiser(params):
    _record(
        "cfg_denoiser",
        step=params.sampling_step,
        total=params.total_sampling_steps,
        rows=int(params.x.shape[0]),
        same_p=params.denoiser.p is TRACE["p"],
    )
    if _on("boom"):
        raise RuntimeError("toy cfg_denoiser exploded")
    if _on("cond"):
        uncond = params.text_uncond  # SDXL: {"crossattn": ..., "vector": ...}
        params.text_cond = {k: v.clone() for k, v in uncond.items()} if isinstance(uncond, dict) else uncond.clone()


def on_cfg_denoised(params):
    _record("cfg_denoised", rows=int(params.x.shape[0]))


def on_cfg_after_cfg(params):
    _record("cfg_after_cfg", shape=tuple(params.x.shape), clip_skip=shared.opts.CLIP_stop_at_last_layers)


def on_extra_noise(params):
    _record("extra_noise", shape=tuple(params.noise.shape))
    if _on("quiet"):
        params.noise = torch.zeros_like(params.noise)


def on_before_image_saved(params):
    _record("before_image_saved", planned=params.filename)
    if _on("rename") and params.p is not None:
        folder = params.filename.rsplit("/", 1)[0]
        params.filename = f"{folder}/toy-{params.p.seed}.png"
        params.pnginfo["toy"] = "renamed"
        params.pnginfo["parameters"] += ", Toy saved: yes"


def on_image_saved(params):
    _record("image_saved", filename=params.filename)


def on_image_grid(params):
    _record("image_grid", cols=params.cols, rows=params.rows, count=len(params.imgs))
    if _on("strip"):
        params.cols, params.rows = len(params.imgs), 1


def on_model_loaded(sd_model):
    TRACE["models"].append(sd_model.sd_checkpoint_info.model_name)


script_callbacks.on_cfg_denoiser(on_cfg_denoiser)
script_callbacks.on_cfg_denoised(on_cfg_denoised)
script_callbacks.on_cfg_after_cfg(on_cfg_after_cfg)
script_callbacks.on_extra_noise(on_extra_noise)
script_callbacks.on_before_image_saved(on_before_image_saved)
script_callbacks.on_image_saved(on_image_saved)
script_callbacks.on_image_grid(on_image_grid)
script_callbacks.on_model_loaded(on_model_loaded)
