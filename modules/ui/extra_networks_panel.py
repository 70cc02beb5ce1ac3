"""Builds a tab's Extra networks panel: the card pages (modules.ui.extra_networks), search, sort,
refresh and the metadata editor of the card actions (modules.ui.extra_networks_edit)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import gradio as gr

from modules.networks.catalogue import NetworkCatalogue
from modules.ui.common import UiContext, tool_button
from modules.ui.extra_networks import PAGES, SORTS, CardData, ExtraNetworksPanel, cards_html, page_cards
from modules.ui.extra_networks_edit import build_metadata_editor
from modules.ui.extra_networks_pages import extension_cards, extension_pages, refresh_pages


def build_extra_networks(ctx: UiContext, tab: str, catalogue: NetworkCatalogue) -> ExtraNetworksPanel:
    """The panel (inside the caller's layout); it registers itself in ctx.targets.extra_networks
    so the card actions are wired once every tab's output panel exists."""
    multiplier = float(ctx.settings.get("extra_networks_default_multiplier", 1.0))
    with gr.Accordion("Extra networks", open=False, elem_id=f"{tab}_extra_networks"):
        with gr.Row(elem_id=f"{tab}_extra_networks_controls"):
            search = gr.Textbox(placeholder="Search...", show_label=False, elem_id=f"{tab}_extra_search", scale=4)
            sort = gr.Dropdown(list(SORTS), value="Name", show_label=False, elem_id=f"{tab}_extra_sort", scale=1)
            refresh = tool_button("🔄", f"{tab}_extra_refresh")
        checkpoints = ctx.services.models.list_checkpoints()
        pages = []
        host = ctx.extension_host
        problems = host.problems if host is not None else None
        ext_pages = extension_pages(host)
        ext_cards: dict[str, Callable[[], list[CardData]]] = {
            p.page_id: partial(extension_cards, p, ctx.services.options, problems) for p in ext_pages
        }
        with gr.Tabs(elem_id=f"{tab}_extra_tabs"):
            for label, page in [*PAGES, *((p.label, p.page_id) for p in ext_pages)]:
                with gr.Tab(label, id=f"{tab}_{page}", elem_id=f"{tab}_{page}", render_children=True):
                    found = (
                        ext_cards[page]() if page in ext_cards else page_cards(catalogue, page, multiplier, checkpoints)
                    )
                    pages.append((page, gr.HTML(cards_html(tab, page, found))))
        action = gr.Textbox(visible="hidden", elem_id=f"{tab}_extra_action")
        trigger = gr.Button(visible="hidden", elem_id=f"{tab}_extra_action_button")
        panel = ExtraNetworksPanel(tab, catalogue, multiplier, search, sort, pages, action, trigger)
        panel.extension_cards = ext_cards
        panel.extension_refresh = partial(refresh_pages, ext_pages, problems)
        build_metadata_editor(ctx, panel)

    def render(query: str, order: str, rescan: bool) -> list[str]:
        return panel.render(ctx, query, order, rescan)

    outputs = panel.page_outputs
    search.change(lambda q, o: render(q, o, False), inputs=[search, sort], outputs=outputs, show_progress="hidden")
    sort.change(lambda q, o: render(q, o, False), inputs=[search, sort], outputs=outputs, show_progress="hidden")
    refresh.click(lambda q, o: render(q, o, True), inputs=[search, sort], outputs=outputs)
    ctx.targets.extra_networks[tab] = panel
    return panel
