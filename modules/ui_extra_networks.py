"""A1111's `modules.ui_extra_networks` for extensions: ExtraNetworksPage and register_page.

Pages extensions register are kept on the app (`extra_pages`); the Extra networks panel of
txt2img and img2img shows each as a tab of cards after the app's own pages
(modules/ui/extra_networks_pages.py reads `list_items()`: name, prompt, preview, description).
"""

from __future__ import annotations

import html
import json
import os
import urllib.parse
from collections.abc import Iterator
from typing import Any

from modules.extension_host.facade import Lazy, current

__all__ = ["ExtraNetworksPage", "extra_pages", "quote_js", "register_page"]

extra_pages = Lazy(lambda: current().extra_pages)


def quote_js(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def register_page(page: Any) -> None:
    """Register an extension's page: a tab of the Extra networks panel (see the module docstring)."""
    extra_pages.append(page)


class ExtraNetworksPage:
    """Base class of A1111 extra network pages; subclasses implement list_items()."""

    def __init__(self, title: str):
        self.title = title
        self.name = title.lower()
        self.extra_networks_tabname = self.name.replace(" ", "_")
        self.id_page = self.name.replace(" ", "_")
        self.allow_prompt = True
        self.allow_negative_prompt = False
        self.items: dict[str, Any] = {}
        self.lister: Any = None
        self.metadata: dict[str, Any] = {}

    def refresh(self) -> None:
        pass

    def list_items(self) -> Iterator[dict[str, Any]]:
        return iter(())

    def allowed_directories_for_previews(self) -> list[str]:
        return []

    def link_preview(self, filename: str) -> str:
        quoted = urllib.parse.quote(filename.replace("\\", "/"))
        mtime = os.path.getmtime(filename) if os.path.exists(filename) else 0
        return f"./sd_extra_networks/thumb?filename={quoted}&mtime={mtime}"

    def search_terms_from_path(self, filename: str, possible_directories: list[str] | None = None) -> str:
        abspath = os.path.abspath(filename)
        for parentdir in possible_directories or self.allowed_directories_for_previews():
            parentdir = os.path.dirname(os.path.abspath(parentdir))
            if abspath.startswith(parentdir):
                return os.path.relpath(abspath, parentdir)
        return ""

    def find_preview(self, path: str) -> str | None:
        for ext in (".png", ".jpg", ".jpeg", ".webp", ".gif"):
            for candidate in (path + ext, path + ".preview" + ext):
                if os.path.isfile(candidate):
                    return self.link_preview(candidate)
        return None

    def find_description(self, path: str) -> str | None:
        for candidate in (f"{path}.txt", f"{path}.description.txt"):
            try:
                with open(candidate, encoding="utf-8", errors="replace") as f:
                    return f.read()
            except OSError:
                continue
        return None

    def create_html(self, tabname: str, *, empty: bool = False) -> str:
        names = [html.escape(str(item.get("name", ""))) for item in self.list_items()]
        return "".join(f"<div class='card'>{n}</div>" for n in names)
