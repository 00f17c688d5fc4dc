"""The operator console: one page and its assets, served by the sidecar itself.

The files ship in the wheel (``earmark/api/console/``) and load from this origin only:
the Content-Security-Policy forbids every other source, so the page works with no
internet and cannot send a request elsewhere. The page needs no key to load; its data
comes from ``/v1`` with the key the operator enters (kept in the browser session).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.responses import Response

from earmark.errors import RouteNotFound

router = APIRouter(prefix="/console", include_in_schema=False)

ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _read(name: str) -> bytes:
    return (resources.files("earmark.api") / "console" / name).read_bytes()


@router.get("")
async def console_page() -> Response:
    return Response(_read("index.html"), media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/assets/{name}")
async def console_asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise RouteNotFound(f"no console asset {name!r}")
    return Response(_read(name), media_type=media_type, headers=HEADERS)
