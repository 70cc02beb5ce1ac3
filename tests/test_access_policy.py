"""The access policy, the settings service and the hires size, without a server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modules.access.limits import LimitExceeded
from modules.access.policy import AccessDenied, Caller
from modules.app.bootstrap import build_services
from modules.core.cmd_args import parse_args
from modules.core.devices import DevicePolicy
from modules.core.jobs import JobControl, LocalJobQueue, running_control
from modules.generation.hires_size import HiresSize, checked_hires_size, hires_size
from modules.generation.requests import Txt2ImgRequest
from modules.services import Services

ROOT, ALICE = Caller("root", "10.0.0.1"), Caller("alice", "10.0.0.2")
LOCAL = Caller(None, "127.0.0.1")


LOGINS = ("--gradio-auth", "alice:pw-a,root:pw-r")


def services_for(tmp_path: Path, *flags: str) -> Services:
    return build_services(parse_args(["--data-dir", str(tmp_path), *flags]), policy=DevicePolicy.cpu())


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Services]:
    services = services_for(tmp_path)
    yield services
    services.jobs.shutdown()


def test_settings_apply_stores_changes_and_reports_errors_and_reload_needs(local: Services, tmp_path: Path) -> None:
    values = {
        "samples_format": "jpg",
        "jpeg_quality": 500,
        "quicksettings_list": ["sd_vae"],
        "eta_noise_seed_delta": 31337,
    }
    result = local.settings.apply(LOCAL, values)
    assert result.changed == ["samples_format", "quicksettings_list", "eta_noise_seed_delta"]
    assert "jpeg_quality" in result.errors and "<= 100" in result.errors["jpeg_quality"]
    assert result.needs_reload_ui == ["Quicksettings list"]
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["samples_format"] == "jpg" and stored["eta_noise_seed_delta"] == 31337
    assert "jpeg_quality" not in stored
    unchanged = local.settings.apply(LOCAL, {"samples_format": "jpg", "jpeg_quality": None})
    assert unchanged.changed == [] and unchanged.errors == {}


def test_frozen_settings_are_refused_on_every_path(tmp_path: Path) -> None:
    services = services_for(tmp_path, "--freeze-specific-settings", "samples_format")
    with pytest.raises(AccessDenied, match="frozen.*samples_format"):
        services.settings.apply(LOCAL, {"samples_format": "webp", "jpeg_quality": 50})
    assert services.options.get("samples_format") == "png" and services.options.get("jpeg_quality") != 50
    assert services.settings.apply(LOCAL, {"samples_format": "png"}).changed == []  # shown, not changed: fine


def test_with_an_admin_list_only_admins_change_settings_limits_and_see_all_jobs(tmp_path: Path) -> None:
    services = services_for(tmp_path, *LOGINS, "--admin-users", "root")
    access = services.access
    for values in ({"jpeg_quality": 50}, {"api_max_steps": 1000}, {"sd_model_checkpoint": "nope"}):
        with pytest.raises(AccessDenied, match="only admins"):
            services.settings.prepare(ALICE, values, from_api=True)
    with pytest.raises(AccessDenied):
        services.settings.apply(ALICE, {"api_max_queued_per_user": 0, "api_queue_fairness": "round-robin"})
    assert services.options.get("api_max_queued_per_user") == 10 and not (tmp_path / "config.json").exists()
    assert services.settings.apply(ROOT, {"api_max_steps": 100}).changed == ["api_max_steps"]
    assert access.may_see_job("alice", "alice") and access.may_see_job("alice", "root")
    assert not access.may_see_job("alice", "bob") and access.may_see_job("alice", None)


def test_without_an_admin_list_limits_stay_with_config_json_on_a_shared_server(tmp_path: Path) -> None:
    services = services_for(tmp_path, "--listen", *LOGINS)
    assert services.settings.apply(ALICE, {"jpeg_quality": 50}).changed == ["jpeg_quality"]  # A1111: any user
    with pytest.raises(AccessDenied, match="shared-instance limits"):
        services.settings.apply(ALICE, {"api_max_steps": 1000})
    with pytest.raises(AccessDenied, match="folder settings"):
        services.settings.apply(ALICE, {"outdir_samples": "/tmp"})
    assert services.options.get("api_max_steps") == 150 and services.options.get("outdir_samples") == ""


def test_the_local_user_may_change_limits_and_folders(local: Services) -> None:
    assert local.settings.apply(LOCAL, {"api_max_steps": 99, "outdir_samples": "out"}).changed == [
        "api_max_steps",
        "outdir_samples",
    ]


def test_quota_key_is_the_user_else_the_address() -> None:
    assert ALICE.quota_key == "alice" and LOCAL.quota_key == "addr:127.0.0.1"


def test_generation_checks_limits_and_locked_override_folders(tmp_path: Path) -> None:
    access = services_for(tmp_path, "--listen").access
    access.check_generation(Txt2ImgRequest(prompt="x", steps=150))
    with pytest.raises(LimitExceeded, match="api_max_steps"):
        access.check_generation(Txt2ImgRequest(prompt="x", steps=151))
    with pytest.raises(AccessDenied, match="outdir_txt2img_samples"):
        access.check_generation(Txt2ImgRequest(prompt="x", override_settings={"outdir_txt2img_samples": "/tmp"}))


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((64, 64, 1.3, 0, 0), HiresSize(80, 80, 80, 80)),  # floored to the latent grid
        ((64, 96, 2.0, 100, 0), HiresSize(96, 144, 96, 144)),  # width given, height follows
        ((96, 64, 2.0, 0, 100), HiresSize(144, 96, 144, 96)),
        ((64, 128, 2.0, 128, 128), HiresSize(128, 256, 128, 128)),  # cover the box, then crop
        ((128, 64, 2.0, 128, 128), HiresSize(256, 128, 128, 128)),
    ],
)
def test_hires_size(size: tuple[int, int, float, int, int], expected: HiresSize) -> None:
    assert hires_size(*size) == expected


def test_hires_size_too_small_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        checked_hires_size(64, 64, 0.5, 0, 0)


def test_running_control_is_the_own_jobs_never_another_threads() -> None:
    queue = LocalJobQueue()
    seen: dict[str, JobControl | None] = {}
    outside = threading.Thread(target=lambda: seen.update(outside=running_control()))
    try:
        job = queue.submit("txt2img", lambda control: running_control() is control)
        assert job.wait(10) is True
        outside.start()
        outside.join(10)
        assert seen == {"outside": None} and running_control() is None
    finally:
        queue.shutdown()
