"""The pages' static files (package data under ``pages/static``), the API-key check they share, and
FastAPI's docs page served from local files instead of a CDN.

Every page is a static HTML file with its own script and style sheet: the data reaches the page as
JSON and is put into the document with ``textContent`` only, so a chunk holding ``<script>`` shows
as text. The pages are sent with a Content-Security-Policy that allows scripts, styles and
connections from the page's own origin only (no inline script, no CDN).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/ui/static"
API_KEY_HEADER = "X-API-Key"  # the service's header (rag_runtime.service.API_KEY_HEADER)
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def page(name: str) -> FileResponse:
    """One of the HTML pages, with the pages' security headers."""
    return FileResponse(STATIC_DIR / name, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def mount_static(app: FastAPI) -> None:
    if not any(getattr(r, "path", None) == STATIC_URL for r in app.routes):
        app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="pages-static")


def key_checker(api_key: str | None):
    """A FastAPI dependency: 401 unless the request carries ``api_key`` in the ``X-API-Key`` header
    (no check when ``api_key`` is None)."""

    def check(request: Request) -> None:
        if api_key is None:
            return
        key = request.headers.get(API_KEY_HEADER)
        if not key:
            raise HTTPException(401, f"missing API key: send it in the {API_KEY_HEADER} header",
                                headers={"WWW-Authenticate": "APIKey"})
        if not secrets.compare_digest(key.encode(), api_key.encode()):
            raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "APIKey"})

    return check


def offline_docs(app: FastAPI) -> None:
    """Serve ``/docs`` (Swagger UI) and ``/redoc`` from the files of the ``fastapi-offline`` package,
    replacing FastAPI's pages, which load their scripts from a CDN and are blank offline."""
    try:
        import fastapi_offline
    except ImportError:  # optional: without it FastAPI's own (CDN) pages stay
        return
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    assets = Path(fastapi_offline.__file__).parent / "static"
    docs_url, redoc_url, openapi_url = app.docs_url or "/docs", app.redoc_url or "/redoc", app.openapi_url
    if openapi_url is None:
        return
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in (docs_url, redoc_url)]
    app.mount("/ui/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get(docs_url, include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - Swagger UI",
                                   swagger_js_url="/ui/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/ui/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/ui/docs-assets/favicon.png")

    @app.get(redoc_url, include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url="/ui/docs-assets/redoc.standalone.js",
                              redoc_favicon_url="/ui/docs-assets/favicon.png", with_google_fonts=False)
