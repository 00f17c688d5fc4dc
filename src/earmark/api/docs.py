"""``/docs`` (Swagger UI) and ``/redoc``, with their assets served by the sidecar.

FastAPI's defaults load the JavaScript, CSS, fonts and favicon from a CDN; an operator's
laptop on a launch-day network (or an air-gapped one) would get a blank page. The assets
ship in the wheel under ``api/static/`` (versions and licences: its README.md) and are
served under ``/static``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

STATIC_PATH = "/static"
SWAGGER_JS = f"{STATIC_PATH}/swagger-ui/swagger-ui-bundle.js"
SWAGGER_CSS = f"{STATIC_PATH}/swagger-ui/swagger-ui.css"
SWAGGER_FAVICON = f"{STATIC_PATH}/swagger-ui/favicon-32x32.png"
REDOC_JS = f"{STATIC_PATH}/redoc/redoc.standalone.js"


def install(app: FastAPI) -> None:
    """Mounts ``/static`` and the two pages (create the app with ``docs_url=None,
    redoc_url=None`` so FastAPI's CDN pages are not there too)."""
    app.mount(STATIC_PATH, StaticFiles(packages=[("earmark.api", "static")]), name="static")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=SWAGGER_JS,
            swagger_css_url=SWAGGER_CSS,
            swagger_favicon_url=SWAGGER_FAVICON,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=REDOC_JS,
            redoc_favicon_url=SWAGGER_FAVICON,
            with_google_fonts=False,
        )
