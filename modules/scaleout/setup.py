"""Build the scale-out pieces from the command line (called by the composition root)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modules.generation.engine import GenerationService
from modules.scaleout import registry
from modules.scaleout.broker import BrokerUrl, celery_app, connect
from modules.scaleout.frontend import RemoteGeneration
from modules.scaleout.registry import WorkerPool


@dataclass
class FrontEnd:
    generation: RemoteGeneration
    pool: WorkerPool
    client: Any

    def slots(self) -> Callable[[], int]:
        """Jobs the front end runs at once: one per live worker (at least one, so jobs that run
        here, e.g. Extras, are not held up while no worker is connected)."""
        return lambda: max(1, self.pool.count())


def front_end(args: argparse.Namespace, local: GenerationService) -> FrontEnd | None:
    """With --queue (and not --worker): the remote generation service over the broker; else None."""
    if not getattr(args, "queue", None) or getattr(args, "worker", False):
        return None
    broker = BrokerUrl.parse(args.queue)
    client = connect(broker)
    pool = WorkerPool(client)
    # the checkpoint dropdown, /sdapi/v1/sd-models and settings name what the workers have
    local.models.registry.use_remote(lambda: [(c.name, c.hash) for c in pool.checkpoints()])
    generation = RemoteGeneration(local, app=celery_app(broker), client=client, pool=pool)
    return FrontEnd(generation, pool, client)


def publish_front_extensions(generation: GenerationService, names: Sequence[str]) -> None:
    """The front end's extension set (workers compare theirs with it when they join)."""
    if isinstance(generation, RemoteGeneration):
        registry.publish_extensions(generation.client, names)
