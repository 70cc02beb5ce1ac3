"""The generation service: typed request -> `Processing` -> images, infotext, saved files.

`GenerationService.txt2img` / `.img2img` run inside a job (they receive its JobControl) and
follow A1111's process_images: prompts and seeds for the whole job, then per batch: hooks,
extra-network tags, conditioning, sampling, decoding, overlay, infotext, saving; then grid,
params.txt and the result object. Script hooks and script_callbacks are called at A1111's
points in A1111's order (docs/extensions.md "Hook order").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
from PIL import Image

from modules.core.devices import MemoryPeak, peak_memory
from modules.core.jobs import JobControl, JobInterrupted, JobSkipped
from modules.core.options import Options
from modules.core.paths import Paths
from modules.generation import samplers
from modules.generation.filename_pattern import FilenameContext
from modules.generation.hooks import (
    PostprocessBatchListArgs,
    PostprocessImageArgs,
    PostProcessMaskOverlayArgs,
    PostSampleArgs,
    ScriptHooks,
    ScriptHooksSlot,
)
from modules.generation.img2img import Img2ImgPlan, img2img_batch, prepare_img2img
from modules.generation.infotext import GenerationFacts, InfotextFlags, create_infotext
from modules.generation.latents import tensor_to_pil
from modules.generation.passes import batch_rng
from modules.generation.preview import preview_decoder
from modules.generation.processing import VERSION, GenerationResult, Processing
from modules.generation.prompt_parser import parse_extra_network_prompts, strip_comments
from modules.generation.requests import GenerationRequest, Img2ImgRequest, Txt2ImgRequest
from modules.generation.rng import get_fixed_seed
from modules.generation.saving import SavingOptions, image_grid, save_image, write_params_txt
from modules.generation.speed import SpeedCache, SpeedSettings, speed_patches
from modules.generation.styles import StyleDatabase
from modules.generation.tiling import tiling_patch
from modules.generation.txt2img import check_hires_target, txt2img_batch
from modules.generation.vae_checked import decode_checked
from modules.models.checkpoints import CheckpointInfo
from modules.models.errors import ModelNotFound
from modules.models.manager import LoadedModel, ModelManager
from modules.networks.activation import NetworkActivator
from modules.networks.options import NetworkOptions
from modules.postprocessing.face_service import FaceRestorationService

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class GenerationService:
    models: ModelManager
    options: Options
    paths: Paths
    styles: StyleDatabase
    networks: NetworkActivator  # LoRA / embeddings / hypernetworks
    faces: FaceRestorationService  # "Restore faces"
    script_hooks: ScriptHooksSlot  # a job's hooks when its caller passes none (the extension host's runner)
    write_params_txt: bool
    filenames_max_length: int
    speed_cache: SpeedCache = field(default_factory=SpeedCache)  # torch.compile results, TAESD decoders

    @property
    def hooks(self) -> ScriptHooks:
        """The default hooks now (no-op until the extension host attaches its runner)."""
        return self.script_hooks.get()

    # --- entry points ------------------------------------------------------------------------
    def txt2img(
        self, req: Txt2ImgRequest, control: JobControl, *, user: str | None = None, hooks: ScriptHooks | None = None
    ) -> GenerationResult:
        """`hooks`: the job's script hooks (UI); default: from the request's script fields (API)."""
        p = self.new_txt2img(req, user=user)
        return self.run(p, control, hooks or self._request_hooks(req, "txt2img"))

    def new_txt2img(self, req: Txt2ImgRequest, *, user: str | None = None) -> Processing:
        p = self._processing(req, "txt2img", user)
        for name in (
            "enable_hr",
            "hr_scale",
            "hr_upscaler",
            "hr_second_pass_steps",
            "hr_resize_x",
            "hr_resize_y",
            "hr_checkpoint_name",
            "hr_sampler_name",
            "hr_scheduler",
            "hr_prompt",
            "hr_negative_prompt",
        ):
            setattr(p, name, getattr(req, name))
        if p.enable_hr:
            check_hires_target(p)
        return p

    def img2img(
        self,
        req: Img2ImgRequest,
        control: JobControl,
        *,
        user: str | None = None,
        init_images: list[Image.Image] | None = None,
        mask: Image.Image | None = None,
        hooks: ScriptHooks | None = None,
    ) -> GenerationResult:
        """`init_images`/`mask` are decoded images (the API decodes base64 before queueing)."""
        p = self.new_img2img(req, user=user, init_images=init_images, mask=mask)
        return self.run(p, control, hooks or self._request_hooks(req, "img2img"))

    def new_img2img(
        self,
        req: Img2ImgRequest,
        *,
        user: str | None = None,
        init_images: list[Image.Image] | None = None,
        mask: Image.Image | None = None,
    ) -> Processing:
        p = self._processing(req, "img2img", user)
        p.init_images = list(init_images or [])
        p.image_mask = mask
        for name in (
            "resize_mode",
            "mask_blur_x",
            "mask_blur_y",
            "mask_round",
            "inpainting_fill",
            "inpaint_full_res",
            "inpaint_full_res_padding",
            "inpainting_mask_invert",
            "image_cfg_scale",
        ):
            setattr(p, name, getattr(req, name))
        p.initial_noise_multiplier = (
            req.initial_noise_multiplier
            if req.initial_noise_multiplier is not None
            else float(p.opts["initial_noise_multiplier"])
        )
        if not p.init_images:
            raise ValueError("img2img needs at least one init image")
        return p

    def _request_hooks(self, req: GenerationRequest, tab: str) -> ScriptHooks:
        alwayson = {title: value.args for title, value in req.alwayson_scripts.items()}
        return self.hooks.for_request(tab, req.script_name, req.script_args, alwayson)

    def run(self, p: Processing, control: JobControl, hooks: ScriptHooks | None = None) -> GenerationResult:
        """A1111's txt2img()/img2img(): scripts' setup, then the dropdown script's run() or process()."""
        hooks = hooks or self.hooks
        p.scripts = hooks
        hooks.setup(p)
        result = hooks.run(p, control)
        return result if result is not None else self.process(p, control)

    # --- request -> p ------------------------------------------------------------------------
    def _processing(self, req: GenerationRequest, kind: str, user: str | None) -> Processing:
        opts = self.options.view(req.override_settings)
        sampler_name = req.effective_sampler_name
        sampler, schedule = samplers.resolve_sampler(sampler_name, req.scheduler)  # early, clear error
        width, height = self._size_for(req, opts)
        return Processing(
            kind=kind,
            opts=opts,
            prompt=req.prompt,
            negative_prompt=req.negative_prompt,
            styles=list(req.styles or []),
            seed=req.seed,
            subseed=req.subseed,
            subseed_strength=req.subseed_strength,
            seed_resize_from_h=req.seed_resize_from_h,
            seed_resize_from_w=req.seed_resize_from_w,
            sampler_name=sampler.name,
            scheduler=schedule.label,
            batch_size=req.batch_size,
            n_iter=req.n_iter,
            steps=req.steps,
            cfg_scale=req.cfg_scale,
            width=width,
            height=height,
            tiling=bool(req.tiling if req.tiling is not None else opts["tiling"]),
            eta=req.eta,
            denoising_strength=req.denoising_strength,
            s_min_uncond=_or(req.s_min_uncond, opts["s_min_uncond"]),
            s_churn=_or(req.s_churn, opts["s_churn"]),
            s_tmin=_or(req.s_tmin, opts["s_tmin"]),
            s_tmax=_or(req.s_tmax, opts["s_tmax"]),
            s_noise=_or(req.s_noise, opts["s_noise"]),
            override_settings=dict(req.override_settings or {}),
            do_not_save_samples=req.do_not_save_samples,
            do_not_save_grid=req.do_not_save_grid,
            user=user,
            refiner_checkpoint=req.refiner_checkpoint,
            refiner_switch_at=req.refiner_switch_at,
            disable_extra_networks=req.disable_extra_networks,
            restore_faces=bool(req.restore_faces if req.restore_faces is not None else opts["face_restoration"]),
        )

    def _size_for(self, req: GenerationRequest, opts: Any) -> tuple[int, int]:
        """Width/height as given; one a request leaves out is the model's native size (the demo
        model 128, SD1 512, SD2-v 768, SDXL 1024) where A1111 always used 512."""
        given = req.model_fields_set
        if "width" in given and "height" in given:
            return req.width, req.height
        side = self._native_size(str(opts["sd_model_checkpoint"] or ""))
        return (req.width if "width" in given else side, req.height if "height" in given else side)

    def _native_size(self, wanted: str) -> int:
        """The native size of the checkpoint `_model_for` will use."""
        try:
            if wanted:
                info = self.models.find_checkpoint(wanted)
            elif self.models.active is not None:
                info = self.models.active.checkpoint
            else:
                info = self.models.list_checkpoints()[0]
        except (ModelNotFound, IndexError):
            return 512  # the job stops with a clear error when it picks its model
        return self.models.native_size(info)

    # --- the job -----------------------------------------------------------------------------
    def _hooks(self, p: Processing) -> ScriptHooks:
        """The job's hooks (set by run()); the service's own for a `p` made elsewhere."""
        return p.scripts if p.scripts is not None else self.hooks

    def process(self, p: Processing, control: JobControl) -> GenerationResult:
        self._hooks(p).before_process(p)
        p.nan_check = self.models.policy.nans
        peak: MemoryPeak | None = None
        try:
            with peak_memory(self.models.policy.device) as peak:
                model = self._model_for(p)
                with self.models.use(model):
                    return self._process_loaded(p, model, control)
        finally:
            if peak is not None:
                log.info("%s job peak memory: %s", p.kind, peak.describe())

    def _model_for(self, p: Processing) -> LoadedModel:
        wanted: str | CheckpointInfo = str(p.opts["sd_model_checkpoint"] or "")
        storage = str(p.opts["fp8_storage"])  # a job's override applies as A1111's reload would
        if not wanted and self.models.active is not None:
            wanted = self.models.active.checkpoint
        if wanted:
            model = self.models.load(wanted, vae=None, fp8_storage=storage)
        else:
            available = self.models.list_checkpoints()
            if not available:
                raise ModelNotFound(f"no checkpoint found: put a model file into {self.paths.ckpt_dir}")
            model = self.models.load(available[0], vae=None, fp8_storage=storage)
        self.models.set_vae(model, str(p.opts["sd_vae"]))
        p.sd_model_name = model.checkpoint.model_name
        p.sd_model_hash = model.checkpoint.shorthash
        if model.vae_info is not None:
            p.sd_vae_name, p.sd_vae_hash = model.vae_info.name, model.vae_hash
        return model

    def _prepare_prompts(self, p: Processing) -> None:
        comments = bool(p.opts["enable_prompt_comments"])
        prompt = strip_comments(p.prompt) if comments else p.prompt
        negative = strip_comments(p.negative_prompt) if comments else p.negative_prompt
        p.main_prompt, p.main_negative_prompt = prompt, negative
        styled_prompt = self.styles.apply_styles_to_prompt(prompt, p.styles)
        styled_negative = self.styles.apply_negative_styles_to_prompt(negative, p.styles)
        total = p.batch_size * p.n_iter
        p.all_prompts = [styled_prompt] * total
        p.all_negative_prompts = [styled_negative] * total
        seed = get_fixed_seed(p.seed)
        subseed = get_fixed_seed(p.subseed)
        p.seed, p.subseed = seed, subseed
        if p.subseed_strength == 0:
            p.all_seeds = [seed + i for i in range(total)]
            p.all_subseeds = [subseed + i for i in range(total)]
        else:
            p.all_seeds = [seed] * total
            p.all_subseeds = [subseed + i for i in range(total)]
        if p.kind == "txt2img":
            hr_prompt = p.hr_prompt or styled_prompt
            hr_negative = p.hr_negative_prompt or styled_negative
            p.all_hr_prompts = [hr_prompt] * total
            p.all_hr_negative_prompts = [hr_negative] * total
        p.job_timestamp = time.strftime("%Y%m%d%H%M%S")

    def _process_loaded(self, p: Processing, model: LoadedModel, control: JobControl) -> GenerationResult:
        hooks = self._hooks(p)
        p.scripts = hooks  # A1111's p.scripts: passes call process_before_every_sampling on it
        p.preview_decoder = preview_decoder(
            str(p.opts["show_progress_type"]), model, self.speed_cache.taesd, self.paths.vae_approx_dir
        )
        self._prepare_prompts(p)
        p.face_restoration_model = self._face_restorer(p)  # refused here, before any sampling
        plan: Img2ImgPlan | None = prepare_img2img(p, model) if p.kind == "img2img" else None
        hooks.process(p)
        images: list[Image.Image] = []
        infotexts: list[str] = []
        saved: list[str] = []
        interrupted = False
        with (
            tiling_patch(model, p.tiling),
            speed_patches(
                model, SpeedSettings.for_job(p), cache=self.speed_cache, cache_dir=self.paths.cache_dir / "openvino"
            ),
        ):
            for n in range(p.n_iter):
                if control.interrupted.is_set() or control.stopping_after_current.is_set():
                    interrupted = control.interrupted.is_set()
                    break
                control.begin_batch(n, p.n_iter, p.steps)
                try:
                    batch_images = self._one_batch(p, model, control, n, plan)
                except JobSkipped:
                    continue
                except JobInterrupted:
                    interrupted = True
                    break
                for i, image in enumerate(batch_images):
                    index = n * p.batch_size + i
                    p.batch_index = i
                    image = self._finish_image(p, hooks, plan, image, i, index)
                    text = self.infotext(p, model, index)
                    images.append(image)
                    infotexts.append(text)
                    if self._should_save(p):
                        path = _unless_disk_fails(p, partial(self._save, p, image, text, index, model))
                        if path is not None:
                            saved.append(str(path))
        interrupted = interrupted or control.interrupted.is_set()  # stopped inside the last batch (kept)
        result = GenerationResult(images=images, infotexts=infotexts, p=p, saved_paths=saved, interrupted=interrupted)
        self._grid(p, result, model)
        hooks.postprocess(p, result)
        if self.write_params_txt and infotexts:
            text = result.infotexts[result.index_of_first_image]
            _unless_disk_fails(p, lambda: write_params_txt(self.paths.params_file, text))
        return result

    def _one_batch(
        self, p: Processing, model: LoadedModel, control: JobControl, n: int, plan: Img2ImgPlan | None
    ) -> list[Image.Image]:
        start, end = n * p.batch_size, (n + 1) * p.batch_size
        p.iteration = n
        p.prompts, p.negative_prompts = p.all_prompts[start:end], p.all_negative_prompts[start:end]
        p.seeds, p.subseeds = p.all_seeds[start:end], p.all_subseeds[start:end]
        hooks = self._hooks(p)
        p.rng = batch_rng(p, p.width, p.height)  # A1111 makes it here, before the batch's hooks
        hooks.before_process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
        networks: dict[str, Any] = {}
        if not p.disable_extra_networks:
            parsed = parse_extra_network_prompts(p.prompts)
            p.prompts, networks = list(parsed.prompts), dict(parsed.networks)
            p.negative_prompts = list(parse_extra_network_prompts(p.negative_prompts).prompts)
        preview_every = int(p.opts["show_progress_every_n_steps"]) if p.opts["live_previews_enable"] else 0
        with self._networks(p, model, networks):
            if not p.disable_extra_networks:  # A1111 extra_networks.activate ends with this hook
                hooks.after_extra_networks_activate(
                    p,
                    batch_number=n,
                    prompts=p.prompts,
                    seeds=p.seeds,
                    subseeds=p.subseeds,
                    extra_network_data=networks,
                )
            hooks.process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
            if plan is not None:
                latents = img2img_batch(p, model, plan, control, n, preview_every, self.models)
            else:
                latents = txt2img_batch(p, model, control, n, preview_every, self.models, networks)
        post_sample = PostSampleArgs(latents)
        hooks.post_sample(p, post_sample)
        pixels = self._decode(p, model, post_sample.samples)
        hooks.postprocess_batch(p, pixels, batch_number=n)
        batch_list = PostprocessBatchListArgs(tensor_to_pil(pixels))
        hooks.postprocess_batch_list(p, batch_list, batch_number=n)
        return batch_list.images

    def _decode(self, p: Processing, model: LoadedModel, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> pixels [-1, 1] with the model's VAE, or TAESD ("VAE type for decode")."""
        if p.opts["sd_vae_decode_method"] == "TAESD":
            device = next(model.vae.parameters()).device
            taesd = self.speed_cache.taesd.decoder(self.paths.vae_approx_dir, model.is_sdxl, device)
            if taesd is not None:
                p.extra_generation_params["VAE Decoder"] = "TAESD"
                with torch.inference_mode():
                    param = next(taesd.parameters())
                    return taesd(latents.to(param.device, param.dtype)).float().clamp(0, 1).cpu() * 2 - 1
            p.comments["vae_decoder"] = (
                f"TAESD decoder not found in {self.paths.vae_approx_dir}: decoded with the full VAE"
            )
        with torch.inference_mode():
            return decode_checked(p, self.models, model, latents)

    def _finish_image(
        self, p: Processing, hooks: ScriptHooks, plan: Img2ImgPlan | None, image: Image.Image, i: int, index: int
    ) -> Image.Image:
        """A1111's per-image steps: postprocess_image, postprocess_maskoverlay and the paste into
        the source image (img2img masks), postprocess_image_after_composite."""
        if p.face_restoration_model:  # A1111 restores faces before the scripts' postprocess_image
            image = self.faces.restore(image, p.face_restoration_model)
        pp = PostprocessImageArgs(image, index)
        hooks.postprocess_image(p, pp)
        image = pp.image
        if plan is not None:
            image = plan.composite(p, hooks, image, i)
        else:
            hooks.postprocess_maskoverlay(p, PostProcessMaskOverlayArgs(i, None, None))
        pp = PostprocessImageArgs(image, index)
        hooks.postprocess_image_after_composite(p, pp)
        return pp.image

    def _face_restorer(self, p: Processing) -> str | None:
        if not p.restore_faces:
            return None
        wanted = str(p.opts["face_restoration_model"] or "")
        return self.faces.resolve(None if wanted == "Automatic" else wanted)

    @contextmanager
    def _networks(self, p: Processing, model: LoadedModel, networks: dict[str, Any]) -> Iterator[None]:
        """LoRA/hypernetwork patches and embeddings for one batch; the model is restored on exit."""
        settings = NetworkOptions.from_settings(p.opts)
        lookup = self.networks.embedding_lookup(model)
        p.embedding_lookup = lookup
        with self.networks.activate(model, networks, opts=settings) as active:
            p.extra_generation_params.update(active.infotext_params())
            if active.warnings:
                p.comments["networks"] = "; ".join(active.warnings)
            yield
        used = p.embeddings_used
        if used and settings.add_ti_hashes:
            text = lookup.hashes_infotext(sorted(used))
            if text:
                p.extra_generation_params["TI hashes"] = text

    # --- infotext, saving ----------------------------------------------------------------------
    def infotext(self, p: Processing, model: LoadedModel, index: int) -> str:
        sampler, schedule = samplers.resolve_sampler(p.sampler_name, p.scheduler)
        if schedule.name == samplers.AUTOMATIC.name and sampler.default_scheduler is not None:
            schedule = samplers.find_scheduler(sampler.default_scheduler)
        facts = GenerationFacts(
            steps=p.steps,
            sampler_name=p.sampler_name,
            schedule_type=schedule.label,
            cfg_scale=p.cfg_scale,
            seed=p.all_seeds[index],
            width=p.width,
            height=p.height,
            face_restoration=p.face_restoration_model,
            model_hash=p.sd_model_hash,
            model_name=p.sd_model_name,
            vae_hash=p.sd_vae_hash,
            vae_name=p.sd_vae_name,
            subseed=p.all_subseeds[index],
            subseed_strength=p.subseed_strength,
            seed_resize_from_w=p.seed_resize_from_w,
            seed_resize_from_h=p.seed_resize_from_h,
            denoising_strength=p.denoising_strength if (p.kind == "img2img" or p.enable_hr) else None,
            conditional_mask_weight=float(p.opts["inpainting_mask_weight"]) if model.is_inpaint else None,
            clip_skip=p.clip_skip,
            eta_noise_seed_delta=int(p.opts["eta_noise_seed_delta"]),
            sampler_uses_ensd=sampler.uses_ensd,
            enable_hr=p.enable_hr,
            rng=str(p.opts["randn_source"]),
            tiling=p.tiling,
            token_merging_ratio=SpeedSettings.for_job(p).token_merging_ratio,
            token_merging_ratio_hr=SpeedSettings.for_job(p, hires=True).token_merging_ratio,
            extra=p.extra_generation_params,
            version=VERSION,
            user=p.user,
            index=index,
            flags=InfotextFlags.from_settings(p.opts),
        )
        return create_infotext(p.all_prompts[index], p.all_negative_prompts[index], facts)

    def _should_save(self, p: Processing) -> bool:
        return bool(p.opts["samples_save"]) and not p.do_not_save_samples

    def _outdir(self, p: Processing, grid: bool) -> Path:
        if grid:
            custom = str(p.opts["outdir_grids"])
            key = f"outdir_{p.kind}_grids"
        else:
            custom = str(p.opts["outdir_samples"])
            key = f"outdir_{p.kind}_samples"
        folder = Path(custom or str(p.opts[key]))
        return folder if folder.is_absolute() else self.paths.data_dir / folder

    def _filename_context(self, p: Processing, model: LoadedModel, index: int) -> FilenameContext:
        return FilenameContext(
            seed=p.all_seeds[index] if index < len(p.all_seeds) else p.seed,
            prompt=p.all_prompts[index] if index < len(p.all_prompts) else p.prompt,
            main_prompt=p.main_prompt,
            negative_prompt=p.all_negative_prompts[index] if index < len(p.all_negative_prompts) else "",
            all_seeds=p.all_seeds,
            batch_size=p.batch_size,
            n_iter=p.n_iter,
            batch_index=index % p.batch_size,
            iteration=index // p.batch_size,
            steps=p.steps,
            cfg_scale=p.cfg_scale,
            sampler_name=p.sampler_name,
            scheduler=p.scheduler,
            denoising_strength=p.denoising_strength,
            clip_skip=p.clip_skip,
            model_hash=p.sd_model_hash,
            model_name=p.sd_model_name,
            styles=p.styles,
            job_timestamp=p.job_timestamp,
            user=p.user,
        )

    def _saving_options(self, p: Processing) -> SavingOptions:
        return SavingOptions.from_settings(p.opts, filenames_max_length=self.filenames_max_length)

    def _save(self, p: Processing, image: Image.Image, text: str, index: int, model: LoadedModel) -> Path:
        saved = save_image(
            image,
            self._outdir(p, grid=False),
            ctx=self._filename_context(p, model, index),
            options=self._saving_options(p),
            infotext=text,
            **self._save_callbacks(p),
        )
        return saved.path

    def _save_callbacks(self, p: Processing) -> dict[str, Any]:
        """on_before_image_saved / on_image_saved for the images the job saves."""
        hooks = self._hooks(p)
        return {
            "before_save": hooks.before_image_saved if hooks.wants("before_image_saved") else None,
            "after_save": hooks.image_saved if hooks.wants("image_saved") else None,
            "p": p,
        }

    def _grid(self, p: Processing, result: GenerationResult, model: LoadedModel) -> None:
        count = len(result.images)
        if p.do_not_save_grid or count == 0 or (count < 2 and bool(p.opts["grid_only_if_multiple"])):
            return
        wants_return = bool(p.opts["return_grid"])
        wants_save = bool(p.opts["grid_save"])
        if not (wants_return or wants_save):
            return
        grid = image_grid(
            result.images,
            n_rows=int(p.opts["n_rows"]),
            batch_size=p.batch_size,
            prevent_empty_spots=bool(p.opts["grid_prevent_empty_spots"]),
            on_grid=partial(self._hooks(p).image_grid, p=p),
        )
        text = result.infotexts[0]
        if wants_save:
            _unless_disk_fails(
                p,
                lambda: save_image(
                    grid,
                    self._outdir(p, grid=True),
                    "grid",
                    ctx=self._filename_context(p, model, 0),
                    options=self._saving_options(p),
                    infotext=text,
                    grid=True,
                    short_filename=True,
                    **self._save_callbacks(p),
                ),
            )
        if wants_return:
            result.images.insert(0, grid)
            result.infotexts.insert(0, text)
            result.index_of_first_image = 1


SAVE_FAILED = "saving"  # the key of the warning in p.comments (shown in the UI, in the API's info)


def _unless_disk_fails(p: Processing, write: Callable[[], T]) -> T | None:
    """Run a file write of the job; when the disk fails (full, read-only, gone) keep the job going:
    its images still reach the client, with a warning that they were not stored."""
    try:
        return write()
    except OSError as exc:
        if SAVE_FAILED not in p.comments:
            log.error("saving the job's files failed: %s", exc)
            reason = exc.strerror or str(exc)
            p.comments[SAVE_FAILED] = f"Warning: saving failed ({reason}); the images were not stored on the server."
        return None


def _or(value: float | None, default: Any) -> float:
    return float(value) if value is not None else float(default)
