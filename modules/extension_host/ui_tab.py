"""The Extensions tab (Gradio): Installed, Available, Install from URL, Problems.

`ExtensionsTab` holds the actions as plain methods (testable without a browser);
`build_extensions_tab(host)` lays them out inside the caller's "Extensions" tab. Changes take effect
after a restart, as in A1111 ("Apply and restart UI" there). With --listen and without
--enable-insecure-extension-access the changing buttons are disabled and the reason is shown.
"""

from __future__ import annotations

import datetime
import html
import inspect
from typing import Any

from modules.extension_host.gitops import ExtensionError
from modules.extension_host.host import ExtensionHost
from modules.extension_host.index import ExtensionIndexError, normalize_git_url


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _date(timestamp: int | None) -> str:
    if not timestamp:
        return ""
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


class ExtensionsTab:
    def __init__(self, host: ExtensionHost):
        self.host = host

    # --- Installed -----------------------------------------------------------------------------
    def names(self) -> list[str]:
        return [i.name for i in self.host.installed()]

    def enabled_names(self) -> list[str]:
        return [i.name for i in self.host.installed() if i.enabled]

    def installed_html(self) -> str:
        rows = []
        for item in self.host.installed():
            git = item.git
            problems = "<br>".join(_esc(p) for p in item.problems)
            rows.append(
                "<tr>"
                f"<td>{_esc(item.name)}{' (built-in)' if item.is_builtin else ''}</td>"
                f"<td>{'yes' if item.enabled else 'no'}</td>"
                f"<td>{_esc(git.remote)}</td><td>{_esc(git.branch)}</td>"
                f"<td>{_esc(git.version)}</td><td>{_esc(_date(git.commit_date))}</td>"
                f"<td class='extension-problems'>{problems}</td>"
                "</tr>"
            )
        head = "<tr><th>Extension</th><th>Enabled</th><th>URL</th><th>Branch</th><th>Version</th><th>Date</th><th>Problems</th></tr>"
        body = "".join(rows) or "<tr><td colspan='7'>No extensions installed.</td></tr>"
        return f"<table id='extensions_installed_table'>{head}{body}</table>"

    def apply_enabled(self, enabled: list[str], disable_all: str) -> str:
        names = self.names()
        for name in names:
            self.host.set_enabled(name, name in set(enabled or []))
        self.host.set_disable_all(disable_all or "none")
        return "Saved. Restart the web UI to load the changes."

    def check_updates(self) -> str:
        try:
            statuses = self.host.check_updates()
        except ExtensionError as exc:
            return _esc(exc)
        return "<br>".join(f"{_esc(n)}: {_esc(s)}" for n, s in statuses.items()) or "No user extensions installed."

    def update(self, name: str) -> str:
        if not name:
            return "Choose an extension."
        try:
            info = self.host.update(name)
        except ExtensionError as exc:
            return _esc(exc)
        return f"Updated {_esc(name)} to {_esc(info.version)}. Restart the web UI to load it."

    def remove(self, name: str) -> str:
        if not name:
            return "Choose an extension."
        try:
            self.host.remove(name)
        except ExtensionError as exc:
            return _esc(exc)
        return f"Removed {_esc(name)}. Restart the web UI to unload it."

    # --- Install from URL ----------------------------------------------------------------------
    def install(self, url: str, branch: str, folder: str) -> tuple[str, str]:
        """(message, installer output)."""
        try:
            outcome = self.host.install(url, branch=branch or None, folder=folder or None)
        except ExtensionError as exc:
            return _esc(exc), ""
        state = "" if outcome.installer_ok else " Its installer failed: see the output."
        message = f"Installed into extensions/{_esc(outcome.name)}.{state} Restart the web UI to load it."
        return message, outcome.output

    # --- Available -----------------------------------------------------------------------------
    def is_admin(self, user: str | None) -> bool:
        """Managing extensions (and loading an index, which makes the server fetch a URL) is for
        admins: without logins or without an admin list everyone is one (as in the API routes)."""
        return bool(self.host.services.access.may_change_settings(user))  # the one admin rule

    def available_html(self, url: str, tag: str, hide_installed: bool, search: str) -> str:
        try:
            data, entries = self.host.available(
                url or None, only_tags=[tag] if tag else [], hide_installed=hide_installed, search=search or ""
            )
        except (ExtensionIndexError, ExtensionError) as exc:
            return f"<p class='error'>{_esc(exc)}</p>"
        installed = {normalize_git_url(i.git.remote) for i in self.host.installed()}
        rows = []
        for entry in entries:
            tags = ", ".join(entry.tags)
            done = "installed" if normalize_git_url(entry.url) in installed else ""
            rows.append(
                f"<tr><td><a href='{_esc(entry.url)}' target='_blank' rel='noopener'>{_esc(entry.name)}</a></td>"
                f"<td>{_esc(entry.description)}</td><td>{_esc(tags)}</td><td>{_esc(entry.url)}</td><td>{done}</td></tr>"
            )
        head = "<tr><th>Extension</th><th>Description</th><th>Tags</th><th>URL</th><th></th></tr>"
        return f"<table id='extensions_available_table'>{head}{''.join(rows)}</table><p>{len(rows)} shown</p>"

    # --- Problems ------------------------------------------------------------------------------
    def problems_html(self) -> str:
        items = self.host.problem_list()
        if not items:
            return "<p>No problems reported.</p>"
        lines = "".join(f"<li><b>{_esc(p.extension)}</b> — {_esc(p.where)}: {_esc(p.error)}</li>" for p in items)
        return f"<ul id='extensions_problems'>{lines}</ul>"


ADMINS_ONLY = "<p class='error'>Only administrators may manage extensions on this server.</p>"


def admins_only(tab: ExtensionsTab, action: Any, gr: Any, refused: Any = ADMINS_ONLY) -> Any:
    """`action` as a Gradio handler that also receives the request and runs only for admins
    (the API routes' rule: with an admin list, only its users); others get `refused`."""
    params = list(inspect.signature(action).parameters.values())

    def handler(*args: Any) -> Any:
        *values, request = args
        if not tab.is_admin(getattr(request, "username", None)):
            return refused
        return action(*values)

    request_param = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    handler.__signature__ = inspect.Signature([*params, request_param])  # type: ignore[attr-defined]
    handler.__annotations__ = {"request": gr.Request}  # Gradio passes the request to this parameter
    return handler


def build_extensions_tab(host: ExtensionHost) -> ExtensionsTab:
    """Create the tab's content inside the caller's "Extensions" `gr.Tab` (app.py makes the tab,
    as for every other tab); returns the actions object."""
    import gradio as gr

    tab = ExtensionsTab(host)
    allowed = host.access.allowed
    with gr.Tabs(elem_id="tabs_extensions"):
        if not allowed:
            gr.HTML(f"<p class='warning'>{_esc(host.access.reason)}</p>", elem_id="extensions_disabled_reason")
        with gr.Tab("Installed", id="extensions_installed"):
            with gr.Row():
                apply = gr.Button(
                    "Apply (restart needed)", variant="primary", interactive=allowed, elem_id="extensions_apply"
                )
                check = gr.Button("Check for updates", interactive=allowed, elem_id="extensions_check")
            enabled = gr.CheckboxGroup(
                tab.names(), value=tab.enabled_names(), label="Enabled extensions", elem_id="extensions_enabled"
            )
            disable_all = gr.Radio(
                ["none", "extra", "all"], value=host.disable_mode().value, label="Disable all extensions"
            )
            table = gr.HTML(tab.installed_html(), elem_id="extensions_installed_html")
            with gr.Row():
                chosen = gr.Dropdown(tab.names(), label="Extension", elem_id="extensions_chosen")
                update = gr.Button("Update", interactive=allowed, elem_id="extensions_update")
                remove = gr.Button("Remove", variant="stop", interactive=allowed, elem_id="extensions_remove")
            result = gr.HTML(elem_id="extensions_result")
            apply.click(admins_only(tab, tab.apply_enabled, gr), inputs=[enabled, disable_all], outputs=[result])
            check.click(admins_only(tab, tab.check_updates, gr), outputs=[result])
            update.click(admins_only(tab, tab.update, gr), inputs=[chosen], outputs=[result]).then(
                tab.installed_html, outputs=[table]
            )
            remove.click(admins_only(tab, tab.remove, gr), inputs=[chosen], outputs=[result]).then(
                tab.installed_html, outputs=[table]
            )
        with gr.Tab("Available", id="extensions_available"):
            with gr.Row():
                index_url = gr.Textbox(
                    label="Extension index URL (http(s); empty: the configured index)", elem_id="extensions_index_url"
                )
                load = gr.Button("Load from:", elem_id="extensions_load")
            with gr.Row():
                tag = gr.Textbox(label="Only this tag", elem_id="extensions_tag")
                hide_installed = gr.Checkbox(True, label="Hide installed")
                search = gr.Textbox(label="Search", elem_id="extensions_search")
            listing = gr.HTML(elem_id="extensions_available_html")
            load.click(
                admins_only(tab, tab.available_html, gr),
                inputs=[index_url, tag, hide_installed, search],
                outputs=[listing],
            )
        with gr.Tab("Install from URL", id="extensions_install"):
            url = gr.Textbox(label="URL for extension's git repository", elem_id="extensions_install_url")
            branch = gr.Textbox(label="Specific branch name (empty for default)", elem_id="extensions_install_branch")
            folder = gr.Textbox(
                label="Local directory name (empty for automatic)", elem_id="extensions_install_dirname"
            )
            install = gr.Button("Install", variant="primary", interactive=allowed, elem_id="extensions_install_button")
            message = gr.HTML(elem_id="extensions_install_result")
            output = gr.Textbox(
                label="Installer output", lines=8, interactive=False, elem_id="extensions_install_output"
            )
            install.click(
                admins_only(tab, tab.install, gr, (ADMINS_ONLY, "")),
                inputs=[url, branch, folder],
                outputs=[message, output],
            )
        with gr.Tab("Problems", id="extensions_problems_tab"):
            problems = gr.HTML(tab.problems_html(), elem_id="extensions_problems_html")
            gr.Button("Refresh", elem_id="extensions_problems_refresh").click(tab.problems_html, outputs=[problems])
    return tab
