"""ASGI middleware of the app's server.

`HideApiBeforeLogin`: with `--auth`, Gradio's login page still embeds the whole API description
(every endpoint, its parameters and docstrings) in the page it serves before anyone has logged
in. This empties that description in a page whose configuration asks for a login; the page after
login, `/gradio_api/info` and the clients (which log in first) are unchanged.
"""

from __future__ import annotations

import re
from typing import Any

API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)
EMPTY_API_INFO = b'window.gradio_api_info = {"named_endpoints": {}, "unnamed_endpoints": {}};</script>'
LOGIN_PAGE = re.compile(rb'window\.gradio_config = \{"auth_required":\s*true')


def hide_api_info(page: bytes) -> bytes:
    """`page` with its embedded API description emptied when it is the login page."""
    if not LOGIN_PAGE.search(page):
        return page
    return API_INFO.sub(lambda _: EMPTY_API_INFO, page, count=1)


class HideApiBeforeLogin:
    """Rewrites the HTML pages (a GET of a page, not of the API) with `hide_api_info`; every
    other response passes through as it is."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or "/gradio_api/" in scope.get("path", ""):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = {"start": None, "through": False, "body": []}

        async def rewrite(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
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
            page = hide_api_info(b"".join(state["body"]))
            start = state["start"]
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, rewrite)
