import os

import launch

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "installed.marker"), "w") as handle:
    handle.write("installed\n")
print("hello from toy install.py; launch.is_installed('pip') =", launch.is_installed("pip"))
