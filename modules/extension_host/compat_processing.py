"""A1111's processing surface over our engine: `p` construction, `Processed`, process_images.

`p` is our `Processing` (modules/generation/processing.py), which already carries the fields
scripts read and write (all_prompts, all_seeds, extra_generation_params, ...);
`prepare_p` adds the A1111 attributes it lacks (sd_model, outpath_samples, comment(), ...).
`Processed` wraps a `GenerationResult` with A1111's attribute names; a script-made
`Processed(p, images, ...)` becomes a GenerationResult the engine can return.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from PIL import Image

from modules.core.options import Options
from modules.extension_host.compat_conds import get_conds, setup_conds
from modules.extension_host.compat_sampler import sampler_for_job
from modules.generation.processing import GenerationResult, Processing
from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
from modules.generation.rng import get_fixed_seed

# Attributes of A1111's Processed that our GenerationResult names differently or lacks:
# read from the result's Processed.js() dictionary.
_FROM_JS = (
    "prompt",
    "negative_prompt",
    "seed",
    "subseed",
    "all_prompts",
    "all_negative_prompts",
    "all_seeds",
    "all_subseeds",
    "subseed_strength",
    "width",
    "height",
    "sampler_name",
    "cfg_scale",
    "steps",
    "batch_size",
    "restore_faces",
    "face_restoration_model",
    "sd_model_name",
    "sd_model_hash",
    "sd_vae_name",
    "sd_vae_hash",
    "seed_resize_from_w",
    "seed_resize_from_h",
    "denoising_strength",
    "styles",
    "job_timestamp",
    "clip_skip",
    "is_using_inpainting_conditioning",
    "version",
)


class Processed:
    """A1111's `processing.Processed`; construct it like A1111 or wrap a result with `Processed.of`."""

    def __init__(
        self,
        p: Any,
        images_list: list[Any],
        seed: int = -1,
        info: str = "",
        subseed: int | None = None,
        all_prompts: list[str] | None = None,
        all_negative_prompts: list[str] | None = None,
        all_seeds: list[int] | None = None,
        all_subseeds: list[int] | None = None,
        index_of_first_image: int = 0,
        infotexts: list[str] | None = None,
        comments: str = "",
        extra_images_list: list[Any] | None = None,
    ):
        images = list(images_list)
        result = GenerationResult(
            images=images,
            infotexts=list(infotexts) if infotexts else [info] * len(images),
            p=p,
            index_of_first_image=index_of_first_image,
            comments=comments,
        )
        given = {
            "seed": seed if seed != -1 else None,
            "subseed": subseed,
            "all_prompts": all_prompts,
            "all_negative_prompts": all_negative_prompts,
            "all_seeds": all_seeds,
            "all_subseeds": all_subseeds,
        }
        object.__setattr__(self, "_result", result)
        object.__setattr__(self, "_overrides", {k: v for k, v in given.items() if v is not None})
        object.__setattr__(self, "extra_images", list(extra_images_list or []))

    @classmethod
    def of(cls, result: GenerationResult) -> Processed:
        view = cls.__new__(cls)
        object.__setattr__(view, "_result", result)
        object.__setattr__(view, "_overrides", {})
        object.__setattr__(view, "extra_images", [])
        return view

    @property
    def result(self) -> GenerationResult:
        return self._result  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        overrides = object.__getattribute__(self, "_overrides")
        if name in overrides:
            return overrides[name]
        result = object.__getattribute__(self, "_result")
        if name == "extra_generation_params":
            return result.p.extra_generation_params
        if hasattr(result, name):
            return getattr(result, name)
        if name in _FROM_JS:
            return result.js().get(name)
        raise AttributeError(f"Processed has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        result = object.__getattribute__(self, "_result")
        if name in ("images", "infotexts", "index_of_first_image", "comments", "saved_paths", "interrupted"):
            setattr(result, name, value)
        elif name == "extra_images":
            object.__setattr__(self, name, value)
        else:
            object.__getattribute__(self, "_overrides")[name] = value

    def js(self) -> dict[str, Any]:
        data = self.result.js()
        data.update({k: v for k, v in self._overrides.items() if k in data})
        return data

    def infotext(self, p: Any, index: int) -> str:
        texts = self.result.infotexts
        return texts[index] if 0 <= index < len(texts) else ""


def unwrap_processed(value: Any) -> GenerationResult:
    """What a dropdown script's run() returned, as the engine's result object."""
    if isinstance(value, Processed):
        return value.result
    if isinstance(value, GenerationResult):
        return value
    raise TypeError(f"run() must return processing.Processed (or None), got {type(value).__name__}")


def wrap_processed(value: Any) -> Any:
    return Processed.of(value) if isinstance(value, GenerationResult) else value


def _comment_method(p: Processing) -> Callable[[str], None]:
    def comment(text: str) -> None:
        p.comments[text] = 1

    return comment


_UNTIL_LOADED = frozenset({"sd_model", "sampler"})


def prepare_p(p: Any, *, sd_model: Callable[[], Any], options: Options) -> None:
    """Give our `Processing` the A1111 attributes it lacks (only where missing)."""
    kind = getattr(p, "kind", "txt2img")
    defaults: dict[str, Callable[[], Any]] = {
        "sd_model": sd_model,
        "outpath_samples": lambda: str(options.get(f"outdir_{kind}_samples")),
        "outpath_grids": lambda: str(options.get(f"outdir_{kind}_grids")),
        "restore_faces": lambda: False,
        "seed_enable_extras": lambda: True,
        "extra_network_data": dict,
        "overlay_images": list,
        "color_corrections": lambda: None,
        "sampler": lambda: sampler_for_job(p),
        "c": lambda: None,
        "uc": lambda: None,
        "cached_c": lambda: [None, None],
        "cached_uc": lambda: [None, None],
        "token_merging_ratio": lambda: 0,
        "token_merging_ratio_hr": lambda: 0,
        "do_not_reload_embeddings": lambda: False,
        "firstpass_image": lambda: None,
    }
    for name, make in defaults.items():
        # the model (and the sampler made on it) may load only after setup: fill them in later
        unset = name in _UNTIL_LOADED and getattr(p, name, None) is None
        if unset or not hasattr(p, name):
            setattr(p, name, make())
    if isinstance(p, Processing) and not hasattr(p, "comment"):
        p.comment = _comment_method(p)  # type: ignore[attr-defined]
    if isinstance(p, Processing) and not hasattr(p, "setup_conds"):
        p.setup_conds = lambda: setup_conds(p)  # type: ignore[attr-defined]
        p.get_conds = lambda: get_conds(p)  # type: ignore[attr-defined]


def split_processing_kwargs(kind: str, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A1111 constructor kwargs -> (request fields, attributes to set on p afterwards)."""
    model = Txt2ImgRequest if kind == "txt2img" else Img2ImgRequest
    fields, extra = {}, {}
    for key, value in kwargs.items():
        if key in ("init_images", "mask", "sd_model"):
            extra[key] = value
        elif key == "sampler_index" and not isinstance(value, str):
            continue  # pre-1.0 A1111 passed an int index here
        elif key in model.model_fields and key not in ("script_args", "alwayson_scripts"):
            fields[key] = value
        else:
            extra[key] = value
    if fields.get("styles") is None:
        fields.pop("styles", None)
    for key in ("override_settings", "comments"):
        if fields.get(key) is None:
            fields.pop(key, None)
    return fields, extra


def fix_seed(p: Any) -> None:
    p.seed = get_fixed_seed(p.seed)
    p.subseed = get_fixed_seed(p.subseed)


def as_images(value: Any) -> list[Image.Image]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [item for item in items if isinstance(item, Image.Image)]
