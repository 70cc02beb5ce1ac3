"""Calling a live server's Gradio events the way a client of Gradio's own API does
(`gradio_client`, /gradio_api/queue/...), by published api_name or by the elem_id of the control
that triggers the event, with every other input at the value the page shows."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gradio_client import Client


def gradio_client(url: str, auth: tuple[str, str] | None = None) -> Client:
    headers = None
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers = {"Authorization": f"Basic {token}"}
    return Client(url.rstrip("/") + "/", verbose=False, headers=headers, download_files=False, analytics_enabled=False)


@dataclass
class GradioEvent:
    client: Client
    fn_index: int
    inputs: list[int]  # component ids
    outputs: list[int]

    def defaults(self) -> list[Any]:
        values = {c["id"]: c.get("props", {}).get("value") for c in self.client.config["components"]}
        return [values.get(i) for i in self.inputs]

    def args(self, values_by_elem_id: Mapping[str, Any]) -> list[Any]:
        """The input values: the page's, with these (by elem_id) changed."""
        ids = {elem_id_of(self.client, i): n for n, i in enumerate(self.inputs)}
        args = self.defaults()
        for elem_id, value in values_by_elem_id.items():
            args[ids[elem_id]] = value
        return args

    def call(self, values_by_elem_id: Mapping[str, Any]) -> dict[str, Any]:
        """Run the event with these inputs (by elem_id) changed; -> outputs by elem_id (or id)."""
        result = self.client.predict(*self.args(values_by_elem_id), fn_index=self.fn_index)
        results = result if isinstance(result, (list, tuple)) else [result]
        return {elem_id_of(self.client, i) or str(i): v for i, v in zip(self.outputs, results, strict=False)}


def elem_id_of(client: Client, component_id: int) -> str | None:
    for component in client.config["components"]:
        if component["id"] == component_id:
            return component.get("props", {}).get("elem_id")
    return None


def event(client: Client, trigger_elem_id: str, trigger: str) -> GradioEvent:
    """The event `trigger` ("click", "change") of the control with this elem_id."""
    ids = {c["id"] for c in client.config["components"] if c.get("props", {}).get("elem_id") == trigger_elem_id}
    for index, dep in enumerate(client.config["dependencies"]):
        if any(t[0] in ids and t[1] == trigger for t in dep["targets"]):
            return GradioEvent(client, dep.get("id", index), list(dep["inputs"]), list(dep["outputs"]))
    raise LookupError(f"no {trigger} event on #{trigger_elem_id}")


def named_event(client: Client, api_name: str) -> GradioEvent:
    for index, dep in enumerate(client.config["dependencies"]):
        if dep.get("api_name") == api_name:
            return GradioEvent(client, dep.get("id", index), list(dep["inputs"]), list(dep["outputs"]))
    raise LookupError(f"no event published as {api_name!r}")
