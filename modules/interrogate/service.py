"""Interrogate CLIP / Interrogate DeepBooru, as A1111's img2img buttons and
POST /sdapi/v1/interrogate (`{"image": b64, "model": "clip" | "deepdanbooru"}` ->
`{"caption": "..."}`).

Nothing is ever downloaded. With the built-in demo model selected, both work out of the box
through the demo's own UNet (modules/interrogate/demo.py): CLIP gives a caption in the demo's
grammar ("a red circle"), DeepBooru comma-separated tags ("circle, red, red circle"), shaped by
A1111's deepbooru settings. For other checkpoints the interrogators need A1111's model files in
A1111's folders; when they are missing the error names the files and where they go.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from modules.core.options import Options
from modules.core.paths import Paths
from modules.models.builtin_checkpoints import builtin_checkpoints
from modules.models.checkpoints import CheckpointInfo
from modules.models.manager import ModelManager

INTERROGATORS = ("clip", "deepdanbooru")


class UnknownInterrogator(LookupError):
    """A model name other than clip / deepdanbooru (A1111 answers 404 "Model not found")."""


class InterrogatorUnavailable(RuntimeError):
    """The interrogator's model files are not there; the message says which and where."""


@dataclass(frozen=True)
class RequiredFile:
    path: Path
    what: str

    def describe(self) -> str:
        return f"{self.path} ({self.what})"


def required_files(paths: Paths, model: str) -> list[RequiredFile]:
    """A1111's files and folders for each interrogator (its download names)."""
    models = paths.models_dir
    if model == "clip":
        return [
            RequiredFile(models / "BLIP" / "model_base_caption_capfilt_large.pth", "BLIP captioning model"),
            RequiredFile(models / "CLIP" / "ViT-L-14.pt", "CLIP ViT-L/14, for the style and artist words"),
        ]
    return [RequiredFile(models / "torch_deepdanbooru" / "model-resnet_custom_v3.pt", "DeepDanbooru tagger")]


def booru_text(tags: list[tuple[str, float]], options: Options) -> str:
    """A1111's deepbooru output rules: threshold, filter, order, spaces/underscores, escaping, ranks."""
    threshold = float(options.get("interrogate_deepbooru_score_threshold"))
    banned = {t.strip() for t in str(options.get("deepbooru_filter_tags")).split(",") if t.strip()}
    kept = [(tag, score) for tag, score in tags if score >= threshold and tag not in banned]
    if bool(options.get("deepbooru_sort_alpha")):
        kept.sort(key=lambda item: item[0])
    else:
        kept.sort(key=lambda item: -item[1])
    words = []
    for tag, score in kept:
        text = tag.replace("_", " ") if bool(options.get("deepbooru_use_spaces")) else tag.replace(" ", "_")
        if bool(options.get("deepbooru_escape")):
            text = text.replace("(", "\\(").replace(")", "\\)")
        words.append(f"({text}:{score:.3f})" if bool(options.get("interrogate_return_ranks")) else text)
    return ", ".join(words)


class InterrogationService:
    def __init__(self, models: ModelManager, paths: Paths, options: Options) -> None:
        self.models, self.paths, self.options = models, paths, options

    def _selected_checkpoint(self) -> CheckpointInfo | None:
        wanted = str(self.options.get("sd_model_checkpoint") or "")
        if wanted:
            return self.models.find_checkpoint(wanted)
        if self.models.active is not None:
            return self.models.active.checkpoint
        listed = self.models.list_checkpoints()
        return listed[0] if listed else None

    def _is_demo(self, info: CheckpointInfo | None) -> bool:
        builtin = {path.resolve() for path in builtin_checkpoints()}
        return info is not None and Path(info.filename).resolve() in builtin

    def interrogate(self, image: Image.Image, model: str = "clip") -> str:
        if model not in INTERROGATORS:
            raise UnknownInterrogator(f"Model not found: {model!r} (interrogators: {', '.join(INTERROGATORS)})")
        info = self._selected_checkpoint()
        if self._is_demo(info):
            return self._demo(image, model, info)
        missing = [f for f in required_files(self.paths, model) if not f.path.is_file()]
        title = "Interrogate CLIP" if model == "clip" else "Interrogate DeepBooru"
        if missing:
            raise InterrogatorUnavailable(
                f"{title} needs {', '.join(f.describe() for f in missing)}; this web UI downloads nothing: "
                "place the files there (from an A1111 install's models folder), or select the built-in demo "
                "model, whose own interrogator needs no files"
            )
        raise InterrogatorUnavailable(
            f"{title}: the files are in place, but this web UI cannot run A1111's "
            f"{'BLIP/CLIP' if model == 'clip' else 'DeepDanbooru'} checkpoints yet; "
            "select the built-in demo model to interrogate its pictures"
        )

    def _demo(self, image: Image.Image, model: str, info: CheckpointInfo | None) -> str:
        from modules.interrogate.demo import read_image

        assert info is not None
        model_in_use = self.models.load(info, vae=None)  # becomes the active model, as a generation would
        with self.models.use(model_in_use) as loaded:
            reading = read_image(loaded, image)
        if model == "clip":
            return reading.caption
        confidence = reading.confidence()
        joined = f"{reading.colour} {reading.shape}"
        tags = [(reading.shape, confidence[reading.shape]), (reading.colour, confidence[reading.colour])]
        tags.append((joined, min(confidence[reading.shape], confidence[reading.colour])))
        return booru_text(tags, self.options)
