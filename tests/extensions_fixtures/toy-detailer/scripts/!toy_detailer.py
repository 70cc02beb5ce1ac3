"""adetailer's call pattern (Bing-su/adetailer, reproduced, not copied): in postprocess_image of a
txt2img/img2img job, a detector finds regions (here: a fixed box stands in for the YOLO model),
each becomes a mask for a nested `StableDiffusionProcessingImg2Img(...)` built with the keyword
arguments adetailer passes, with a filtered copy of `p.scripts`, run by `process_images`; the
inpainted image replaces `pp.image` and the job's infotext gets the detailer's entries."""

from copy import copy

import gradio as gr
from PIL import Image, ImageDraw

from modules import scripts, shared
from modules.processing import StableDiffusionProcessingImg2Img, create_infotext, process_images
from modules.shared import opts, state


def detect(image):
    """The stand-in detector: one box in the image's centre (adetailer's masks are 'L' images)."""
    mask = Image.new("L", image.size, 0)
    w, h = image.size
    ImageDraw.Draw(mask).rectangle([w // 4, h // 4, w * 3 // 4 - 1, h * 3 // 4 - 1], fill=255)
    return [mask]


class ToyDetailer(scripts.Script):
    def title(self):
        return "Toy detailer"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        enabled = gr.Checkbox(False, label="Toy detailer")
        prompt = gr.Textbox("", label="Toy detailer prompt")
        return [enabled, prompt]

    def get_i2i_p(self, p, image, prompt):
        i2i = StableDiffusionProcessingImg2Img(
            init_images=[image],
            resize_mode=0,
            denoising_strength=0.9,
            mask=None,
            mask_blur=0,
            inpainting_fill=1,
            inpaint_full_res=True,
            inpaint_full_res_padding=8,
            inpainting_mask_invert=0,
            initial_noise_multiplier=1.0,
            sd_model=p.sd_model,
            outpath_samples=p.outpath_samples,
            outpath_grids=p.outpath_grids,
            prompt="",
            negative_prompt="",
            styles=p.styles,
            seed=p.all_seeds[0] + 1,
            subseed=p.all_subseeds[0],
            subseed_strength=p.subseed_strength,
            seed_resize_from_h=p.seed_resize_from_h,
            seed_resize_from_w=p.seed_resize_from_w,
            sampler_name=p.sampler_name,
            batch_size=1,
            n_iter=1,
            steps=p.steps,
            cfg_scale=p.cfg_scale,
            width=p.width,
            height=p.height,
            restore_faces=False,
            tiling=p.tiling,
            extra_generation_params=dict(p.extra_generation_params),
            do_not_save_samples=True,
            do_not_save_grid=True,
            override_settings={},
            scheduler=p.scheduler,
        )
        i2i.cached_c = [None, None]
        i2i.cached_uc = [None, None]
        runner = copy(p.scripts)
        runner.alwayson_scripts = [s for s in runner.alwayson_scripts if s.filename != self.filename]
        i2i.scripts, i2i.script_args = runner, list(p.script_args)
        i2i._ad_disabled = True
        i2i.prompt = prompt or p.prompt
        return i2i

    def postprocess_image(self, p, pp, enabled, prompt):
        if not enabled or getattr(p, "_ad_disabled", False):
            return
        if state.interrupted or state.skipped:
            return
        masks = detect(pp.image)
        state.job_count += len(masks)
        p2 = self.get_i2i_p(p, pp.image.copy(), prompt)
        processed = None
        for mask in masks:
            p2.image_mask = mask
            p2.init_images[0] = p2.init_images[0].convert("RGB")
            processed = process_images(p2)
            p2.close()
            if processed.images:
                p2.init_images = [processed.images[0]]
        if processed is not None and processed.images:
            pp.image = processed.images[0]
            p.extra_generation_params["Toy detailer"] = f"{len(masks)} region(s)"
            p.extra_generation_params["Toy detailer steps"] = p2.steps
            p.toy_detailer_info = create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds)
            p.toy_detailer_inner_alwayson = [type(s).__name__ for s in p2.scripts.alwayson_scripts]
            p.toy_detailer_opts = opts.data.get("ad_only_selected_scripts", True)
            shared.state.assign_current_image(pp.image)
