"""Extra networks pages that extensions register (A1111's `ui_extra_networks.register_page`).

Each page is a tab of the panel after the app's own pages. Its cards come from the page's
`list_items()` (A1111 item dicts): `name`, `prompt` (A1111 writes it as a JavaScript expression:
quoted strings joined with `+`, e.g. `"<x:" + opts.extra_networks_default_multiplier + ">"`;
evaluated here from the settings), `negative_prompt`, `description`, `filename` and `preview` /
`local_preview` — a preview file is shown only when it lies in one of the page's
`allowed_directories_for_previews()`, as A1111's thumbnail route requires.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules.networks.catalogue import Card
from modules.ui.extra_networks import CardData

log = logging.getLogger(__name__)

_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|opts\.(\w+))\s*(?:\+|$)')
_THUMB_URL = "sd_extra_networks/thumb?"


@dataclass(frozen=True)
class ExtensionPage:
    page_id: str  # "ext_<page id>": the tab id and the cards' data-page
    label: str
    page: Any  # the extension's ExtraNetworksPage
    owner: str  # the extension (named when its code fails)


def extension_pages(host: Any) -> list[ExtensionPage]:
    """The registered pages, each once (by title), in registration order."""
    out: dict[str, ExtensionPage] = {}
    for page in list(getattr(host, "extra_pages", None) or []):
        page_id = "ext_" + re.sub(r"[^a-z0-9_]", "_", str(getattr(page, "id_page", "") or page.title).lower())
        out.setdefault(page_id, ExtensionPage(page_id, str(page.title), page, _owner(page)))
    return list(out.values())


def _owner(page: Any) -> str:
    try:
        path = Path(inspect.getfile(type(page)))
    except (TypeError, OSError):
        return type(page).__module__
    return path.parent.parent.name if path.parent.name == "scripts" else path.stem


def js_prompt(expression: Any, settings: Mapping[str, Any]) -> str:
    """A1111's card prompt (a JavaScript string expression) as text; anything else as written."""
    text = str(expression or "")
    parts: list[str] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            return text  # not A1111's pattern: plain text
        if match[1] is not None:
            parts.append(json.loads(match[1]))
        else:
            value = settings.get(match[2], "")
            parts.append(f"{value:g}" if isinstance(value, float) else str(value))
        pos = match.end()
    return "".join(parts)


def _preview(item: Mapping[str, Any], allowed: list[Path]) -> Path | None:
    """The item's preview file when it is inside the page's allowed folders."""
    candidates = []
    url = str(item.get("preview") or "")
    if _THUMB_URL in url:
        query = urllib.parse.parse_qs(url.split("?", 1)[1])
        candidates += query.get("filename", [])
    if item.get("local_preview"):
        candidates.append(str(item["local_preview"]))
    for candidate in candidates:
        path = Path(candidate).resolve()
        if path.is_file() and any(path.is_relative_to(folder) for folder in allowed):
            return path
    return None


def extension_cards(page: ExtensionPage, options: Any, problems: Any) -> list[CardData]:
    """The page's cards (`options`: the app's settings, read when listed); a failing
    `list_items()` (extension code) gives none and is reported."""
    settings = options.as_dict()
    try:
        items = list(page.page.list_items())
        allowed = [Path(d).resolve() for d in page.page.allowed_directories_for_previews() or []]
    except Exception as exc:  # boundary: an extension's page must not break the panel
        log.warning("extra networks page %r failed: %s", page.label, exc)
        if problems is not None:
            problems.report(page.owner, f"extra networks page {page.label}", exc)
        return []
    cards = []
    for item in items:
        if not isinstance(item, Mapping) or not item.get("name"):
            continue
        name = str(item["name"])
        tag = js_prompt(item.get("prompt") or json.dumps(name), settings)
        negative = js_prompt(item.get("negative_prompt") or "", settings)
        card = Card(_preview(item, allowed), str(item.get("description") or ""))
        cards.append(CardData(name, tag, negative, Path(str(item.get("filename") or name)), card, editable=False))
    return cards


def refresh_pages(pages: list[ExtensionPage], problems: Any) -> None:
    for page in pages:
        try:
            page.page.refresh()
        except Exception as exc:  # boundary: extension code
            if problems is not None:
                problems.report(page.owner, f"extra networks page {page.label} (refresh)", exc)
