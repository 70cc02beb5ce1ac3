"""A1111's `modules.api.models` for extensions: the request/response models of /sdapi/v1.

The txt2img/img2img request models are ours (modules.generation.requests, A1111 field names),
the responses those of modules.api.schemas.
"""

from __future__ import annotations

from modules.api.schemas import *  # noqa: F403 - A1111 code imports any response model from here
from modules.api.schemas import ImageToImageResponse, TextToImageResponse
from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest

__all__ = [
    "ImageToImageResponse",
    "StableDiffusionImg2ImgProcessingAPI",
    "StableDiffusionTxt2ImgProcessingAPI",
    "TextToImageResponse",
]

StableDiffusionTxt2ImgProcessingAPI = Txt2ImgRequest
StableDiffusionImg2ImgProcessingAPI = Img2ImgRequest
