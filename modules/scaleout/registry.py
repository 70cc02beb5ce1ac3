"""Workers announce themselves in Redis (id, queue, checkpoints, the loaded one, extensions) with a
short time-to-live; the front end reads the live set and hands each job to one free worker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from modules.scaleout.broker import ScaleOutError, key

HEARTBEAT_SECONDS = 1.0
ALIVE_SECONDS = 5  # a worker silent for this long is gone (killed, unplugged)


@dataclass(frozen=True)
class Checkpoint:
    title: str  # "name.safetensors [hash]"
    name: str
    hash: str | None


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    queue: str
    checkpoints: tuple[Checkpoint, ...] = ()
    loaded: str | None = None  # the title of the checkpoint in memory
    extensions: tuple[str, ...] = ()
    task: str | None = None  # the task it runs now

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerInfo:
        data = json.loads(text)
        checkpoints = tuple(Checkpoint(**c) for c in data.get("checkpoints", ()))
        return cls(
            id=str(data["id"]),
            queue=str(data["queue"]),
            checkpoints=checkpoints,
            loaded=data.get("loaded"),
            extensions=tuple(data.get("extensions", ())),
            task=data.get("task"),
        )

    def has(self, wanted: str) -> bool:
        return any(_matches(c, wanted) for c in self.checkpoints)

    def has_loaded(self, wanted: str) -> bool:
        return self.loaded is not None and any(_matches(c, wanted) and c.title == self.loaded for c in self.checkpoints)


def _matches(checkpoint: Checkpoint, wanted: str) -> bool:
    """A1111's ways of naming a checkpoint: title, file name (with or without extension), hash."""
    wanted = wanted.strip()
    stem = checkpoint.name.rsplit(".", 1)[0]
    return wanted in (checkpoint.title, checkpoint.name, stem) or (
        checkpoint.hash is not None and len(wanted) >= 8 and checkpoint.hash.startswith(wanted)
    )


def announce(client: Any, info: WorkerInfo) -> None:
    client.set(key("worker", info.id), info.to_json(), ex=ALIVE_SECONDS)


def live_workers(client: Any) -> list[WorkerInfo]:
    names = sorted(client.scan_iter(match=key("worker", "*"), count=200))
    values = client.mget(names) if names else []
    return [WorkerInfo.from_json(v) for v in values if v is not None]


def is_alive(client: Any, worker_id: str) -> bool:
    return bool(client.exists(key("worker", worker_id)))


def publish_extensions(client: Any, names: Sequence[str]) -> None:
    """The front end's extension set, which workers must match to join."""
    client.set(key("frontend", "extensions"), json.dumps(sorted(names)))


def check_extensions(client: Any, names: Sequence[str]) -> None:
    """Refuse to join a front end whose extensions differ (their scripts would run differently)."""
    stored = client.get(key("frontend", "extensions"))
    if stored is None:
        return  # no front end has started yet; it checks nothing against workers
    theirs, ours = set(json.loads(stored)), set(names)
    if theirs != ours:
        missing, extra = sorted(theirs - ours), sorted(ours - theirs)
        raise ScaleOutError(
            "this worker's extensions differ from the front end's: "
            + "; ".join(
                part
                for part in (
                    f"missing here: {', '.join(missing)}" if missing else "",
                    f"not on the front end: {', '.join(extra)}" if extra else "",
                )
                if part
            )
            + ". Install the same extensions (and enable the same ones) on both, then start the worker again."
        )


class NoWorkerHasModel(RuntimeError):
    """No live worker announces the requested checkpoint."""


@dataclass
class WorkerPool:
    """The front end's view of the workers: which are live, which it has given a job."""

    client: Any
    refresh_seconds: float = 0.5
    _busy: set[str] = field(default_factory=set)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _cache: tuple[float, list[WorkerInfo]] = (0.0, [])

    def live(self) -> list[WorkerInfo]:
        now = time.monotonic()
        stamp, workers = self._cache
        if now - stamp > self.refresh_seconds:
            workers = live_workers(self.client)
            self._cache = (now, workers)
        return workers

    def count(self) -> int:
        return len(self.live())

    def checkpoints(self) -> list[Checkpoint]:
        """The union of the live workers' checkpoints (by title)."""
        seen: dict[str, Checkpoint] = {}
        for worker in self.live():
            for checkpoint in worker.checkpoints:
                seen.setdefault(checkpoint.title, checkpoint)
        return sorted(seen.values(), key=lambda c: c.title.lower())

    def acquire(
        self, checkpoint: str | None, *, stop: Callable[[], bool], exclude: Sequence[str] = (), wait: bool = True
    ) -> WorkerInfo | None:
        """A free live worker that has `checkpoint` (one with it loaded first); waits while all are
        busy. None when `stop()` turns true, or at once when `wait` is false and none is free."""
        while True:
            with self._cond:
                workers = self.live()
                able = [w for w in workers if checkpoint is None or w.has(checkpoint)]
                if workers and not able and checkpoint is not None:
                    raise NoWorkerHasModel(
                        f"no live worker has the checkpoint {checkpoint!r}; workers have: "
                        + (", ".join(c.title for c in self.checkpoints()) or "none")
                    )
                free = [w for w in able if w.id not in self._busy and w.id not in exclude]
                if free:
                    free.sort(key=lambda w: (not (checkpoint and w.has_loaded(checkpoint)), w.id))
                    self._busy.add(free[0].id)
                    return free[0]
                if not wait or stop():
                    return None
                self._cond.wait(0.1)

    def release(self, worker: WorkerInfo) -> None:
        with self._cond:
            self._busy.discard(worker.id)
            self._cond.notify_all()
