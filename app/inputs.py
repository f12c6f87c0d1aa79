"""Checking what a user sends before any model sees it: images and questions.

Everything here raises `InputError`, whose message is written for the person at the
keyboard (the UI shows it as is). No model or torch import: the checks are cheap.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vittle.app.limits import MAX_UPLOAD_BYTES

MAX_IMAGE_PIXELS = 25_000_000
"""Larger images are refused before they are decoded (a 20000 x 20000 PNG is 400 MP)."""
WORKING_SIDE = 1024
"""Images are shrunk to at most this side before perturbation (the models see 224 px)."""
MAX_QUESTION_CHARS = 2000
IMAGE_PLACEHOLDER = "<image>"


class InputError(ValueError):
    """Input the app cannot use; the message says what is wrong and what to do."""


@dataclass
class QueryImage:
    image: Image.Image
    """8-bit RGB, at most WORKING_SIDE on each side."""
    notes: list[str]
    """What was done to make it usable (first frame of an animation, alpha flattened...)."""


def _human(count: int) -> str:
    return f"{count / 1e6:.1f} MP" if count >= 1e6 else f"{count:,} pixels"


def load_query_image(path: str | os.PathLike | None, max_bytes: int = MAX_UPLOAD_BYTES,
                     max_pixels: int = MAX_IMAGE_PIXELS) -> QueryImage | None:
    """Open an uploaded file as an RGB image, or raise InputError saying why it cannot be used.
    None in, None out (a question without an image)."""
    if path is None or str(path) == "":
        return None
    path = Path(path)
    if not path.is_file():
        raise InputError("The uploaded image could not be found on the server; please upload it again.")
    size = path.stat().st_size
    if size == 0:
        raise InputError("The uploaded file is empty (0 bytes).")
    if size > max_bytes:
        raise InputError(f"The uploaded file is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB.")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below, against a lower limit
            with Image.open(path) as opened:
                width, height = opened.size
                if width * height > max_pixels:
                    raise InputError(f"The image is {width} x {height} pixels ({_human(width * height)}); "
                                     f"the limit is {_human(max_pixels)}. Please upload a smaller image.")
                if getattr(opened, "is_animated", False):
                    opened.seek(0)
                    notes.append(f"animated image: the first of its {getattr(opened, 'n_frames', '?')} frames is used")
                opened.load()
                image = _to_rgb(opened, notes)
    except InputError:
        raise
    except Image.DecompressionBombError as err:  # PIL refuses to open it at all: read the count from its message
        found = re.search(r"\((\d+) pixels\)", str(err))
        count = _human(int(found.group(1))) if found else "too many pixels"
        raise InputError(f"The image is {count}; the limit is {_human(max_pixels)}. Please upload a smaller image.") from err
    except UnidentifiedImageError as err:
        raise InputError("The uploaded file is not an image this app can read (PNG, JPEG, GIF, WebP, BMP, TIFF...).") from err
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise InputError(f"The image file is damaged or truncated and cannot be decoded ({err}).") from err
    if max(image.size) > WORKING_SIDE:
        image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.LANCZOS)
        notes.append(f"shrunk from {width} x {height} to {image.width} x {image.height}")
    return QueryImage(image, notes)


def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    if mode in {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}:
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
        notes.append(f"{mode} image scaled to 8 bits")
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append("transparency flattened onto white")
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode != "RGB":
        notes.append(f"{mode} image converted to RGB")
    return image.convert("RGB")


def clean_question(question: str | None, max_chars: int = MAX_QUESTION_CHARS) -> str:
    """The question with surrounding space removed and `<image>` placeholders dropped (the app
    places the image itself); InputError when empty or longer than `max_chars`."""
    text = (question or "").replace(IMAGE_PLACEHOLDER, " ").replace("\x00", "").strip()
    if not text:
        raise InputError("Please type a question (the question box is empty).")
    if len(text) > max_chars:
        raise InputError(f"The question is {len(text):,} characters long; the limit is {max_chars:,}.")
    return text


def whole_number(name: str, value: object, low: int = 1, high: int = 5) -> int:
    """A slider value as an int in [low, high]; InputError for a fraction, text or a value out
    of range (an API client can send any of them), never a silent truncation."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"The {name} must be a whole number from {low} to {high}, got {value!r}.") from None
    if not number.is_integer() or not low <= number <= high:
        raise InputError(f"The {name} must be a whole number from {low} to {high}, got {value!r}.")
    return int(number)
