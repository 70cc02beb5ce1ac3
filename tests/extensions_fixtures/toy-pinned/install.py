# A1111 pattern: install.py asks launch.run_pip for requirements, one of which conflicts with a
# core package of the web UI (like `transformers<5`) and one would downgrade a package another
# extension installed (like `protobuf<4`). The web UI installs the rest and reports the two.
import os

import launch

here = os.path.dirname(os.path.abspath(__file__))
if not launch.is_installed("toyextra"):
    launch.run_pip(f"install -r {os.path.join(here, 'requirements-toy.txt')}", "toy-pinned requirements")
print("toy-pinned install.py done")
