"""Settings registry and config.json persistence; command-line flags and paths."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from modules.core.cmd_args import ArgumentError, bind_host, is_non_local, parse_args
from modules.core.options import OptionError, Options
from modules.core.paths import Paths
from modules.core.shared_options import core_registry

REPO = Path(__file__).resolve().parents[1]


def test_values_persist_and_unknown_keys_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"some_extension_key": [1, 2], "CLIP_stop_at_last_layers": 2}))
    opts = Options(core_registry(), path)
    opts.load()
    assert opts.get("CLIP_stop_at_last_layers") == 2
    assert opts.set("samples_format", "jpg")
    opts.save()
    data = json.loads(path.read_text())
    assert data["samples_format"] == "jpg"
    assert data["some_extension_key"] == [1, 2]
    fresh = Options(core_registry(), path)
    fresh.load()
    assert fresh.get("samples_format") == "jpg"


def test_bad_values_are_refused_with_the_key_named(tmp_path: Path) -> None:
    opts = Options(core_registry(), tmp_path / "config.json")
    with pytest.raises(OptionError, match="samples_format"):
        opts.set("samples_format", "bmp")
    with pytest.raises(OptionError, match="CLIP_stop_at_last_layers"):
        opts.set("CLIP_stop_at_last_layers", "lots")
    with pytest.raises(OptionError, match="unknown setting"):
        opts.set("no_such_setting", 1)
    with pytest.raises(OptionError, match="<= 12"):
        opts.set("CLIP_stop_at_last_layers", 99)


def test_corrupt_config_is_moved_aside_and_defaults_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"samples_format": "jpg", ')
    opts = Options(core_registry(), path)
    opts.load()
    assert opts.get("samples_format") == "png"
    assert not path.exists()
    aside = list(tmp_path.glob("config.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text().startswith('{"samples_format"')
    assert "unreadable" in caplog.text
    opts.save()
    assert json.loads(path.read_text()) == {}


def test_request_overrides_never_touch_stored_values(tmp_path: Path) -> None:
    opts = Options(core_registry(), tmp_path / "config.json")
    view = opts.view({"CLIP_stop_at_last_layers": "2", "eta_noise_seed_delta": 31337})
    assert view["CLIP_stop_at_last_layers"] == 2
    assert view.eta_noise_seed_delta == 31337
    assert opts.get("CLIP_stop_at_last_layers") == 1
    assert opts.get("eta_noise_seed_delta") == 0
    with pytest.raises(OptionError):
        opts.view({"randn_source": "quantum"})


WRITER = """
import sys, itertools
sys.path.insert(0, {repo!r})
from pathlib import Path
from modules.core.options import Options
from modules.core.shared_options import core_registry
opts = Options(core_registry(), Path({path!r}))
big = "x" * 200_000
print("ready", flush=True)
for i in itertools.count():
    opts.set("samples_filename_pattern", f"{{i}}-{{big}}")
    opts.save()
    print(i, flush=True)
"""


def test_config_survives_a_kill_during_writes(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(repo=str(REPO), path=str(path))], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    while int(proc.stdout.readline()) < 20:  # many saves done and more going on: the kill lands in one
        pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    data = json.loads(path.read_text())  # whole, parseable: old or new content, never half
    assert data["samples_filename_pattern"].endswith("x" * 1000)
    leftovers = [p for p in tmp_path.iterdir() if p.name != "config.json"]
    assert all(p.suffix == ".tmp" for p in leftovers)  # a killed writer may leave its temp file only


def test_unknown_flag_is_a_clear_error() -> None:
    with pytest.raises(ArgumentError, match="--no-such-flag"):
        parse_args(["--no-such-flag"])
    with pytest.raises(ArgumentError, match="precision"):
        parse_args(["--precision", "quarter"])


def test_a1111_flags_parse() -> None:
    args = parse_args(
        [
            "--listen",
            "--port",
            "7999",
            "--api",
            "--no-half",
            "--precision",
            "full",
            "--medvram",
            "--gradio-auth",
            "a:b",
            "--disable-safe-unpickle",
            "--theme",
            "dark",
            "--xformers",
            "--skip-install",
        ]
    )
    assert args.port == 7999 and args.api and args.no_half and args.medvram
    assert is_non_local(args) and bind_host(args) == "0.0.0.0"
    assert parse_args([]).port == 7860 and bind_host(parse_args([])) == "127.0.0.1"
    assert parse_args(["--nowebui"]).port == 7861


def test_data_dir_moves_everything_and_dir_flags_win(tmp_path: Path) -> None:
    paths = Paths.from_args(parse_args(["--data-dir", str(tmp_path), "--lora-dir", str(tmp_path / "elsewhere")]))
    assert paths.config_file == tmp_path / "config.json"
    assert paths.styles_files == (tmp_path / "styles.csv",)
    assert paths.ckpt_dir == tmp_path / "models" / "Stable-diffusion"
    assert paths.outputs_dir == tmp_path / "outputs"
    assert paths.extensions_dir == tmp_path / "extensions"
    assert paths.lora_dir == tmp_path / "elsewhere"
    paths.ensure()
    assert (tmp_path / "models" / "VAE").is_dir() and (tmp_path / "models" / "ESRGAN").is_dir()
