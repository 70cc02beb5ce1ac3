# sd-dynamic-prompts' pattern: install.py runs pip itself for a requirement with extras, and one
# extra needs an older core package (dynamicprompts[magicprompt] needs transformers<5). The web UI
# installs the requirement without that extra, reports the extra, and runs install.py again.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("toyext") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "toyext[heavy,light]==1.0"])
