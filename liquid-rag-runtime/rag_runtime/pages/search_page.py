"""The search and ask page at ``/ui`` of the service (``rag_runtime serve``).

The page is static; it calls the service's own ``POST /search`` and ``POST /ask`` (``"stream":
true``, read as server-sent events from ``fetch``), so it runs under the same limits and API key as
any client. With a key set it asks for it once, keeps it in the tab's ``sessionStorage`` and sends
it in the ``X-API-Key`` header, never in a URL.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from rag_runtime.pages.assets import mount_static, offline_docs, page


def mount_search_page(app: FastAPI) -> FastAPI:
    """Add ``/ui`` (the page), ``/ui/static`` (its files) and the offline ``/docs`` to ``app``."""

    @app.get("/ui", include_in_schema=False)
    def search_page():
        return page("search.html")

    @app.get("/ui/", include_in_schema=False)
    def search_page_slash():
        return RedirectResponse("/ui")

    mount_static(app)
    offline_docs(app)
    return app
