"""toy-surface's JavaScript in a real browser: at onUiLoaded it fetches its own JSON through
`file=extensions/<name>/...` (tagcomplete's, dynamic prompts' pattern) and the page shows it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ui_harness import LiveServer, chromium, free_port, open_page, require_browser, serve

pytestmark = [pytest.mark.browser]

FIXTURES = Path(__file__).parent / "extensions_fixtures"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from modules.app.bootstrap import build_services
    from modules.core.cmd_args import parse_args
    from modules.core.devices import DevicePolicy
    from modules.extension_host import facade
    from modules.extension_host.preload import collect_preload_hooks
    from modules.server import build_app

    require_browser()
    data = tmp_path_factory.mktemp("surface-browser") / "data"
    shutil.copytree(FIXTURES / "toy-surface", data / "extensions" / "toy-surface")
    port = free_port()
    preload = collect_preload_hooks(data)
    args = parse_args(["--data-dir", str(data), "--port", str(port)], preload_hooks=preload.hooks)
    services = build_services(args, policy=DevicePolicy.cpu())
    host = facade.bind(
        services, run_installers=False, builtin_dir=data / "no-builtins", core_scripts_dir=None, preload=preload
    )
    server = serve(build_app(services, extension_host=host), services, port)
    try:
        yield server
    finally:
        server.stop()
        facade.unbind()


def test_extension_javascript_loads_its_json_through_file_route(live: LiveServer) -> None:
    with chromium() as context:
        errors: list[str] = []
        page = open_page(context, live.url, errors)
        page.wait_for_function("() => document.body.dataset.toySurfaceWords !== undefined", timeout=30000)
        assert page.evaluate("document.body.dataset.toySurfaceWords") == "red,blue,green"
        assert not [e for e in errors if "words.json" in e]
