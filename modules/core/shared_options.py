"""The core settings catalogue (A1111 keys and defaults). Data only; see modules.core.options.

Feature packages may declare more options in their own module and register them in the
composition root; extensions add theirs through `shared.opts.add_option`.
"""

from __future__ import annotations

from modules.core.options import OptionInfo, OptionsRegistry
from modules.core.shared_options_a1111 import A1111_ONLY_OPTIONS

SAVING = ("saving-images", "Saving images/grids")
PATHS = ("saving-paths", "Paths for saving")
SD = ("sd", "Stable Diffusion")
VAE = ("vae", "VAE")
INFOTEXT = ("infotext", "Infotext")
SAMPLER = ("sampler-params", "Sampler parameters")
PREVIEW = ("ui", "Live previews")
UI = ("ui_alternatives", "User interface")
SYSTEM = ("system", "System")
UPSCALING = ("upscaling", "Upscaling")
FACES = ("face-restoration", "Face restoration")
TI = ("training", "Training")  # one section with modules.train.options
INTERROGATE = ("interrogate", "Interrogate")
EXTENSIONS = ("extensions", "Extensions")

CORE_OPTIONS: tuple[OptionInfo, ...] = (
    # Saving
    OptionInfo("samples_save", True, "Always save all generated images", SAVING),
    OptionInfo("samples_format", "png", "File format for images", SAVING, "dropdown", ("png", "jpg", "jpeg", "webp")),
    OptionInfo("samples_filename_pattern", "", "Images filename pattern", SAVING, "textbox"),
    OptionInfo("save_images_add_number", True, "Add number to filename when saving", SAVING),
    OptionInfo("grid_save", True, "Always save all generated image grids", SAVING),
    OptionInfo("grid_format", "png", "File format for grids", SAVING, "dropdown", ("png", "jpg", "jpeg", "webp")),
    OptionInfo("grid_only_if_multiple", True, "Do not save grids consisting of one picture", SAVING),
    OptionInfo("grid_prevent_empty_spots", False, "Prevent empty spots in grid", SAVING),
    OptionInfo(
        "n_rows",
        -1,
        "Grid row count; -1 for autodetect and 0 for same as batch size",
        SAVING,
        "slider",
        minimum=-1,
        maximum=16,
        step=1,
    ),
    OptionInfo("return_grid", True, "Show grid in gallery", SAVING),
    OptionInfo("enable_pnginfo", True, "Save text information about generation parameters as chunks", SAVING),
    OptionInfo("save_txt", False, "Create a text file with infotext next to every image", SAVING),
    OptionInfo("save_write_log_csv", True, "Write log.csv when saving with the Save button", SAVING),
    OptionInfo(
        "use_original_name_batch",
        True,
        "Use original name for output filename during batch process in extras tab",
        SAVING,
    ),
    OptionInfo(
        "notification_audio",
        True,
        "Play notification sound after image generation",
        SAVING,
        comment="notification.mp3 should be present in the data folder",
        needs_reload_ui=True,
    ),
    OptionInfo(
        "notification_volume", 100, "Notification sound volume", SAVING, "slider", minimum=0, maximum=100, step=1
    ),
    OptionInfo(
        "jpeg_quality", 80, "Quality for saved jpeg and webp images", SAVING, "slider", minimum=1, maximum=100, step=1
    ),
    OptionInfo("webp_lossless", False, "Use lossless compression for webp images", SAVING),
    OptionInfo("save_init_img", False, "Save init images when using img2img", SAVING),
    OptionInfo("save_images_before_highres_fix", False, "Save a copy of image before applying highres fix", SAVING),
    OptionInfo("save_mask", False, "For inpainting, save a copy of the greyscale mask", SAVING),
    OptionInfo("save_mask_composite", False, "For inpainting, save a masked composite", SAVING),
    OptionInfo("save_to_dirs", True, "Save images to a subdirectory", PATHS),
    OptionInfo("grid_save_to_dirs", True, "Save grids to a subdirectory", PATHS),
    OptionInfo("directories_filename_pattern", "[date]", "Directory name pattern", PATHS, "textbox"),
    OptionInfo(
        "directories_max_prompt_words",
        8,
        "Max prompt words for [prompt_words] pattern",
        PATHS,
        "slider",
        minimum=1,
        maximum=20,
        step=1,
    ),
    OptionInfo("outdir_samples", "", "Output directory for images; if empty, per-tab folders", PATHS, "textbox"),
    OptionInfo(
        "outdir_txt2img_samples", "outputs/txt2img-images", "Output directory for txt2img images", PATHS, "textbox"
    ),
    OptionInfo(
        "outdir_img2img_samples", "outputs/img2img-images", "Output directory for img2img images", PATHS, "textbox"
    ),
    OptionInfo(
        "outdir_extras_samples",
        "outputs/extras-images",
        "Output directory for images from extras tab",
        PATHS,
        "textbox",
    ),
    OptionInfo("outdir_grids", "", "Output directory for grids; if empty, per-tab folders", PATHS, "textbox"),
    OptionInfo("outdir_txt2img_grids", "outputs/txt2img-grids", "Output directory for txt2img grids", PATHS, "textbox"),
    OptionInfo("outdir_img2img_grids", "outputs/img2img-grids", "Output directory for img2img grids", PATHS, "textbox"),
    OptionInfo("outdir_save", "log/images", "Directory for saving images using the Save button", PATHS, "textbox"),
    OptionInfo("outdir_init_images", "outputs/init-images", "Directory for saving init images", PATHS, "textbox"),
    # Stable Diffusion
    OptionInfo(
        "sd_model_checkpoint",
        "",
        "Stable Diffusion checkpoint",
        SD,
        "dropdown",
        infotext="Model",
        needs_reload_ui=False,
    ),
    OptionInfo("sd_checkpoint_cache", 0, "Checkpoints to cache in RAM", SD, "slider", minimum=0, maximum=10, step=1),
    OptionInfo(
        "sd_checkpoint_cache_ram_mb",
        0,
        "Memory budget for cached checkpoints in RAM (MiB)",
        SD,
        "number",
        minimum=0,
        comment="0 = half of the machine's RAM; least recently used models are dropped first",
    ),
    OptionInfo(
        "sd_checkpoint_cache_vram_mb",
        0,
        "Memory budget for models on the GPU (MiB)",
        SD,
        "number",
        minimum=0,
        comment="0 = 90% of the GPU's memory; over it, idle models go back to RAM and then --medvram offload is used",
    ),
    OptionInfo(
        "upcast_attn",
        False,
        "Upcast cross attention layer to float32",
        SD,
        comment="for SD2 models that give NaNs or black images in half precision",
    ),
    OptionInfo(
        "CLIP_stop_at_last_layers", 1, "Clip skip", SD, "slider", minimum=1, maximum=12, step=1, infotext="Clip skip"
    ),
    OptionInfo(
        "emphasis",
        "Original",
        "Emphasis mode",
        SD,
        "radio",
        ("None", "Ignore", "Original", "No norm"),
        infotext="Emphasis",
    ),
    OptionInfo(
        "comma_padding_backtrack", 20, "Prompt word wrap length limit", SD, "slider", minimum=0, maximum=74, step=1
    ),
    OptionInfo("enable_prompt_comments", True, "Enable comments (# to end of line)", SD),
    OptionInfo(
        "use_old_scheduling", False, "Use old prompt editing timelines", SD, infotext="Old prompt editing timelines"
    ),
    OptionInfo(
        "randn_source", "GPU", "Random number generator source", SD, "radio", ("GPU", "CPU", "NV"), infotext="RNG"
    ),
    OptionInfo("tiling", False, "Tiling", SD, infotext="Tiling"),
    OptionInfo(
        "initial_noise_multiplier",
        1.0,
        "Noise multiplier for img2img",
        SD,
        "slider",
        minimum=0.0,
        maximum=1.5,
        step=0.001,
        infotext="Noise multiplier",
    ),
    OptionInfo(  # A1111 1.6+: read by the img2img and hires passes (on_extra_noise sees it)
        "img2img_extra_noise",
        0.0,
        "Extra noise multiplier for img2img and hires fix",
        SD,
        "slider",
        minimum=0.0,
        maximum=1.0,
        step=0.01,
        infotext="Extra noise",
    ),
    OptionInfo("img2img_color_correction", False, "Apply color correction to img2img results", SD),
    OptionInfo(
        "img2img_background_color", "#ffffff", "With img2img, fill transparent parts with this color", SD, "color"
    ),
    OptionInfo(
        "inpainting_mask_weight",
        1.0,
        "Inpainting conditioning mask strength",
        SD,
        "slider",
        minimum=0.0,
        maximum=1.0,
        step=0.01,
        infotext="Conditional mask weight",
    ),
    OptionInfo("sd_refiner_checkpoint", "None", "Default refiner", SD, "textbox"),
    OptionInfo(
        "hires_fix_use_firstpass_conds",
        False,
        "For hires fix, calculate conds of second pass using extra networks of first pass",
        SD,
    ),
    OptionInfo("disable_weights_auto_swap", True, "Pasted infotext never switches the checkpoint", INFOTEXT),
    # VAE
    OptionInfo("sd_vae", "Automatic", "SD VAE", VAE, "dropdown", infotext="VAE"),
    OptionInfo("sd_vae_overrides_per_model_preferences", True, "Selected VAE overrides per-model preferences", VAE),
    OptionInfo(
        "sd_vae_checkpoint_cache", 0, "VAE checkpoints to cache in RAM", VAE, "slider", minimum=0, maximum=10, step=1
    ),
    OptionInfo(
        "sd_vae_decode_method", "Full", "VAE type for decode", VAE, "radio", ("Full", "TAESD"), infotext="VAE Decoder"
    ),
    OptionInfo(
        "auto_vae_precision_bfloat16",
        False,
        "Automatically convert VAE to bfloat16",
        VAE,
        comment="when the VAE produces NaNs; used before the 32-bit fallback below, where the device has bfloat16",
    ),
    OptionInfo(
        "auto_vae_precision",
        True,
        "Automatically revert VAE to 32-bit floats",
        VAE,
        comment="when the VAE produces NaNs in half precision it decodes again in fp32; off: the job fails",
    ),
    OptionInfo(
        "fp8_storage",
        "Disable",
        "FP8 weight",
        ("optimizations", "Optimizations"),
        "radio",
        ("Disable", "Enable for SDXL", "Enable"),
        comment="store the UNet's Linear/Conv weights in float8 (half the memory of fp16); computed in fp16/bf16",
    ),
    # Infotext
    OptionInfo("add_model_hash_to_info", True, "Add model hash to infotext", INFOTEXT),
    OptionInfo("add_model_name_to_info", True, "Add model name to infotext", INFOTEXT),
    OptionInfo("add_user_name_to_info", False, "Add user name to infotext when authenticated", INFOTEXT),
    OptionInfo("add_version_to_infotext", True, "Add program version to infotext", INFOTEXT),
    OptionInfo("add_vae_name_to_info", True, "Add VAE name to infotext", INFOTEXT),
    OptionInfo("add_vae_hash_to_info", True, "Add VAE hash to infotext", INFOTEXT),
    OptionInfo("infotext_skip_pasting", [], "Disregard fields from pasted infotext", INFOTEXT, "multiselect"),
    OptionInfo(
        "infotext_styles",
        "Apply if any",
        "Infer styles from prompts of pasted infotext",
        INFOTEXT,
        "radio",
        ("Ignore", "Apply", "Discard", "Apply if any"),
    ),
    # Sampler parameters
    OptionInfo("hide_samplers", [], "Hide samplers in user interface", SAMPLER, "multiselect"),
    OptionInfo(
        "eta_ddim", 0.0, "Eta for DDIM", SAMPLER, "slider", minimum=0.0, maximum=1.0, step=0.01, infotext="Eta DDIM"
    ),
    OptionInfo(
        "eta_ancestral",
        1.0,
        "Eta for k-diffusion samplers",
        SAMPLER,
        "slider",
        minimum=0.0,
        maximum=1.0,
        step=0.01,
        infotext="Eta",
    ),
    OptionInfo("ddim_discretize", "uniform", "img2img DDIM discretize", SAMPLER, "radio", ("uniform", "quad")),
    OptionInfo(
        "s_churn", 0.0, "sigma churn", SAMPLER, "slider", minimum=0.0, maximum=100.0, step=0.01, infotext="Sigma churn"
    ),
    OptionInfo(
        "s_min_uncond",
        0.0,
        "Negative Guidance minimum sigma",
        SAMPLER,
        "slider",
        minimum=0.0,
        maximum=15.0,
        step=0.01,
        infotext="NGMS",
    ),
    OptionInfo(
        "s_tmin", 0.0, "sigma tmin", SAMPLER, "slider", minimum=0.0, maximum=10.0, step=0.01, infotext="Sigma tmin"
    ),
    OptionInfo(
        "s_tmax", 0.0, "sigma tmax", SAMPLER, "slider", minimum=0.0, maximum=999.0, step=0.01, infotext="Sigma tmax"
    ),
    OptionInfo(
        "s_noise", 1.0, "sigma noise", SAMPLER, "slider", minimum=0.0, maximum=1.1, step=0.001, infotext="Sigma noise"
    ),
    OptionInfo("sigma_min", 0.0, "sigma min (0 = model default)", SAMPLER, "number", infotext="Schedule min sigma"),
    OptionInfo("sigma_max", 0.0, "sigma max (0 = model default)", SAMPLER, "number", infotext="Schedule max sigma"),
    OptionInfo("rho", 0.0, "rho (0 = default)", SAMPLER, "number", infotext="Schedule rho"),
    OptionInfo("eta_noise_seed_delta", 0, "Eta noise seed delta (ENSD)", SAMPLER, "number", infotext="ENSD"),
    OptionInfo(
        "always_discard_next_to_last_sigma",
        False,
        "Always discard next-to-last sigma",
        SAMPLER,
        infotext="Discard penultimate sigma",
    ),
    OptionInfo(
        "use_old_karras_scheduler_sigmas", False, "Use old karras scheduler sigmas (0.1 to 10)", SAMPLER
    ),  # read by generation/samplers/schedules.py (A1111 keeps it for old infotexts)
    OptionInfo("sgm_noise_multiplier", False, "SGM noise multiplier", SAMPLER, infotext="SGM noise multiplier"),
    OptionInfo(
        "uni_pc_variant",
        "bh1",
        "UniPC variant",
        SAMPLER,
        "radio",
        ("bh1", "bh2", "vary_coeff"),
        infotext="UniPC variant",
    ),
    OptionInfo(
        "uni_pc_skip_type",
        "time_uniform",
        "UniPC skip type",
        SAMPLER,
        "radio",
        ("time_uniform", "time_quadratic", "logSNR"),
        infotext="UniPC skip type",
    ),
    OptionInfo(
        "uni_pc_order", 3, "UniPC order", SAMPLER, "slider", minimum=1, maximum=50, step=1, infotext="UniPC order"
    ),
    OptionInfo("uni_pc_lower_order_final", True, "UniPC lower order final", SAMPLER),
    OptionInfo(
        "beta_dist_alpha",
        0.6,
        "Beta scheduler - alpha",
        SAMPLER,
        "slider",
        minimum=0.01,
        maximum=1.0,
        step=0.01,
        infotext="Beta schedule alpha",
    ),
    OptionInfo(
        "beta_dist_beta",
        0.6,
        "Beta scheduler - beta",
        SAMPLER,
        "slider",
        minimum=0.01,
        maximum=1.0,
        step=0.01,
        infotext="Beta schedule beta",
    ),
    # Live previews and progress
    OptionInfo("live_previews_enable", True, "Show live previews of the created image", PREVIEW),
    OptionInfo(
        "show_progress_every_n_steps",
        10,
        "Live preview display period (steps)",
        PREVIEW,
        "slider",
        minimum=-1,
        maximum=32,
        step=1,
    ),
    OptionInfo(
        "show_progress_type",
        "Approx cheap",
        "Live preview method",
        PREVIEW,
        "radio",
        ("Full", "Approx cheap", "TAESD"),
        comment="Full: VAE decode (slow); TAESD: needs taesd_decoder / taesdxl_decoder in models/VAE-approx",
    ),
    OptionInfo(
        "live_previews_image_format", "png", "Live preview file format", PREVIEW, "radio", ("jpeg", "png", "webp")
    ),
    OptionInfo("interrupt_after_current", True, "Don't interrupt in the middle of a batch", PREVIEW),
    # UI
    OptionInfo(
        "quicksettings_list",
        ["sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"],
        "Quicksettings list",
        UI,
        "multiselect",
        needs_reload_ui=True,
    ),
    OptionInfo("ui_tab_order", [], "UI tab order", UI, "multiselect", needs_reload_ui=True),
    OptionInfo("hidden_tabs", [], "Hidden UI tabs", UI, "multiselect", needs_reload_ui=True),
    OptionInfo(
        "hires_fix_show_sampler",
        False,
        "Hires fix: show hires checkpoint and sampler selection",
        UI,
        needs_reload_ui=True,
    ),
    OptionInfo(
        "hires_fix_show_prompts", False, "Hires fix: show hires prompt and negative prompt", UI, needs_reload_ui=True
    ),
    OptionInfo(
        "extra_networks_default_multiplier",
        1.0,
        "Default multiplier for extra networks",
        UI,
        "slider",
        minimum=0.0,
        maximum=2.0,
        step=0.01,
    ),
    # Upscaling
    OptionInfo(
        "ESRGAN_tile",
        192,
        "Tile size for upscalers (0 = no tiling)",
        UPSCALING,
        "slider",
        minimum=0,
        maximum=512,
        step=16,
    ),
    OptionInfo(
        "ESRGAN_tile_overlap", 8, "Tile overlap for upscalers", UPSCALING, "slider", minimum=0, maximum=48, step=1
    ),
    OptionInfo("upscaler_for_img2img", "None", "Upscaler for img2img", UPSCALING, "textbox"),
    # Face restoration (A1111 moved "Restore faces" from the generation tabs into settings)
    OptionInfo(
        "face_restoration",
        False,
        "Restore faces",
        FACES,
        comment="for every generated image; needs detection_Resnet50_Final.pth and GFPGAN weights in models/GFPGAN",
    ),
    OptionInfo(
        "face_restoration_model",
        "Automatic",
        "Face restoration model",
        FACES,
        "radio",
        ("Automatic", "GFPGAN", "CodeFormer"),
        comment="Automatic: the first that can run",
    ),
    # System / API
    OptionInfo(
        "api_enable_requests",
        False,
        "Allow http:// and https:// URLs for input images in API",
        SYSTEM,
        restrict_api=True,
    ),
    OptionInfo("api_forbid_local_requests", True, "Forbid URLs to local resources", SYSTEM, restrict_api=True),
    OptionInfo("override_settings_restore_afterwards", True, "Restore settings after override_settings", SYSTEM),
    OptionInfo("memmon_poll_rate", 8, "VRAM usage polls per second during generation", SYSTEM, "number"),
    # Textual inversion
    OptionInfo("textual_inversion_add_hashes_to_infotext", True, "Add textual inversion hashes to infotext", TI),
    # Extensions (A1111 keeps these even when no extension is installed; see modules.extension_host)
    OptionInfo("disabled_extensions", [], "Disable these extensions", EXTENSIONS, "textbox", hidden=True),
    OptionInfo(
        "disable_all_extensions",
        "none",
        "Disable all extensions (preserves the list of disabled extensions)",
        EXTENSIONS,
        "radio",
        ("none", "extra", "all"),
        hidden=True,
    ),
    # Interrogate (modules.interrogate): A1111's keys; the BLIP/CLIP ones apply to models/BLIP captioners
    OptionInfo("interrogate_keep_models_in_memory", False, "Keep models in memory between interrogations", INTERROGATE),
    OptionInfo(
        "interrogate_return_ranks", False, "Include ranks of model tags matches in results (booru)", INTERROGATE
    ),
    OptionInfo(
        "interrogate_clip_num_beams", 1, "BLIP: num_beams", INTERROGATE, "slider", minimum=1, maximum=16, step=1
    ),
    OptionInfo(
        "interrogate_clip_min_length",
        24,
        "BLIP: minimum description length",
        INTERROGATE,
        "slider",
        minimum=1,
        maximum=128,
    ),
    OptionInfo(
        "interrogate_clip_max_length",
        48,
        "BLIP: maximum description length",
        INTERROGATE,
        "slider",
        minimum=1,
        maximum=256,
    ),
    OptionInfo(
        "interrogate_clip_dict_limit", 1500, "CLIP: maximum number of lines in text file", INTERROGATE, "number"
    ),
    OptionInfo("interrogate_clip_skip_categories", [], "CLIP: skip inquire categories", INTERROGATE, "multiselect"),
    OptionInfo(
        "interrogate_deepbooru_score_threshold",
        0.5,
        "deepbooru: score threshold",
        INTERROGATE,
        "slider",
        minimum=0,
        maximum=1,
        step=0.01,
    ),
    OptionInfo("deepbooru_sort_alpha", True, "deepbooru: sort tags alphabetically (else by score)", INTERROGATE),
    OptionInfo("deepbooru_use_spaces", True, "deepbooru: use spaces in tags (else underscores)", INTERROGATE),
    OptionInfo("deepbooru_escape", True, "deepbooru: escape (\\) brackets", INTERROGATE),
    OptionInfo(
        "deepbooru_filter_tags", "", "deepbooru: filter out those tags (separate by comma)", INTERROGATE, "textbox"
    ),
)


def core_registry() -> OptionsRegistry:
    """A registry holding the core options (fresh object each call: no shared mutable state)."""
    registry = OptionsRegistry()
    registry.extend(CORE_OPTIONS)
    registry.extend([info for info in A1111_ONLY_OPTIONS if info.key not in registry])
    return registry
