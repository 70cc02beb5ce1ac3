"""Builds the ASGI application: FastAPI with the API routes and the Gradio UI mounted on it."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from modules.core.services import Services

log = logging.getLogger(__name__)


def build_app(services: Services) -> FastAPI:
    """The whole web application for these services (UI unless --nowebui, API with --api/--nowebui)."""
    args = services.args
    app = FastAPI(title="Stable Diffusion web UI", docs_url="/docs", redoc_url="/redoc")
    app.state.services = services

    @app.get("/internal/ping")
    def ping() -> dict[str, str]:
        return {}

    if args.api or args.nowebui:
        from modules.api.routes import register_api

        register_api(app, services)
    if not args.nowebui:
        import gradio as gr

        from modules.ui.app import create_ui

        demo = create_ui(services)
        app = gr.mount_gradio_app(app, demo, path="/")
    return app
