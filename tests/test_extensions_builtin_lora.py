"""`import lora` / `import networks` in extension code (A1111's built-in Lora extension puts them
on sys.path): the names real extensions read, e.g. Regional Prompter's postprocess."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

from modules.extension_host.extra_networks import ExtraNetworkParams
from modules.extension_host.job_context import job_context
from modules.extension_host.loader import ScriptFile, load_script_files
from modules.extension_host.problems import ProblemLog

SCRIPT = """
import lora
from modules.scripts import Script

IS_BEFORE_15 = "assign_lora_names_to_compvis_modules" in dir(lora)

class ReadsLoras(Script):
    def postprocess(self, p, processed, *args):
        import networks
        seen = [(n.name, n.te_multiplier, n.unet_multiplier, n.network_on_disk.alias) for n in lora.loaded_loras]
        lora.loaded_loras.clear()  # what Regional Prompter's unloader does
        return seen, len(networks.loaded_networks)
"""


def test_extension_code_imports_lora_and_sees_the_job_networks(tmp_path: Path) -> None:
    folder = tmp_path / "ext"
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "reads_loras.py").write_text(SCRIPT, encoding="utf-8")
    problems = ProblemLog()
    loaded = load_script_files(
        [ScriptFile(folder, folder / "scripts" / "reads_loras.py", "ext", "ext/reads_loras")], problems
    )
    try:
        assert problems.items() == [] and len(loaded.scripts) == 1
        module = next(iter(loaded.modules.values()))
        assert module.IS_BEFORE_15 is False
        script = loaded.scripts[0].cls()
        data = {"lora": [ExtraNetworkParams(["style", "0.8"]), ExtraNetworkParams(["detail", "1", "0.5"])]}
        with job_context(SimpleNamespace(extra_network_data=data), None):
            seen, left = script.postprocess(None, None)
        assert seen == [("style", 0.8, 0.8, "style"), ("detail", 1.0, 0.5, "detail")]
        assert left == 2  # clearing the list an extension got leaves the job's networks alone
        assert script.postprocess(None, None) == ([], 0)  # outside a job: no networks
    finally:
        loaded.unload()
    assert not any(entry.endswith("a1111_builtin") for entry in sys.path)  # only while loaded
