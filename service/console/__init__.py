"""The operator's web console at `/console`: a static page and its script, a client of
the admin API like any other.

The script keeps the admin token in its memory, from sign-in to sign-out or a
reload, and sends it as a bearer header to `/admin/v1`, so the server keeps no
session and sets no cookie: no other site can make a signed-in browser act
(nothing is sent without the script), and the API's guard and tests stay the one
way in. Not in `sessionStorage`: other pages of this origin could read it there,
and `/schema`'s API browsers load scripts from public CDNs. Every value the page
shows is set as text, never parsed as markup, and the Content-Security-Policy
below allows scripts, styles and requests to this origin only, so a tenant named
like an HTML tag stays a name.

The files are read once, at import, and served from memory with an ETag."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from litestar import Request, Response, Router, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect

_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


def _load(name: str, media_type: str) -> _Asset:
    """The file ``name`` of this package (a text type's charset, UTF-8, is added by
    Litestar)."""
    body = resources.files(__package__).joinpath(name).read_bytes()
    return _Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


_PAGE: Final = _load("index.html", "text/html")
_ASSETS: Final = {
    "app.js": _load("app.js", "text/javascript"),
    "app.css": _load("app.css", "text/css"),
    # Linked from the page: else the browser asks for /favicon.ico, which is not ours.
    "favicon.svg": _load("favicon.svg", "image/svg+xml"),
}


def _served(asset: _Asset, request: Request[Any, Any, State]) -> Response[bytes]:
    # Revalidated on every load (no-cache), so an upgrade is seen at once; unchanged
    # files cost a 304.
    headers = _SECURITY_HEADERS | {"ETag": asset.etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@get("/console", include_in_schema=False, sync_to_thread=False)
def console_page(request: Request[Any, Any, State]) -> Response[bytes] | Redirect:
    # The page names its files and the API relative to itself (`console/app.js`,
    # `admin/v1/...`), so it works under a proxy's path prefix too; from `/console/`
    # (which the router takes for `/console`) they would resolve one level down.
    # The router has stripped the slash from `path`; the request's own bytes keep it.
    if request.scope.get("raw_path", b"").endswith(b"/"):
        return Redirect("../console")
    return _served(_PAGE, request)


@get("/console/{name:str}", include_in_schema=False, sync_to_thread=False)
def console_asset(name: FromPath[str], request: Request[Any, Any, State]) -> Response[bytes]:
    asset = _ASSETS.get(name)
    if asset is None:
        raise NotFoundException(f"no console file {name!r}")
    return _served(asset, request)


console = Router(path="/", route_handlers=[console_page, console_asset])
