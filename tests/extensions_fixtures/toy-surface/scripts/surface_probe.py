"""Reproduces what the audit found popular extensions import and read (docs/extensions.md).

Module-level imports are the patterns of adetailer, sd-dynamic-prompts, ultimate-upscale,
tagcomplete, infinite-image-browsing, controlnet, regional-prompter...; `probe()` reads the values
at run time and the test compares them with the app's. An on_app_started route returns them.
"""

import os

import launch
import modules.devices
import modules.shared
import modules.ui
from launch import commit_hash, git_tag
from modules import (
    cache,
    call_queue,
    cmd_args,
    devices,
    errors,
    extensions,
    extras,
    face_restoration,
    images,
    img2img,
    launch_utils,
    masking,
    memmon,
    modelloader,
    paths,
    paths_internal,
    processing,
    prompt_parser,
    rng,
    safe,
    script_callbacks,
    scripts,
    sd_hijack,
    sd_models,
    sd_samplers,
    sd_samplers_common,
    sd_samplers_kdiffusion,
    sd_vae,
    shared,
    shared_items,
    shared_state,
    timer,
    ui_common,
    ui_extra_networks,
    upscaler,
)
from modules.api import api as sd_api
from modules.api import models as api_models
from modules.devices import NansException
from modules.generation_parameters_copypaste import ParamBinding, register_paste_params_button
from modules.images import flatten
from modules.paths_internal import extensions_builtin_dir
from modules.processing import create_binary_mask, create_random_tensors, process_images_inner
from modules.processing_scripts.comments import strip_comments
from modules.sd_models import checkpoint_tiles, read_metadata_from_safetensors, read_state_dict
from modules.sd_samplers import all_samplers
from modules.ui import gr_show

try:  # adetailer / tagcomplete guard these; here they exist
    from modules.sd_schedulers import schedulers
except ImportError:
    schedulers = []


def probe():
    """Values as an extension reads them (A1111 names)."""
    opts = shared.cmd_opts
    return {
        "device": str(devices.device),
        "dtype": str(modules.devices.dtype),
        "cpu": str(devices.cpu),
        "nans_exception": NansException.__name__,
        "lora_dir": opts.lora_dir,
        "embeddings_dir": opts.embeddings_dir,
        "hypernetwork_dir": opts.hypernetwork_dir,
        "ckpt_dir": opts.ckpt_dir,
        "use_cpu": list(opts.use_cpu),
        "models_path": paths.models_path,
        "outdir_txt2img_samples": shared.opts.outdir_txt2img_samples,
        # infinite-image-browsing: opts.data values joined to the working directory (A1111's folder)
        "outdir_from_data": os.path.join(os.getcwd(), shared.opts.data.get("outdir_txt2img_samples")),
        "data_path": paths_internal.data_path,
        "extensions_dir": extensions.extensions_dir,
        "extensions_builtin_dir": extensions_builtin_dir,
        "active": [e.name for e in extensions.active()],
        "upscalers": [u.name for u in shared.sd_upscalers],
        "first_upscaler": shared.sd_upscalers[0].name,
        "face_restorers": [f.name() for f in shared.face_restorers],
        "hypernetworks": sorted(shared.hypernetworks),
        "samplers": [s.name for s in all_samplers],
        "schedulers": [s.label for s in schedulers],
        "k_samplers": len(sd_samplers_kdiffusion.samplers_k_diffusion),
        "sampler_lookup": sd_samplers.get_sampler_and_scheduler("DPM++ 2M Karras", None),
        "img2img_steps": sd_samplers_common.setup_img2img_steps(
            type("P", (), {"steps": 20, "denoising_strength": 0.5})
        ),
        "schedule": prompt_parser.get_learned_conditioning_prompt_schedules(["a [cat:dog:0.5] ball"], 10),
        "attention": prompt_parser.parse_prompt_attention("(red:1.2) ball"),
        "checkpoint_tiles": checkpoint_tiles(),
        "vae_items": shared_items.sd_vae_items(),
        "git_tag": git_tag(),
        "commit_hash": commit_hash(),
        "launch_args_data_dir": launch.args.data_dir,
        "launch_utils_python": launch_utils.python,
        "parser_has_lora_dir": any(a.dest == "lora_dir" for a in cmd_args.parser._actions),
        "mem_mon": type(shared.mem_mon).__name__,
        "memmon_class": memmon.MemUsageMonitor.__name__,
        "gr_show": gr_show(False),
        "strip_comments": strip_comments("a ball # hidden\n# line\nred"),
        "crop": masking.get_crop_region(create_binary_mask(_square_mask()), pad=2),
        "flatten_mode": flatten(_square_mask(), "#ffffff").mode,
        "state_class": shared_state.State.__name__,
        "timer": type(timer.Timer()).__name__,
        "token_count": sd_hijack.model_hijack.get_prompt_lengths("a red ball"),
        "vae_dict": sd_vae.vae_dict,
        "safe_load": safe.load.__name__,
        "paste_binding": ParamBinding.__name__,
        "api_model": api_models.StableDiffusionTxt2ImgProcessingAPI.__name__,
        "noise_shape": list(create_random_tensors((4, 8, 8), [1, 2]).shape),
        "process_images_inner": process_images_inner.__name__,
        "ui_common_refresh": ui_common.create_refresh_button.__name__,
        "extra_pages": len(ui_extra_networks.extra_pages),
        "upscaler_data": upscaler.UpscalerData.__name__,
        "face_restoration": face_restoration.restore_faces.__name__,
        "modelloader": modelloader.load_file_from_url.__name__,
        "img2img_batch": img2img.process_batch.__name__,
        "extras_pnginfo": extras.run_pnginfo.__name__,
        "rng": rng.ImageRNG.__name__,
        "call_queue": call_queue.wrap_gradio_call.__name__,
        "errors": errors.report.__name__,
        "cache": cache.cache.__name__,
        "images_save": images.save_image.__name__,
        "sd_api": sd_api.decode_base64_to_image.__name__,
        "read_state_dict": read_state_dict.__name__,
        "read_metadata": read_metadata_from_safetensors.__name__,
        "processing": processing.process_images.__name__,
        "scripts_basedir": os.path.basename(scripts.basedir()),
        "sd_models": sd_models.list_models.__name__,
        "ui_module": modules.ui.plaintext_to_html("a<b"),
        "register_paste": register_paste_params_button.__name__,
    }


def _square_mask():
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((8, 8, 15, 15), fill=(255, 255, 255, 255))
    return image


def _routes(demo, app):
    @app.get("/toy-surface/probe")
    def read_probe():
        return probe()


script_callbacks.on_app_started(_routes)
