"""A1111's `modules.cmd_args` for extensions: `parser`, the web UI's argument parser.

It is a fresh parser with every flag the web UI knows (extensions read its defaults or
`parse_known_args`); the flags of the running app are `shared.cmd_opts`. Extensions add their
own flags in preload.py, which gets the parser the app really parses.
"""

from __future__ import annotations

from modules.core.cmd_args import build_parser

__all__ = ["parser"]

parser = build_parser()
