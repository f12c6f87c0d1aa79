"""Gradio components of the app's own.

Gradio writes a type stub (`components.pyi`) next to any module that subclasses a component;
it is kept in git and shipped in the wheel, so that an uninstall removes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from vittle.files import write_bytes_atomic

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


class ServedImage(gr.Image):
    """gr.Image for an output image that several responses may serve at once. Gradio names a
    saved image by the hash of its bytes and rewrites that file in place each time it saves
    it, so identical queries sent together could download a file while another request was
    rewriting it (truncated or empty). Here each file is written once, atomically, and never
    rewritten."""

    is_template = True  # rendered by the frontend's Image component

    def postprocess(self, value: Any) -> Any:
        import numpy as np  # heavy
        watermarked = self.watermark is not None and getattr(self.watermark, "watermark", None) is not None
        if watermarked or not isinstance(value, PIL.Image.Image | np.ndarray):
            return super().postprocess(value)
        image = value if isinstance(value, PIL.Image.Image) else PIL.Image.fromarray(value)
        kind = (self.format or "webp").lower()
        data = encode_pil_to_bytes(image, kind)
        path = (Path(self.GRADIO_CACHE) / hash_bytes(data) / f"image.{kind}").resolve()
        if not path.is_file():  # the same bytes under the same name: a file already there is left alone
            write_bytes_atomic(path, data)
        return ImageData(path=str(path), orig_name=path.name)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component