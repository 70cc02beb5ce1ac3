"""What travels through Redis besides the Celery task: progress, previews and stop requests of one
task, and images as base64 PNG (JSON, never pickle)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from PIL import Image

from modules.scaleout.broker import key

KEY_SECONDS = 3600  # progress keys expire on their own (a front end that went away)
RETIRED_SECONDS = 3 * 24 * 3600  # a finished or re-sent task stays marked longer than any redelivery


def encode_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_png(data: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def progress_key(task: str) -> str:
    return key("progress", task)


def preview_key(task: str) -> str:
    return key("preview", task)


def control_key(task: str) -> str:
    """A hash: interrupt=1, skip=<count>, stop=1 (stop after the current image), abandoned=1."""
    return key("control", task)


def write_progress(client: Any, task: str, job_no: int, job_count: int, step: int, steps: int) -> None:
    data = {"job_no": job_no, "job_count": job_count, "step": step, "steps": steps}
    client.set(progress_key(task), json.dumps(data), ex=KEY_SECONDS)


def read_progress(client: Any, task: str) -> dict[str, int] | None:
    raw = client.get(progress_key(task))
    return json.loads(raw) if raw is not None else None


def write_preview(client: Any, task: str, number: int, image: Image.Image, size: tuple[int, int] | None) -> None:
    data = {"id": number, "size": list(size) if size else None, "png": encode_png(image)}
    pipe = client.pipeline()
    pipe.set(preview_key(task), json.dumps(data), ex=KEY_SECONDS)
    pipe.set(preview_key(task) + ":id", number, ex=KEY_SECONDS)  # pollers read this small key
    pipe.execute()


def read_preview(client: Any, task: str, seen: int) -> dict[str, Any] | None:
    """The newest preview if it is not number `seen` (the image is only fetched when new)."""
    number = client.get(preview_key(task) + ":id")
    if number is None or int(number) == seen:
        return None
    raw = client.get(preview_key(task))
    return json.loads(raw) if raw is not None else None


def read_control(client: Any, task: str) -> dict[str, int]:
    raw = client.hgetall(control_key(task))
    return {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}


def send_control(client: Any, task: str, field: str, increment: bool = False) -> None:
    name = control_key(task)
    pipe = client.pipeline()
    if increment:
        pipe.hincrby(name, field, 1)
    else:
        pipe.hset(name, field, 1)
    pipe.expire(name, KEY_SECONDS)
    pipe.execute()


def retire(client: Any, task: str) -> None:
    """The task is done or was given to another worker: drop its progress, and mark it so that a
    copy delivered again later (a restarted worker's queue) is not run a second time."""
    pipe = client.pipeline()
    pipe.delete(progress_key(task), preview_key(task), preview_key(task) + ":id")
    pipe.hset(control_key(task), "abandoned", 1)
    pipe.expire(control_key(task), RETIRED_SECONDS)
    pipe.execute()
