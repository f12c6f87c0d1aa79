"""Gradio components of the app's own, and the app's Blocks (`AppBlocks`).

Gradio writes a type stub (`components.pyi`) next to any module that subclasses a component;
it is kept in git and shipped in the wheel, so that an uninstall removes it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr

from vittle.files import write_bytes_atomic

logger = logging.getLogger(__name__)

REFUSED_FILE = ("This request names a file that was not uploaded to this server, so it cannot be used. Upload the file "
                "first (in Python: gradio_client.handle_file(path) does it).")


class AppBlocks(gr.Blocks):
    """gr.Blocks that refuses a request naming a file the server did not receive as an upload
    in one log line and a message without server paths. Gradio's own refusal prints a traceback
    and tells the client the file's absolute path on the server (a relative name is joined to the
    server's working directory)."""

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], state: Any, explicit_call: bool = False) -> Any:
        from gradio.exceptions import InvalidPathError

        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except InvalidPathError as err:
            logger.warning("refused a request to %s: %s", block_fn.api_name or block_fn.name, str(err).splitlines()[0][:300])
            raise gr.Error(REFUSED_FILE, title="File not uploaded", print_exception=False) from None


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


class ServedImage(gr.Image):
    """gr.Image for an output image that several responses may serve at once. Gradio names a
    saved image by the hash of its bytes and rewrites that file in place each time it saves
    it, so identical queries sent together could download a file while another request was
    rewriting it (truncated or empty). Here each file is written once, atomically, and never
    rewritten."""

    is_template = True  # rendered by the frontend's Image component

    def postprocess(self, value: Any) -> Any:
        import numpy as np
        import PIL.Image
        from gradio.data_classes import ImageData
        from gradio.processing_utils import encode_pil_to_bytes, hash_bytes

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
