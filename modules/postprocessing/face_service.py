"""One set of face restorers for the whole server (generation, Extras tab, API): the folders are
scanned on first use and the networks built on first restore, so nothing loads at start-up."""

from __future__ import annotations

import threading

import torch
from PIL import Image

from modules.core.paths import Paths
from modules.postprocessing.face_restoration import (
    FaceRestorationUnavailable,
    FaceRestorers,
    describe_unusable,
    face_restorer_folders,
    restore_faces,
    scan_face_restorers,
)


class FaceRestorationService:
    def __init__(self, paths: Paths, device: torch.device, *, safe: bool = True) -> None:
        self.folders = face_restorer_folders(paths.gfpgan_dir, paths.codeformer_dir)
        self.device = device
        self.safe = safe
        self._lock = threading.Lock()
        self._restorers: FaceRestorers | None = None

    def restorers(self) -> FaceRestorers:
        with self._lock:
            if self._restorers is None:
                self._restorers = scan_face_restorers(self.folders, device=self.device, safe=self.safe)
            return self._restorers

    def refresh(self) -> None:
        with self._lock:
            self._restorers = None

    def resolve(self, model_name: str | None) -> str:
        """The restorer a job will use (the first that runs for an empty name); raises
        FaceRestorationUnavailable with the reasons, before any sampling is done."""
        restorers = self.restorers()
        if model_name:
            restorers.get(model_name)
            return model_name
        return restore_name(restorers)

    def restore(self, image: Image.Image, model_name: str | None) -> Image.Image:
        return restore_faces(image, self.restorers(), model_name)


def restore_name(restorers: FaceRestorers) -> str:
    if not restorers.available:
        raise FaceRestorationUnavailable(f"face restoration is not available: {describe_unusable(restorers)}")
    return restorers.names()[0]
