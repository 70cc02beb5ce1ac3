"""Hooks the sampler the ways A1111 extensions do; what it saw goes to p.sampler_probe.

Mode (the script argument):
  probe    record p.sampler, its model wrappers and p.rng as scripts see them
  combine  wrap CFGDenoiser.combine_denoised on the class, doubling the CFG scale (undone in
           postprocess, as CFG-fix extensions do)
  inner    wrap p.sampler.model_wrap_cfg.inner_model: every x0 of the model times 0.8
  kdiff    Dynamic Thresholding's pattern: a new sampler in sd_samplers.all_samplers_map whose
           constructor swaps in a CFGDenoiserKDiffusion subclass that halves the CFG scale;
           p.sampler_name points at it for the batch
  conds    p.setup_conds() / p.get_conds() in process_batch, p.c / p.uc again after sampling
  same     replace p.sampler.model_wrap_cfg.forward (instance) by one that calls the original on
           the whole latent, recording the arguments it gets
  tiles    Tiled Diffusion's pattern: the replaced forward runs the original on the left and the
           right half of the latent and stitches them
  scale    replace CFGDenoiser.forward on the class: the original's x0 times 0.9 (undone in
           postprocess)
  swap     swap sd_samplers.create_sampler (restored in postprocess) for one that records the
           names it makes and hooks inner_model.forward of what it makes (x0 times 0.8), as
           MultiDiffusion does

It also registers an attention optimization ("toy-half": cross-attention output halved) through
on_list_optimizers, applied by sd_hijack.model_hijack.apply_optimizations("toy-half").
"""

import gradio as gr
import torch

import k_diffusion.external
import k_diffusion.sampling
import ldm.modules.attention
from modules import script_callbacks, scripts, sd_hijack_optimizations, sd_samplers, sd_samplers_common
from modules.sd_samplers_cfg_denoiser import CFGDenoiser
from modules.sd_samplers_kdiffusion import CFGDenoiserKDiffusion, KDiffusionSampler


class HalfAttention(sd_hijack_optimizations.SdOptimization):
    name = "toy-half"
    label = "halved cross-attention"

    def apply(self):
        original = ldm.modules.attention.CrossAttention.forward

        def forward(self, x, context=None, mask=None, **kwargs):
            return original(self, x, context=context, mask=mask, **kwargs) * 0.5

        ldm.modules.attention.CrossAttention.forward = forward


script_callbacks.on_list_optimizers(lambda found: found.append(HalfAttention()))


def _conds(c, uc):
    """What the A1111 structures hold: per image, per AND part, (weight, [(end_at_step, shape, abs sum)])."""

    def schedule(entries):
        return [(e.end_at_step, tuple(e.cond.shape), round(float(e.cond.abs().sum()), 3)) for e in entries]

    return {
        "c": [[(part.weight, schedule(part.schedules)) for part in parts] for parts in c.batch],
        "uc": [schedule(entries) for entries in uc],
        "shape": c.shape,
    }


class HalfCFG(CFGDenoiserKDiffusion):
    def __init__(self, sampler, probe):
        super().__init__(sampler)
        self.probe = probe

    def combine_denoised(self, x_out, conds_list, uncond, cond_scale):
        self.probe.setdefault("half_steps", []).append((self.step, self.total_steps))
        return super().combine_denoised(x_out, conds_list, uncond, cond_scale * 0.5)


def _replace_forward(cfg, probe, tiled):
    original = cfg.forward

    def forward(x, sigma, **kwargs):
        probe.setdefault("steps", []).append(cfg.step)
        probe["kwargs"] = sorted(kwargs)
        probe["cond"] = (type(kwargs["cond"]).__name__, len(kwargs["uncond"]), kwargs["cond_scale"])
        if not tiled:
            return original(x, sigma, **kwargs)
        half = x.shape[-1] // 2
        left = original(x[..., :half], sigma, **kwargs)
        right = original(x[..., half:], sigma, **kwargs)
        probe.setdefault("tile_widths", []).append((left.shape[-1], right.shape[-1]))
        return torch.cat([left, right], dim=-1)

    cfg.forward = forward


def _hooked_sampler(original_create, name, model, probe):
    probe.setdefault("made", []).append(name)
    sampler = original_create(name, model)
    inner = sampler.model_wrap_cfg.inner_model
    inner_forward = inner.forward
    inner.forward = lambda x, sigma, cond: inner_forward(x, sigma, cond=cond) * 0.8
    return sampler


class SamplerProbe(scripts.Script):
    undo = None

    def title(self):
        return "Sampler probe"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.Textbox("", label="Mode")]

    def process(self, p, mode):
        p.sampler_probe = probe = {}
        sampler = p.sampler
        if mode == "probe":
            wrap = sampler.model_wrap
            probe.update(
                sampler=isinstance(sampler, KDiffusionSampler),
                base=isinstance(sampler, sd_samplers_common.Sampler),
                base_attrs=(sampler.s_churn, sampler.s_noise, sampler.eta_infotext_field, sampler.last_latent),
                name=sampler.config.name,
                funcname=sampler.funcname,
                compvis=isinstance(wrap, k_diffusion.external.CompVisDenoiser),
                cfg=isinstance(sampler.model_wrap_cfg, CFGDenoiser),
                inner_is_wrap=sampler.model_wrap_cfg.inner_model is wrap,
                wrap_model=wrap.inner_model is p.sd_model,
                sigmas=len(wrap.sigmas),
                roundtrip=float(wrap.t_to_sigma(wrap.sigma_to_t(torch.tensor(2.0)))),
                karras=len(k_diffusion.sampling.get_sigmas_karras(5, float(wrap.sigma_min), float(wrap.sigma_max))),
            )
        elif mode == "combine":
            original = CFGDenoiser.combine_denoised

            def combine(self, x_out, conds_list, uncond, cond_scale):
                probe.setdefault("combine_steps", []).append(self.step)
                return original(self, x_out, conds_list, uncond, cond_scale * 2)

            CFGDenoiser.combine_denoised = combine
            SamplerProbe.undo = lambda: setattr(CFGDenoiser, "combine_denoised", original)
        elif mode in ("same", "tiles"):
            _replace_forward(sampler.model_wrap_cfg, probe, mode == "tiles")
        elif mode == "scale":
            original_forward = CFGDenoiser.forward
            CFGDenoiser.forward = lambda self, x, sigma, **kw: original_forward(self, x, sigma, **kw) * 0.9
            SamplerProbe.undo = lambda: setattr(CFGDenoiser, "forward", original_forward)
        elif mode == "swap":
            original_create = sd_samplers.create_sampler
            sd_samplers.create_sampler = lambda name, model: _hooked_sampler(original_create, name, model, probe)
            SamplerProbe.undo = lambda: setattr(sd_samplers, "create_sampler", original_create)
        elif mode == "apply":  # Mixture of Diffusers' pattern: the model's apply_model replaced
            model, original_apply = p.sd_model, p.sd_model.apply_model

            def apply_model(x, t, cond):
                probe.setdefault("apply_keys", sorted(cond))
                return original_apply(x, t, cond=cond)

            model.apply_model = apply_model
            SamplerProbe.undo = lambda: delattr(model, "apply_model")
        elif mode == "inner":
            inner = sampler.model_wrap_cfg.inner_model

            def scaled(x, sigma, **kwargs):
                probe.setdefault("cond_keys", sorted(kwargs["cond"]))
                return inner(x, sigma, **kwargs) * 0.8

            sampler.model_wrap_cfg.inner_model = scaled

    def before_process_batch(self, p, mode, **kwargs):
        if mode == "probe":
            p.sampler_probe["batch_rng"] = (tuple(p.rng.shape), p.rng.seeds == kwargs["seeds"], p.rng.is_first)
            p.sampler_probe["batch_rng_object"] = p.rng

    def process_batch(self, p, mode, **kwargs):
        if mode == "conds":
            p.setup_conds()
            c, uc = p.get_conds()
            p.sampler_probe["before"] = _conds(c, uc)
        if mode != "kdiff":
            return
        base = sd_samplers.all_samplers_map[p.sampler_name]

        def construct(model):
            made = base.constructor(model)
            made.model_wrap_cfg = HalfCFG(made, p.sampler_probe)
            return made

        name = f"{p.sampler_name}_toy"
        sd_samplers.all_samplers_map[name] = sd_samplers_common.SamplerData(name, construct, base.aliases, base.options)
        p.toy_sampler_name, p.sampler_name = p.sampler_name, name
        p.extra_generation_params["Sampler"] = p.toy_sampler_name
        if p.sampler is not None:
            p.sampler = sd_samplers.create_sampler(p.sampler_name, p.sd_model)

    def process_before_every_sampling(self, p, mode, **kwargs):
        if mode == "probe":
            p.sampler_probe["rng"] = (type(p.rng).__name__, tuple(p.rng.shape), callable(p.rng.next))
            p.sampler_probe["same_rng"] = p.rng is p.sampler_probe.pop("batch_rng_object")

    def postprocess_batch(self, p, mode, **kwargs):
        if mode == "kdiff":
            del sd_samplers.all_samplers_map[p.sampler_name]
            p.sampler_name = p.toy_sampler_name

    def postprocess(self, p, processed, mode):
        if mode == "conds":
            p.sampler_probe["after"] = _conds(p.c, p.uc)
        if SamplerProbe.undo is not None:
            SamplerProbe.undo()
            SamplerProbe.undo = None
