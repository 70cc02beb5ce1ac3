"""Builds a tab's Extra networks panel: the card pages (modules.ui.extra_networks), search, sort,
refresh and the metadata editor of the card actions (modules.ui.extra_networks_edit)."""

from __future__ import annotations

import gradio as gr

from modules.networks.catalogue import NetworkCatalogue
from modules.ui.common import UiContext, tool_button
from modules.ui.extra_networks import PAGES, SORTS, ExtraNetworksPanel, cards_html, page_cards
from modules.ui.extra_networks_edit import build_metadata_editor


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
        with gr.Tabs(elem_id=f"{tab}_extra_tabs"):
            for label, page in PAGES:
                with gr.Tab(label, id=f"{tab}_{page}", elem_id=f"{tab}_{page}", render_children=True):
                    html_cards = cards_html(tab, page, page_cards(catalogue, page, multiplier, checkpoints))
                    pages.append((page, gr.HTML(html_cards)))
        action = gr.Textbox(visible="hidden", elem_id=f"{tab}_extra_action")
        trigger = gr.Button(visible="hidden", elem_id=f"{tab}_extra_action_button")
        panel = ExtraNetworksPanel(tab, catalogue, multiplier, search, sort, pages, action, trigger)
        build_metadata_editor(ctx, panel)

    def render(query: str, order: str, rescan: bool) -> list[str]:
        return panel.render(ctx, query, order, rescan)

    outputs = panel.page_outputs
    search.change(lambda q, o: render(q, o, False), inputs=[search, sort], outputs=outputs, show_progress="hidden")
    sort.change(lambda q, o: render(q, o, False), inputs=[search, sort], outputs=outputs, show_progress="hidden")
    refresh.click(lambda q, o: render(q, o, True), inputs=[search, sort], outputs=outputs)
    ctx.targets.extra_networks[tab] = panel
    return panel
