"""The console's pages: ``/console`` (a redirect), ``/console/`` (index.html) and
``/console/static/{name}`` from this package's ``static/`` directory.

Invariants: a name is served only when it matches ``NAME`` (one path segment, a known
extension): no traversal, no dot files; the file is streamed (``sendfile``), never read
whole; the ETag comes from size and mtime, so a changed file is a new ETag; the index is
revalidated every time, assets are cached for an hour.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import falcon

from bleepstore.web.console.responses import ConsoleError

STATIC_DIR = Path(__file__).resolve().parent / "static"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*\.(js|css|html|svg|png|ico)$")
CONTENT_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
                 "html": "text/html; charset=utf-8", "svg": "image/svg+xml",
                 "png": "image/png", "ico": "image/x-icon"}
INDEX_CACHE = "no-cache"
ASSET_CACHE = "public, max-age=3600"


def _not_found(name: str) -> ConsoleError:
    return ConsoleError(404, "not_found", f"No console file {name}.")


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def serve(req: falcon.Request, resp: falcon.Response, root: Path, name: str,
          cache_control: str) -> None:
    if not NAME.fullmatch(name):
        raise _not_found(name)
    path = root / name
    try:
        st = path.stat()
    except OSError:
        raise _not_found(name) from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_found(name)
    etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
    resp.set_header("ETag", etag)
    resp.set_header("Cache-Control", cache_control)
    if _etag_matches(req.get_header("If-None-Match"), etag):
        resp.status = falcon.HTTP_304
        return
    resp.content_type = CONTENT_TYPES[name.rsplit(".", 1)[1]]
    resp.content_length = st.st_size
    if req.method != "HEAD":
        try:
            resp.stream = open(path, "rb")  # noqa: SIM115 - the server closes it
        except OSError:
            raise _not_found(name) from None


class ConsoleRedirect:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_302
        resp.set_header("Location", "/console/")
        resp.content_length = 0

    on_head = on_get


class ConsoleIndex:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or STATIC_DIR

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        serve(req, resp, self.root, "index.html", INDEX_CACHE)

    on_head = on_get


class ConsoleStatic:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or STATIC_DIR

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        serve(req, resp, self.root, name, ASSET_CACHE)

    on_head = on_get
