"""Gradio components of the app's own, and the app's Blocks (`AppBlocks`).

Gradio writes a type stub (`components.pyi`) next to any module that subclasses a component;
it is kept in git and shipped in the wheel, so that an uninstall removes it.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import gradio as gr
import PIL.Image
from gradio.data_classes import GradioModel, ImageData
from gradio.exceptions import InvalidPathError
from gradio.processing_utils import encode_pil_to_bytes, hash_bytes

from vittle.files import write_bytes_atomic

logger = logging.getLogger(__name__)

REFUSED_FILE = ("This request names a file that was not uploaded to this server, so it cannot be used. Upload the file "
                "first (in Python: gradio_client.handle_file(path) does it).")


class AppBlocks(gr.Blocks):
    """gr.Blocks with the app's rules for what a request may send:

    - a file input takes an upload only: a request naming a file the server did not receive
      (a server path, a URL, a plain string) is refused in one log line and a message without
      server paths. Gradio's own refusal prints a traceback and tells the client the file's
      absolute path on the server; a URL it would download with no size limit;
    - inputs added to an event after its first release keep older clients working: a request
      with fewer values than the event has inputs gets the callback's defaults for the
      trailing ones (raw HTTP clients send the values they know; gradio_client fills them itself).
    """

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], state: Any, explicit_call: bool = False) -> Any:
        name = block_fn.api_name or block_fn.name
        defaults = trailing_defaults(block_fn, len(inputs))
        if defaults:  # the components' own values pass their checks; the callback then gets its defaults
            inputs = [*inputs, *(getattr(block, "value", None) for block in block_fn.inputs[len(inputs):])]
        for block, value in zip(block_fn.inputs, inputs):
            if takes_file(block) and (why := not_an_upload(value)):
                logger.warning("refused a request to %s: %s", name, why)
                raise gr.Error(REFUSED_FILE, title="File not uploaded", print_exception=False)
        try:
            processed = await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except InvalidPathError as err:
            logger.warning("refused a request to %s: %s", name, str(err).splitlines()[0][:300])
            raise gr.Error(REFUSED_FILE, title="File not uploaded", print_exception=False) from None
        return [*processed[:len(processed) - len(defaults)], *defaults] if defaults else processed


def trailing_defaults(block_fn: Any, sent: int) -> list[Any]:
    """The defaults of the callback's parameters for the inputs a request did not send (it
    sent `sent` values); [] when it sent them all, or when a missing one has no default (Gradio
    then says which values are missing)."""
    wanted = len(block_fn.inputs)
    if sent >= wanted or block_fn.fn is None:
        return []
    try:
        parameters = [p for p in inspect.signature(block_fn.fn).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return []
    missing = parameters[sent:wanted]
    if len(missing) != wanted - sent or any(p.default is p.empty for p in missing):
        return []
    return [p.default for p in missing]


def takes_file(block: Any) -> bool:
    """Whether the input component's value is a file (an image, a file upload)."""
    model = getattr(block, "data_model", None)  # FileData, ImageData, ...: a model with a path
    return isinstance(model, type) and issubclass(model, GradioModel) and "path" in model.model_fields


def not_an_upload(value: Any) -> str:
    """Why a file input's value is not a file uploaded to this server ("" when it may be one:
    Gradio then checks that its path lies in the upload folder)."""
    if value is None:
        return ""
    if not isinstance(value, dict):
        return f"a file input sent as {type(value).__name__}, not as an uploaded file"
    path = value.get("path")
    if not isinstance(path, str) or not path:
        return "a file input without a path"
    if "://" in path[:16] or path.startswith("data:"):
        return f"a file input naming a URL ({path[:80]!r}): the server takes uploads only"
    return ""


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
