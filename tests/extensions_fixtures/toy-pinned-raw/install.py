# An install.py that runs pip itself (not launch.run_pip): PIP_CONSTRAINT still keeps it from
# downgrading an installed package, so pip refuses and the installer is reported as failed.
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "pip", "install", "toyshared==1.0"])
