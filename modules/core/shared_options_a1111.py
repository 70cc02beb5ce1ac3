"""A1111 1.10 settings this web UI stores but that change nothing in it (data only).

A1111 clients set them freely (webuiapi's `set_options({"send_seed": False})`, config.json files
copied from an A1111 install, extensions reading `shared.opts.sd_unet`): each must exist with
A1111's default, be accepted by POST /sdapi/v1/options and come back from GET. Most only steer
A1111's own UI (lightbox, gamepad, accordions), its console, or machinery this engine does not
have (TAESD encode, FP8, profiler). They are `hidden`: the Settings page shows no control that
would do nothing. An option that gains a real effect moves to shared_options.py with its code.
"""

from __future__ import annotations

from typing import Any

from modules.core.options import OptionInfo

COMPAT = ("a1111-compat", "A1111 compatibility (stored, no effect here)")


def _inert(key: str, default: Any, label: str) -> OptionInfo:
    return OptionInfo(key, default, label, COMPAT, hidden=True)


# (key, A1111 default, A1111 label), in A1111's order of sections.
_A1111_ONLY: tuple[tuple[str, Any, str], ...] = (
    # Saving images/grids
    ("save_images_replace_action", "Replace", "Saving the image to an existing file"),
    ("grid_extended_filename", False, "Add extended info (seed, prompt) to filename when saving grid"),
    ("grid_zip_filename_pattern", "", "Archive filename pattern"),
    ("font", "", "Font for image grids that have text"),
    ("grid_text_active_color", "#000000", "Text color for image grids"),
    ("grid_text_inactive_color", "#999999", "Inactive text color for image grids"),
    ("grid_background_color", "#ffffff", "Background color for image grids"),
    ("save_images_before_face_restoration", False, "Save a copy of image before doing face restoration"),
    ("save_images_before_color_correction", False, "Save a copy of image before applying color correction"),
    ("export_for_4chan", True, "Save copy of large images as JPG"),
    ("img_downscale_threshold", 4.0, "File size limit for the above option, MB"),
    ("target_side_length", 4000, "Width/height limit for the above option, in pixels"),
    ("img_max_size_mp", 200, "Maximum image size, in megapixels"),
    ("use_upscaler_name_as_suffix", False, "Use upscaler name as filename suffix in the extras tab"),
    ("save_selected_only", True, "When using 'Save' button, only save a single selected image"),
    ("temp_dir", "", "Directory for temporary images; leave empty for default"),
    ("clean_temp_dir_at_start", False, "Cleanup non-default temporary directory when starting webui"),
    ("save_incomplete_images", False, "Save incomplete images"),
    ("use_save_to_dirs_for_ui", False, 'When using "Save" button, save images to a subdirectory'),
    # Upscaling, face restoration
    ("realesrgan_enabled_models", ["R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B"], "Real-ESRGAN models to show"),
    ("dat_enabled_models", ["DAT x2", "DAT x3", "DAT x4"], "DAT models to show"),
    ("DAT_tile", 192, "Tile size for DAT upscalers"),
    ("DAT_tile_overlap", 8, "Tile overlap for DAT upscalers"),
    ("set_scale_by_when_changing_upscaler", False, "Set the Scale by factor from the upscaler's name"),
    ("code_former_weight", 0.5, "CodeFormer weight"),
    ("face_restoration_unload", False, "Move face restoration model from VRAM into RAM after processing"),
    # System, profiler, API, training
    ("auto_launch_browser", "Local", "Automatically open webui in browser on startup"),
    ("enable_console_prompts", False, "Print prompts to console when generating with txt2img and img2img"),
    ("show_warnings", False, "Show warnings in console"),
    ("show_gradio_deprecation_warnings", True, "Show gradio deprecation warnings in console"),
    ("samples_log_stdout", False, "Always print all generation info to standard output"),
    ("multiple_tqdm", True, "Add a second progress bar to the console for an entire job"),
    ("enable_upscale_progressbar", True, "Show a progress bar in the console for tiled upscaling"),
    ("print_hypernet_extra", False, "Print extra hypernetwork information to console"),
    ("list_hidden_files", True, "Load models/files in hidden directories"),
    ("disable_mmap_load_safetensors", False, "Disable memmapping for loading .safetensors files"),
    ("hide_ldm_prints", True, "Prevent Stability-AI's ldm/sgm modules from printing noise to console"),
    ("dump_stacks_on_signal", False, "Print stack traces before exiting the program with ctrl+c"),
    ("profiling_enable", False, "Enable profiling"),
    ("profiling_activities", ["CPU"], "Profiling activities"),
    ("profiling_record_shapes", True, "Profiling: record shapes"),
    ("profiling_profile_memory", True, "Profiling: profile memory"),
    ("profiling_with_stack", True, "Profiling: include python stack"),
    ("profiling_filename", "trace.json", "Profile filename"),
    ("api_useragent", "", "User agent for requests"),
    ("training_enable_tensorboard", False, "Enable tensorboard logging"),
    ("training_tensorboard_save_images", False, "Save generated images within tensorboard"),
    ("training_tensorboard_flush_every", 120, "How often, in seconds, to flush tensorboard events"),
    # Stable Diffusion, SDXL, SD3, VAE
    ("sd_checkpoints_limit", 1, "Maximum number of checkpoints loaded at the same time"),
    ("sd_checkpoints_keep_in_cpu", True, "Only keep one model on device"),
    ("sd_unet", "Automatic", "SD Unet"),
    ("enable_quantization", False, "Enable quantization in K samplers"),
    ("enable_batch_seeds", True, "Make K-diffusion samplers produce same images in a batch as when making one"),
    ("sdxl_clip_l_skip", False, "Clip skip SDXL"),
    ("hires_fix_refiner_pass", "second pass", "Hires fix: which pass to enable refiner for"),
    ("sdxl_crop_top", 0, "crop top coordinate"),
    ("sdxl_crop_left", 0, "crop left coordinate"),
    ("sdxl_refiner_low_aesthetic_score", 2.5, "SDXL low aesthetic score"),
    ("sdxl_refiner_high_aesthetic_score", 6.0, "SDXL high aesthetic score"),
    ("sd3_enable_t5", False, "Enable T5"),
    ("sd_vae_encode_method", "Full", "VAE type for encode"),
    # img2img
    ("img2img_fix_steps", False, "With img2img, do exactly the amount of steps the slider specifies"),
    ("img2img_editor_height", 720, "Height of the image editor"),
    ("img2img_sketch_default_brush_color", "#ffffff", "Sketch initial brush color"),
    ("img2img_inpaint_mask_brush_color", "#ffffff", "Inpaint mask brush color"),
    ("img2img_inpaint_sketch_default_brush_color", "#ffffff", "Inpaint sketch initial brush color"),
    ("return_mask", False, "For inpainting, include the greyscale mask in results for web"),
    ("return_mask_composite", False, "For inpainting, include masked composite in results for web"),
    ("img2img_batch_show_results_limit", 32, "Show the first N batch img2img results in UI"),
    ("overlay_inpaint", True, "Overlay original for inpaint"),
    # Optimizations, compatibility
    ("s_min_uncond_all", False, "Negative Guidance minimum sigma all steps"),
    ("pad_cond_uncond", False, "Pad prompt/negative prompt"),
    ("pad_cond_uncond_v0", False, "Pad prompt/negative prompt (v0)"),
    ("persistent_cond_cache", True, "Persistent cond cache"),
    ("cache_fp16_weight", False, "Cache FP16 weight for LoRA"),
    ("auto_backcompat", True, "Automatic backward compatibility"),
    ("use_old_emphasis_implementation", False, "Use old emphasis implementation"),
    ("use_old_karras_scheduler_sigmas", False, "Use old karras scheduler sigmas (0.1 to 10)"),
    ("no_dpmpp_sde_batch_determinism", False, "Do not make DPM++ SDE deterministic across different batch sizes"),
    ("use_old_hires_fix_width_height", False, "For hires fix, use width/height sliders to set final resolution"),
    ("use_downcasted_alpha_bar", False, "Downcast model alphas_cumprod to fp16 before sampling"),
    ("refiner_switch_by_sample_steps", False, "Switch to refiner by sampling steps instead of model timesteps"),
    # Extra networks
    ("extra_networks_show_hidden_directories", True, "Show hidden directories"),
    ("extra_networks_dir_button_function", False, "Add a '/' to the beginning of directory buttons"),
    ("extra_networks_hidden_models", "When searched", "Show cards for models in hidden directories"),
    ("extra_networks_card_width", 0, "Card width for Extra Networks"),
    ("extra_networks_card_height", 0, "Card height for Extra Networks"),
    ("extra_networks_card_text_scale", 1.0, "Card text scale"),
    ("extra_networks_card_show_desc", True, "Show description on card"),
    ("extra_networks_card_description_is_html", False, "Treat card description as HTML"),
    ("extra_networks_card_order_field", "Path", "Default order field for Extra Networks cards"),
    ("extra_networks_card_order", "Ascending", "Default order for Extra Networks cards"),
    ("extra_networks_tree_view_style", "Dirs", "Extra Networks directory view style"),
    ("extra_networks_tree_view_default_enabled", True, "Show the Extra Networks directory view by default"),
    ("extra_networks_tree_view_default_width", 180, "Default width for the Extra Networks directory tree view"),
    ("extra_networks_add_text_separator", " ", "Extra networks separator"),
    ("ui_extra_networks_tab_reorder", "", "Extra networks tab order"),
    ("textual_inversion_print_at_load", False, "Print a list of Textual Inversion embeddings when loading model"),
    ("sd_hypernetwork", "None", "Add hypernetwork to prompt"),
    ("sd_lora", "None", "Add network to prompt"),
    ("lora_bundled_ti_to_infotext", True, "Add Lora name as TI hashes for bundled Textual Inversion"),
    ("lora_show_all", False, "Always show all networks on the Lora page"),
    ("lora_hide_unknown_for_versions", [], "Hide networks of unknown versions for model versions"),
    ("lora_not_found_warning_console", False, "Lora not found warning in console"),
    ("lora_not_found_gradio_warning", False, "Lora not found warning popup in webui"),
    # Prompt editing, gallery, UI alternatives, UI
    ("keyedit_precision_attention", 0.1, "Precision for (attention:1.1) when editing the prompt with Ctrl+up/down"),
    ("keyedit_precision_extra", 0.05, "Precision for <extra networks:0.9> when editing the prompt with Ctrl+up/down"),
    ("keyedit_delimiters", ".,\\/!?%^*;:{}=`~() ", "Word delimiters when editing the prompt with Ctrl+up/down"),
    ("keyedit_delimiters_whitespace", ["Tab", "Carriage Return", "Line Feed"], "Ctrl+up/down whitespace delimiters"),
    ("keyedit_move", True, "Alt+left/right moves prompt elements"),
    ("disable_token_counters", False, "Disable prompt token counters"),
    ("include_styles_into_token_counters", True, "Count tokens of enabled styles"),
    ("do_not_show_images", False, "Do not show any images in gallery"),
    ("js_modal_lightbox", True, "Full page image viewer: enable"),
    ("js_modal_lightbox_initially_zoomed", True, "Full page image viewer: show images zoomed in by default"),
    ("js_modal_lightbox_gamepad", False, "Full page image viewer: navigate with gamepad"),
    ("js_modal_lightbox_gamepad_repeat", 250, "Full page image viewer: gamepad repeat period"),
    ("sd_webui_modal_lightbox_icon_opacity", 1.0, "Full page image viewer: control icon unfocused opacity"),
    ("sd_webui_modal_lightbox_toolbar_opacity", 0.9, "Full page image viewer: tool bar opacity"),
    ("gallery_height", "", "Gallery height"),
    ("open_dir_button_choice", "Subdirectory", "What directory the [📂] button opens"),
    ("compact_prompt_box", False, "Compact prompt layout"),
    ("samplers_in_dropdown", True, "Use dropdown for sampler selection instead of radio group"),
    ("dimensions_and_batch_together", True, "Show Width/Height and Batch sliders in same row"),
    ("sd_checkpoint_dropdown_use_short", False, "Checkpoint dropdown: use filenames without paths"),
    ("txt2img_settings_accordion", False, "Settings in txt2img hidden under Accordion"),
    ("img2img_settings_accordion", False, "Settings in img2img hidden under Accordion"),
    ("localization", "None", "Localization"),
    ("ui_reorder_list", [], "UI item order for txt2img/img2img tabs"),
    ("gradio_theme", "Default", "Gradio theme"),
    ("gradio_themes_cache", True, "Cache gradio themes locally"),
    ("show_progress_in_title", True, "Show generation progress in window title"),
    ("send_seed", True, "Send seed when sending prompt or image to other interface"),
    ("send_size", True, "Send size when sending prompt or image to another interface"),
    ("enable_reloading_ui_scripts", False, "Reload UI scripts when using Reload UI option"),
    # Live previews
    ("show_progressbar", True, "Show progressbar"),
    ("show_progress_grid", True, "Show previews of all images generated in a batch as a grid"),
    ("live_preview_allow_lowvram_full", False, "Allow Full live preview method with lowvram/medvram"),
    ("live_preview_content", "Prompt", "Live preview subject"),
    ("live_preview_refresh_period", 1000, "Progressbar and preview update period"),
    ("live_preview_fast_interrupt", False, "Return image with chosen live preview method on interrupt"),
    ("js_live_preview_in_modal_lightbox", False, "Show Live preview in full page image viewer"),
    ("prevent_screen_sleep_during_generation", True, "Prevent screen sleep during generation"),
    # Sampler parameters, postprocessing, hidden
    ("sd_noise_schedule", "Default", "Noise schedule for sampling"),
    ("skip_early_cond", 0.0, "Ignore negative prompt during early sampling"),
    ("postprocessing_enable_in_main_ui", [], "Enable postprocessing operations in txt2img and img2img tabs"),
    ("postprocessing_disable_in_extras", [], "Disable postprocessing operations in extras tab"),
    ("postprocessing_operation_order", [], "Postprocessing operation order"),
    ("upscaling_max_images_in_cache", 5, "Maximum number of images in upscaling cache"),
    ("postprocessing_existing_caption_action", "Ignore", "Action for existing captions"),
    ("restore_config_state_file", "", "Config state file to restore from, under 'config-states/' folder"),
    ("sd_checkpoint_hash", "", "SHA256 hash of the current checkpoint"),
)

A1111_ONLY_OPTIONS: tuple[OptionInfo, ...] = tuple(_inert(*row) for row in _A1111_ONLY)
