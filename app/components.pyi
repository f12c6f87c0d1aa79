"""A Gradio component of the app's own.

Gradio writes a type stub (`components.pyi`) next to any module that subclasses a component;
it is generated, so it is not kept in git.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from gradio.events import Dependency

class QueryImage(gr.Image):
    """gr.Image that hands the uploaded file's path to the callback without opening it, so
    that a broken file, or a decompression bomb, is reported by the app's own checks
    (`vittle.app.inputs.load_query_image`) with a clear message."""

    is_template = True  # rendered by the frontend's Image component

    def preprocess(self, payload: Any) -> Any:
        if payload is not None and getattr(payload, "path", None):
            return str(payload.path)
        try:
            return super().preprocess(payload)
        except Exception as err:  # a malformed inline (base64) image
            raise gr.Error(f"The image could not be read: {err}") from err
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component