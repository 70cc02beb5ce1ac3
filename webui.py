"""Entry point: command line -> services -> web app -> uvicorn."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import urllib.error
import urllib.request

# Offline by design: no hub downloads, no telemetry. Set before diffusers/transformers/gradio load.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")


def _announce_when_up(url: str, probe: str, started: float) -> None:
    """Print the URL once the server answers (/ with 200 for the UI), with the time it took."""
    for _ in range(600):
        try:
            with urllib.request.urlopen(probe, timeout=2) as response:
                if response.status == 200:
                    print(
                        f"Running on local URL:  {url}  (first HTTP 200 after {time.monotonic() - started:.1f} s)",
                        flush=True,
                    )
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):  # logins on: the server is up and answering
                print(f"Running on local URL:  {url}  (up after {time.monotonic() - started:.1f} s)", flush=True)
                return
        except OSError:
            pass
        time.sleep(0.1)


def main(argv: list[str]) -> int:
    started = time.monotonic()
    from modules.core.cmd_args import ArgumentError, bind_host, is_non_local, parse_args
    from modules.extension_host.preload import collect_preload_hooks

    preload = collect_preload_hooks(argv)  # extensions' preload.py may add flags before parsing
    try:
        args = parse_args(argv, preload_hooks=preload.hooks)
    except ArgumentError as exc:
        print(f"webui.py: error: {exc}\nRun with --help to list the flags.", file=sys.stderr)
        return 2
    logging.basicConfig(level=(args.loglevel or "INFO").upper(), format="%(levelname)s %(name)s: %(message)s")
    if args.exit:
        return 0
    if args.worker:  # a scale-out worker: no web server (docs/scale-out.md)
        from modules.app.worker import main_worker

        return main_worker(args, preload)

    import uvicorn

    from modules.api.proxies import UVICORN_OPTIONS, ProxyConfigError, TrustedProxies
    from modules.app.bootstrap import build_services
    from modules.core.users import AuthConfigError
    from modules.extension_host.facade import bind
    from modules.scaleout.broker import ScaleOutError
    from modules.scaleout.setup import publish_front_extensions
    from modules.server import build_app

    try:
        TrustedProxies.parse(args.forwarded_allow_ips)
        services = build_services(args)
    except (AuthConfigError, ProxyConfigError, ScaleOutError) as exc:
        print(f"webui.py: error: {exc}", file=sys.stderr)
        return 2
    extensions = bind(services, preload=preload, run_installers=not args.skip_install)
    publish_front_extensions(services.generation, [e.name for e in extensions.active()])
    app = build_app(services, extension_host=extensions)
    host = bind_host(args)
    if is_non_local(args) and not (args.gradio_auth or args.gradio_auth_path or args.api_auth):
        print(
            "WARNING: the server is reachable from other machines and has no login "
            "(--gradio-auth / --api-auth). Anyone on the network can use it.",
            file=sys.stderr,
            flush=True,
        )
    shown = "127.0.0.1" if host == "0.0.0.0" else host
    url = f"http://{shown}:{args.port}/"
    probe = url if not args.nowebui else f"{url}internal/ping"
    threading.Thread(target=_announce_when_up, args=(url, probe, started), daemon=True).start()
    uvicorn.run(
        app,
        host=host,
        port=args.port,
        log_level="warning",
        timeout_keep_alive=args.timeout_keep_alive,
        **UVICORN_OPTIONS,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
