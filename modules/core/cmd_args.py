"""Command-line flags with A1111's names (shared/reference/cli-flags.md).

Extensions add flags through preload.py: the extension loader gets the parser from
`build_parser()` and calls each `preload(parser)` before `parse_args`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

# Flags A1111 still accepts but that do nothing; kept so old launch scripts do not break.
# The CPU compute backends of the UNet and VAE (modules.generation.speed.openvino); "auto" picks
# the one measured fastest and correct for the machine (docs/benchmarks.md).
CPU_BACKENDS = ("torch", "openvino", "openvino-bf16", "auto")

_NO_EFFECT_FLAGS = (
    "--max-batch-count",
    "--always-batch-cond-uncond",
    "--unload-gfpgan",
    "--deepdanbooru",
    "--show-negative-prompt",
    "--enable-console-prompts",
    "--gradio-img2img-tool",
    "--gradio-inpaint-tool",
    "--ngrok-region",
    "--add-stop-route",
    "--gradio-queue",
)
_NO_EFFECT_WITH_VALUE = {"--max-batch-count", "--gradio-img2img-tool", "--gradio-inpaint-tool", "--ngrok-region"}


class ArgumentError(ValueError):
    """A command line we cannot run with; the message says which flag and why."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ArgumentError(message)


def _add_network(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network, auth, API")
    g.add_argument("--listen", action="store_true", help="bind 0.0.0.0 (LAN); disables extension install")
    g.add_argument("--port", type=int, default=None, help="port (7860; 7861 with --nowebui)")
    g.add_argument("--server-name", default=None, help="host name or address to bind")
    g.add_argument("--share", action="store_true", help="accepted for compatibility; tunnels are not offered")
    g.add_argument("--ngrok", default=None, help=argparse.SUPPRESS)
    g.add_argument("--ngrok-options", default=None, help=argparse.SUPPRESS)
    g.add_argument("--gradio-auth", default=None, help='UI logins "user:pass[,user2:pass2]"')
    g.add_argument("--gradio-auth-path", default=None, help="file with user:pass entries (lines or commas)")
    g.add_argument("--api", action="store_true", help="serve /sdapi/v1 next to the UI")
    g.add_argument("--nowebui", action="store_true", help="serve the API only")
    g.add_argument("--api-auth", default=None, help='HTTP Basic for the API "user:pass[,user2:pass2]"')
    g.add_argument("--api-log", action="store_true", help="log every API request")
    g.add_argument("--api-server-stop", action="store_true", help="enable server-kill/restart/stop routes")
    g.add_argument("--cors-allow-origins", default=None, help="comma-separated allowed CORS origins")
    g.add_argument("--cors-allow-origins-regex", default=None, help="regex of allowed CORS origins")
    g.add_argument(
        "--allowed-hosts",
        default=None,
        help='extra Host header names to accept, comma-separated (".example.com" = sub-domains, "*" = any)',
    )
    g.add_argument("--admin-users", default=None, help="comma-separated users who may control every job and setting")
    g.add_argument("--tls-keyfile", default=None)
    g.add_argument("--tls-certfile", default=None)
    g.add_argument("--disable-tls-verify", action="store_true")
    g.add_argument("--subpath", default=None, help="root path when behind a reverse proxy")
    g.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="trusted reverse proxies (comma-separated IPs or CIDR ranges): only requests from these "
        "may name the client address in X-Forwarded-For; by default no proxy is trusted",
    )
    g.add_argument("--timeout-keep-alive", type=int, default=30)
    g.add_argument("--no-gradio-queue", action="store_true")
    g.add_argument("--gradio-allowed-path", action="append", default=[])
    g.add_argument("--autolaunch", action="store_true", help="open the browser on start")
    _add_scale_out(p)


def _add_scale_out(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scale-out (docs/scale-out.md)")
    g.add_argument(
        "--queue",
        default=None,
        metavar="redis://[:password@]host:port/db",
        help="run generation jobs on workers through this Redis broker (rediss:// for TLS); "
        "the web server becomes their front end",
    )
    g.add_argument("--worker", action="store_true", help="with --queue: run jobs from the broker, serve no UI")
    g.add_argument("--worker-id", default=None, help="this worker's name (default: host name and --device-id)")


def _add_security(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("security, shared instances")
    g.add_argument("--enable-insecure-extension-access", action="store_true")
    g.add_argument("--allow-code", action="store_true")
    g.add_argument("--disable-safe-unpickle", action="store_true", help="load .ckpt/.pt with full pickle")
    g.add_argument("--disable-all-extensions", action="store_true")
    g.add_argument("--disable-extra-extensions", action="store_true")
    g.add_argument("--freeze-settings", action="store_true")
    g.add_argument("--freeze-settings-in-sections", default=None)
    g.add_argument("--freeze-specific-settings", default=None)
    g.add_argument("--hide-ui-dir-config", action="store_true")
    g.add_argument("--no-prompt-history", action="store_true", help="do not write params.txt")


def _add_paths(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("paths and files")
    g.add_argument("--data-dir", default=None, help="holds config, styles, extensions, models, outputs")
    g.add_argument("--models-dir", default=None)
    g.add_argument("--ckpt", default=None, help="checkpoint to load at start")
    g.add_argument("--ckpt-dir", default=None)
    g.add_argument("--config", default=None, help="accepted for compatibility (model yaml)")
    g.add_argument("--vae-dir", default=None)
    g.add_argument("--vae-path", default=None, help="fixed VAE file")
    g.add_argument("--embeddings-dir", default=None)
    g.add_argument("--hypernetwork-dir", default=None)
    g.add_argument("--lora-dir", default=None)
    g.add_argument("--controlnet-dir", default=None, help="ControlNet models (default models/ControlNet)")
    g.add_argument("--controlnet-annotator-models-path", default=None, help="default models/ControlNet-annotators")
    g.add_argument("--lyco-dir-backcompat", default=None)
    for name in ("esrgan", "realesrgan", "dat", "bsrgan", "swinir", "codeformer", "gfpgan", "clip"):
        g.add_argument(f"--{name}-models-path", default=None)
    g.add_argument("--textual-inversion-templates-dir", default=None)
    g.add_argument("--localizations-dir", default=None)
    g.add_argument("--ui-settings-file", default=None, help="config.json location")
    g.add_argument("--ui-config-file", default=None, help="ui-config.json location")
    g.add_argument("--styles-file", action="append", default=None, help="styles.csv (repeatable)")
    g.add_argument("--filenames-max-length", type=int, default=128)
    g.add_argument("--unix-filenames-sanitization", action="store_true")
    g.add_argument("--no-hashing", action="store_true")
    g.add_argument("--no-download-sd-model", action="store_true")
    g.add_argument("--do-not-download-clip", action="store_true")


def _add_devices(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("performance and devices")
    g.add_argument("--medvram", action="store_true", help="offload whole models to CPU between uses")
    g.add_argument("--medvram-sdxl", action="store_true", help="--medvram for SDXL models only")
    g.add_argument("--lowvram", action="store_true", help="offload layer by layer (slowest, least VRAM)")
    g.add_argument("--lowram", action="store_true")
    g.add_argument("--no-half", action="store_true", help="keep weights in fp32")
    g.add_argument("--no-half-vae", action="store_true", help="keep the VAE in fp32")
    g.add_argument(
        "--precision",
        choices=("full", "half", "autocast", "bf16"),
        default="autocast",
        help="full = fp32; half/autocast = fp16 on CUDA/MPS; bf16 = bfloat16 where the GPU has it (fp16 otherwise)",
    )
    g.add_argument("--upcast-sampling", action="store_true")
    g.add_argument("--use-cpu", nargs="+", default=[], help="'all' or modules to run on the CPU")
    g.add_argument("--device-id", default=None)
    g.add_argument("--use-ipex", action="store_true")
    g.add_argument(
        "--cpu-backend",
        choices=CPU_BACKENDS,
        default=None,
        help="UNet/VAE compute on the CPU: torch, openvino (fp32), openvino-bf16, auto (setting cpu_compute_backend)",
    )
    for flag in (
        "--xformers",
        "--force-enable-xformers",
        "--xformers-flash-attention",
        "--opt-sdp-attention",
        "--opt-sdp-no-mem-attention",
        "--opt-split-attention",
        "--opt-split-attention-v1",
        "--opt-split-attention-invokeai",
        "--opt-sub-quad-attention",
        "--disable-opt-split-attention",
        "--opt-channelslast",
        "--disable-nan-check",
        "--disable-model-loading-ram-optimization",
    ):
        g.add_argument(flag, action="store_true")


def _add_ui_and_launch(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("UI, launcher")
    g.add_argument("--theme", choices=("light", "dark"), default=None)
    g.add_argument("--use-textbox-seed", action="store_true")
    g.add_argument("--ui-debug-mode", action="store_true", help="start without loading a model")
    g.add_argument("--disable-console-progressbars", action="store_true")
    g.add_argument("--loglevel", default=None)
    g.add_argument("--log-startup", action="store_true")
    g.add_argument("--gradio-debug", action="store_true")
    g.add_argument("--skip-install", action="store_true", help="skip installs (extension install.py too)")
    g.add_argument("--exit", action="store_true", help="install, then exit")
    for flag in (
        "--skip-torch-cuda-test",
        "--skip-python-version-check",
        "--skip-version-check",
        "--skip-prepare-environment",
        "--reinstall-torch",
        "--reinstall-xformers",
        "--update-check",
        "--update-all-extensions",
        "--test-server",
        "--dump-sysinfo",
    ):
        g.add_argument(flag, action="store_true")
    for flag in _NO_EFFECT_FLAGS:
        if flag in _NO_EFFECT_WITH_VALUE:
            g.add_argument(flag, default=None, help=argparse.SUPPRESS)
        else:
            g.add_argument(flag, action="store_true", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    """The full parser; extensions' preload(parser) may add to it before parsing."""
    parser = _Parser(prog="webui.py", description="Stable Diffusion web UI (A1111-compatible)")
    _add_network(parser)
    _add_security(parser)
    _add_paths(parser)
    _add_devices(parser)
    _add_ui_and_launch(parser)
    return parser


def parse_args(
    argv: Sequence[str],
    preload_hooks: Sequence[Callable[[argparse.ArgumentParser], None]] = (),
) -> argparse.Namespace:
    """Parse flags; unknown flags raise ArgumentError naming them."""
    parser = build_parser()
    for hook in preload_hooks:
        hook(parser)
    args = parser.parse_args(list(argv))
    if args.nowebui and args.port is None:
        args.port = 7861
    if args.port is None:
        args.port = 7860
    if args.worker and not args.queue:
        parser.error("--worker needs --queue redis://host:port/db (the broker to take jobs from)")
    return args


def is_non_local(args: argparse.Namespace) -> bool:
    """A1111's rule: the server is reachable from other machines."""
    return bool(args.share or args.listen or args.ngrok or args.server_name)


def bind_host(args: argparse.Namespace) -> str:
    if args.server_name:
        return str(args.server_name)
    return "0.0.0.0" if args.listen else "127.0.0.1"
