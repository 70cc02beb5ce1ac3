"""A1111's `modules.face_restoration` for extensions: restore_faces(np_image) with the app's
face_restoration_model setting, and the FaceRestoration type of shared.face_restorers."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from modules.extension_host.compat_lists import FaceRestorerView as FaceRestoration
from modules.extension_host.facade import current

__all__ = ["FaceRestoration", "restore_faces"]


def restore_faces(np_image: Any) -> Any:
    """Restore faces in an RGB numpy image with the face_restoration_model setting (the first
    restorer that can run when unset); raises with the reasons when none can."""
    host = current()
    faces = host.services.faces
    name = host.services.options.get("face_restoration_model") or None
    image = Image.fromarray(np.asarray(np_image).astype("uint8"))
    return np.array(faces.restore(image, name))
