"""The web page at ``baco serve``'s root: ``GET /`` is ``static/index.html``, ``/static/*`` its CSS
and JavaScript (plain files in the package, no build step, nothing fetched from elsewhere).

The page is public (it asks for the API key itself); it talks only to the public API.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

STATIC = files("baco_local.serve") / "static"
NO_CACHE = {"Cache-Control": "no-cache"}  # a new version of baco serves its new page at once


def add_page(app: FastAPI) -> None:
    """Mount the page on ``app``: ``GET /`` and ``/static/...``."""

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response((STATIC / "index.html").read_bytes(), media_type="text/html; charset=utf-8",
                        headers=NO_CACHE)

    app.mount("/static", StaticFiles(packages=[("baco_local.serve", "static")]), name="static")
