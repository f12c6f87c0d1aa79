"""ASGI middleware of the app's server: `PageMiddleware`, on the HTML pages only.

- **The page's own header.** HTML given as `header` (the app's introduction) is put before
  Gradio's `<gradio-app>` element, so that it is drawn at the first paint, before any of the
  app's scripts has run.
- **Compression.** Gradio compresses its scripts and styles, but not the page itself, which
  embeds the whole app's configuration and API description (about 140 KB). A page is sent
  gzip-compressed (about 20 KB) to a browser that accepts it: on a slow link this is the first
  thing a visitor waits for, before any script can start.
- **No API before login.** With `--auth`, Gradio's login page still embeds the whole API
  description (every endpoint, its parameters and docstrings) in the page it serves before
  anyone has logged in. That description is emptied in a page whose configuration asks for a
  login; the page after login, `/gradio_api/info` and the clients (which log in first) are
  unchanged.

Every other response (the API, the queue's event stream, files, assets) passes through as it is.
"""

from __future__ import annotations

import gzip
import re
from typing import Any

API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)
EMPTY_API_INFO = b'window.gradio_api_info = {"named_endpoints": {}, "unnamed_endpoints": {}};</script>'
LOGIN_PAGE = re.compile(rb'window\.gradio_config = \{"auth_required":\s*true')
COMPRESS_FROM_BYTES = 1024  # smaller pages are sent as they are
ACCEPTS_GZIP = re.compile(r"(?:^|,)\s*gzip\s*(?:;\s*q\s*=\s*(?P<q>[0-9.]+))?\s*(?:,|$)", re.IGNORECASE)


def hide_api_info(page: bytes) -> bytes:
    """`page` with its embedded API description emptied when it is the login page."""
    if not LOGIN_PAGE.search(page):
        return page
    return API_INFO.sub(lambda _: EMPTY_API_INFO, page, count=1)


def with_header(page: bytes, header: bytes) -> bytes:
    """`page` with `header` just before its `<gradio-app` element (unchanged without one)."""
    body = page.find(b"<body")
    at = page.find(b"<gradio-app", body if body >= 0 else 0)
    if not header or at < 0:
        return page
    return page[:at] + header + page[at:]


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header value accepts gzip (listed, and not with q=0)."""
    match = ACCEPTS_GZIP.search(accept_encoding)
    if match is None:
        return False
    try:
        return match.group("q") is None or float(match.group("q")) > 0
    except ValueError:
        return False


class PageMiddleware:
    """Rewrites the HTML pages (a GET of a page, not of the API): `with_header`, `hide_api_info`,
    then gzip when the request accepts it and the page is at least `COMPRESS_FROM_BYTES`."""

    def __init__(self, app: Any, header: str = ""):
        self.app = app
        self.header = header.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or "/gradio_api/" in scope.get("path", ""):
            await self.app(scope, receive, send)
            return
        request_headers = {key.lower(): value for key, value in scope.get("headers") or []}
        gzip_ok = accepts_gzip(request_headers.get(b"accept-encoding", b"").decode("latin-1"))
        state: dict[str, Any] = {"start": None, "through": False, "body": []}

        async def rewrite(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = {key.lower(): value for key, value in message.get("headers") or []}
                html = headers.get(b"content-type", b"").startswith(b"text/html") and not headers.get(b"content-encoding")
                if html:
                    state["start"] = message  # held until the whole body is read
                else:
                    state["through"] = True
                    await send(message)
                return
            if state["through"] or message["type"] != "http.response.body":
                await send(message)
                return
            state["body"].append(message.get("body", b""))
            if message.get("more_body"):
                return
            page = hide_api_info(with_header(b"".join(state["body"]), self.header))
            start = state["start"]
            vary = [v for k, v in start.get("headers", []) if k.lower() == b"vary"]
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"vary")]
            if not any(b"accept-encoding" in v.lower() for v in vary):
                vary.append(b"Accept-Encoding")
            headers.append((b"vary", b", ".join(vary)))
            if gzip_ok and len(page) >= COMPRESS_FROM_BYTES:
                page = gzip.compress(page, compresslevel=6, mtime=0)
                headers.append((b"content-encoding", b"gzip"))
            await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, rewrite)
