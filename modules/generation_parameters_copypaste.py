"""Old name of `modules.infotext_utils` (A1111 < 1.7); extensions still import it."""

from __future__ import annotations

from modules.infotext_utils import *  # noqa: F403
from modules.infotext_utils import __all__ as __all__
