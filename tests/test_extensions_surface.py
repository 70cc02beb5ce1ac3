"""The A1111 module surface extensions import (issue 18): the static audit, the facades' values
as an extension reads them (toy-surface reproduces the patterns the audit found in popular
extensions), preload.py reading modules.paths, and /file= serving extension files safely."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from modules.app.bootstrap import build_services
from modules.core.cmd_args import parse_args
from modules.extension_host import facade
from modules.extension_host.host import ExtensionHost
from modules.extension_host.preload import collect_preload_hooks
from tests.ui_harness import LiveServer, free_port, serve
from tools.extension_audit import audit

FIXTURES = Path(__file__).parent / "extensions_fixtures"
ROOT = Path(__file__).parent.parent


def _start(data_dir: Path, *flags: str) -> ExtensionHost:
    argv = ["--data-dir", str(data_dir), *flags]
    preload = collect_preload_hooks(argv)
    args = parse_args(argv, preload_hooks=preload.hooks)
    return facade.bind(
        build_services(args), builtin_dir=data_dir / "no-builtins", core_scripts_dir=None, preload=preload
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("surface") / "data"
    shutil.copytree(FIXTURES / "toy-surface", root / "extensions" / "toy-surface")
    return root


@pytest.fixture(scope="module")
def host(data_dir: Path) -> Iterator[ExtensionHost]:
    bound = _start(data_dir, "--nowebui")
    yield bound
    facade.unbind()


def _probe(host: ExtensionHost) -> dict:
    """Call toy-surface's probe() (the module its script file was loaded as)."""
    module = next(m for name, m in sys.modules.items() if name.endswith("surface_probe") and hasattr(m, "probe"))
    return module.probe()


# --- the audit ------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
def test_audit_finds_no_gap_in_the_test_extensions(folder: str) -> None:
    assert [r.dotted for r in audit(FIXTURES / folder)] == []


def test_audit_lists_each_missing_name_once(tmp_path: Path) -> None:
    ext = tmp_path / "gappy"
    (ext / "scripts").mkdir(parents=True)
    (ext / "preload.py").write_text("def preload(parser):\n    parser.add_argument('--gappy-dir')\n")
    (ext / "scripts" / "a.py").write_text(
        "import launch\n"
        "import modules.no_such_module\n"
        "from modules import devices, shared\n"
        "from modules.devices import not_a_device_name\n"
        "try:\n"
        "    from modules.sd_samplers_kdiffusion import NoSuchDenoiser\n"
        "except ImportError:\n"
        "    NoSuchDenoiser = None\n"
        "x = devices.device, devices.also_missing, devices.also_missing\n"
        "y = shared.cmd_opts.lora_dir, shared.cmd_opts.gappy_dir, shared.cmd_opts.not_a_flag\n"
        "z = shared.opts.some_setting_of_theirs, launch.git_tag, launch.no_such_launch_name\n"
    )
    gaps = {r.dotted: r.optional for r in audit(ext)}
    assert gaps == {
        "modules.no_such_module": False,
        "modules.devices.not_a_device_name": False,
        "modules.devices.also_missing": False,
        "modules.sd_samplers_kdiffusion.NoSuchDenoiser": True,  # guarded import: reported as optional
        "modules.shared.cmd_opts.not_a_flag": False,
        "launch.no_such_launch_name": False,
    }
    cli = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "extension_audit.py"), str(ext)], capture_output=True, text=True
    )
    assert cli.returncode == 1
    assert "modules.devices.not_a_device_name  scripts/a.py:4" in cli.stdout


# --- the values extensions read -------------------------------------------------------------------


def test_facades_give_extensions_the_apps_values(host: ExtensionHost, data_dir: Path) -> None:
    values = _probe(host)
    paths = host.services.paths
    assert values["device"] == str(host.services.policy.device)
    assert values["dtype"] == str(host.services.policy.unet_dtype)
    assert values["nans_exception"] == "NansException"
    # folder flags not given on the command line read as the folders in use (A1111 defaults)
    assert values["lora_dir"] == str(paths.lora_dir) == str(data_dir / "models" / "Lora")
    assert values["embeddings_dir"] == str(data_dir / "models" / "embeddings")
    assert values["hypernetwork_dir"] == str(data_dir / "models" / "hypernetworks")
    assert values["ckpt_dir"] == str(data_dir / "models" / "Stable-diffusion")
    assert values["use_cpu"] == []
    assert values["models_path"] == str(data_dir / "models")
    assert values["outdir_txt2img_samples"] == str(data_dir / "outputs" / "txt2img-images")  # where images go
    assert values["outdir_from_data"] == values["outdir_txt2img_samples"]  # also through opts.data
    assert values["data_path"] == str(data_dir)
    assert values["extensions_dir"] == str(data_dir / "extensions")
    assert values["active"] == ["toy-surface"]
    # shared.sd_upscalers is the app's list: shared.sd_upscalers[0] works (it raised before)
    assert values["first_upscaler"] == "None"
    assert values["upscalers"][:3] == ["None", "Lanczos", "Nearest"]
    assert isinstance(values["face_restorers"], list)
    assert values["samplers"][0] == "DPM++ 2M" and "Euler a" in values["samplers"]
    assert values["schedulers"][:3] == ["Automatic", "Uniform", "Karras"]
    assert values["sampler_lookup"] == ("DPM++ 2M", "Karras")
    assert values["img2img_steps"] == (20, 10)
    assert values["schedule"] == [[[5, "a cat ball"], [10, "a dog ball"]]]
    assert values["attention"] == [["red", 1.2], [" ball", 1.0]]
    assert values["checkpoint_tiles"] == [c.title for c in host.services.models.list_checkpoints()]
    assert values["vae_items"][:2] == ["Automatic", "None"]
    assert values["git_tag"] and values["commit_hash"]
    assert values["launch_args_data_dir"] == str(data_dir)
    assert values["parser_has_lora_dir"] is True
    assert values["mem_mon"] == "MemUsageMonitor"
    assert values["gr_show"] == {"visible": False, "__type__": "update"}
    assert values["strip_comments"] == "a ball \nred"
    assert values["crop"] == (6, 6, 18, 18)
    assert values["flatten_mode"] == "RGB"
    assert values["token_count"] == (3, 75)
    assert values["noise_shape"] == [2, 4, 8, 8]
    assert values["ui_module"] == "<p>a&lt;b</p>"


def test_preload_reads_models_path_before_the_app_exists(host: ExtensionHost, data_dir: Path) -> None:
    assert host.services.args.toy_surface_models == str(data_dir / "models" / "toy-surface")


def test_cache_and_safe_load_work_for_extensions(host: ExtensionHost, tmp_path: Path) -> None:
    from modules import cache, safe

    section = cache.cache("toy-surface")
    section["answer"] = 42
    cache.dump_cache()
    stored = json.loads((host.services.paths.cache_dir / "cache.json").read_text())
    assert stored["toy-surface"] == {"answer": 42}
    calls = []
    target = tmp_path / "data.txt"
    target.write_text("x")
    for _ in range(2):
        value = cache.cached_data_for_file("toy-surface-files", "data", str(target), lambda: calls.append(1) or "v")
        assert value == "v"
    assert calls == [1]  # the second read came from the cache

    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(safe.load(tmp_path / "ok.pt")["w"], torch.ones(2))

    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())

    torch.save({"evil": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        safe.load(tmp_path / "evil.pt")
    with safe.Extra(lambda module, name: None):  # the extension vouches for the file
        assert safe.load(tmp_path / "evil.pt")["evil"] == os.getcwd()


# --- /file= -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(host: ExtensionHost, data_dir: Path) -> Iterator[LiveServer]:
    from modules.server import build_app

    ext = data_dir / "extensions" / "toy-surface"
    (ext / ".git").mkdir(exist_ok=True)
    (ext / ".git" / "config").write_text("[remote]\nurl = https://user:secret@example.com/x.git\n")
    (ext / "leak.txt").symlink_to(data_dir / "config.json") if not (ext / "leak.txt").exists() else None
    (data_dir / "config.json").write_text("{}")
    (data_dir / "tmp").mkdir(exist_ok=True)
    (data_dir / "tmp" / "toyPath.txt").write_text("extensions/toy-surface/data")
    app = build_app(host.services, extension_host=host)
    live = serve(app, host.services, free_port())
    yield live
    live.stop()


def _get(server: LiveServer, raw_path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as written (no client-side normalisation of '..')."""
    host, port = server.url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", raw_path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_file_route_serves_extension_files_and_the_temp_folder(server: LiveServer, data_dir: Path) -> None:
    status, body = _get(server, "/file=extensions/toy-surface/data/words.json")
    assert status == 200 and json.loads(body) == {"words": ["red", "blue", "green"]}
    absolute = data_dir / "extensions" / "toy-surface" / "data" / "words.json"
    assert _get(server, f"/file={absolute}")[0] == 200
    assert _get(server, "/file=tmp/toyPath.txt") == (200, b"extensions/toy-surface/data")
    assert _get(server, "/toy-surface/probe")[0] == 200  # the extension's own route (on_app_started)


@pytest.mark.parametrize(
    "path",
    [
        "/file=extensions/toy-surface/../../config.json",
        "/file=extensions/toy-surface/%2e%2e/%2e%2e/config.json",
        "/file=extensions/toy-surface/..%2f..%2fconfig.json",
        "/file=extensions/toy-surface/.git/config",
        "/file=extensions/toy-surface/leak.txt",
        "/file=/etc/passwd",
        "/file=config.json",
        "/file=webui.py",
        "/file=tmp/../config.json",
        "/file=extensions/../../../../etc/passwd",
    ],
)
def test_file_route_refuses_everything_outside_the_shared_roots(server: LiveServer, path: str) -> None:
    status, body = _get(server, path)
    assert status in (403, 404), (status, body[:200])
    assert b"secret" not in body and b"root:" not in body and body != b"{}"


def test_import_modules_then_use_a_submodule_as_attribute() -> None:
    """adetailer's pattern: `import modules` then `modules.shared_items.sd_vae_items` (A1111 had
    imported every module at start); here the submodule is imported when first read."""
    code = (
        "import modules\n"
        "print(modules.shared_items.sd_vae_items.__name__, modules.sd_samplers.__name__)\n"
        "try:\n    modules.no_such_module\nexcept AttributeError as e:\n    print('missing:', e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.splitlines() == [
        "sd_vae_items modules.sd_samplers",
        "missing: module 'modules' has no attribute 'no_such_module'",
    ]
