"""`--worker --queue URL`: build the app's services (models, extensions) without a web server and
run generation jobs from the broker (modules/scaleout/worker.py)."""

from __future__ import annotations

import argparse
import sys

from modules.app.bootstrap import build_services
from modules.extension_host.facade import bind
from modules.extension_host.preload import PreloadHooks
from modules.scaleout.broker import BrokerUrl, ScaleOutError
from modules.scaleout.worker import default_worker_id, run_worker


def main_worker(args: argparse.Namespace, preload: PreloadHooks | None = None) -> int:
    try:
        broker = BrokerUrl.parse(args.queue)
        services = build_services(args)
        host = bind(services, preload=preload, run_installers=not args.skip_install)
        names = [extension.name for extension in host.active()]
        run_worker(
            broker,
            services.generation,
            worker_id=args.worker_id or default_worker_id(args.device_id),
            extensions=names,
            loglevel=(args.loglevel or "INFO").upper(),
        )
    except ScaleOutError as exc:
        print(f"webui.py --worker: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0
