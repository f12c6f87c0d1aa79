"""Where an image's tokens sit on the image: `TokenGrid`, what the probe hands the app's
per-token panels and its overlay.

Every family's image layout (`vittle.family_inputs`) says which run of an image's tokens forms
one raster over the image, and which part of the image that raster covers:

- LLaVA-1.5: all its tokens (after a CLS token, if kept), over the square the image was padded
  to, or over the centre square a CLIP-style processor crops;
- Qwen-VL: all, over the whole image (its rows and columns follow the image's aspect ratio);
- Gemma 3: all, over the whole image (squeezed to a square);
- LLaVA-NeXT and LLaVA-OneVision: the base image's tokens, which come first (the tiles follow,
  cut to the image and with a newline token per row);
- Idefics3 and InternVL: the global image's or thumbnail's tokens, which come last (after the
  tiles); an image small enough for one tile is that tile, over the whole image.

    grid = probe.grid                    # TokenGrid(rows=4, cols=4, start=0, box=(0, 0, 1, 1))
    grid.values(probe.visual_variance)   # (rows, cols): the raster's tokens, row-major
    grid.box                             # (left, top, right, bottom), fractions of the image
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Box = tuple[float, float, float, float]
WHOLE: Box = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class TokenGrid:
    """`rows` x `cols` of an image's tokens, row-major, from its `start`-th image token on,
    covering `box` of the image: (left, top, right, bottom) as fractions of its width and
    height, beyond 0..1 where the processor padded it (LLaVA-1.5's pad to a square)."""

    rows: int
    cols: int
    start: int = 0
    box: Box = WHOLE
    part: str = ""
    """What the run is where it is not all of the image's tokens ("base image", "global image",
    "thumbnail"), for captions; "" where it is all of them."""

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def values(self, per_token: Any) -> np.ndarray:
        """(rows, cols) of `per_token` (one value per image token of the image, in order)."""
        flat = np.asarray(per_token, dtype=float).reshape(-1)
        if flat.size < self.start + self.count:
            raise ValueError(f"{flat.size} image tokens, but the grid takes tokens {self.start} to {self.start + self.count - 1}")
        return flat[self.start:self.start + self.count].reshape(self.rows, self.cols)

    def in_image(self, width: int, height: int, side: int) -> TokenGrid:
        """This grid, its box given in a `side` x `side` square that a `width` x `height` image
        was pasted into the centre of, with its box in the image's own fractions."""
        x0, y0 = (side - width) // 2, (side - height) // 2
        left, top, right, bottom = self.box
        box = ((left * side - x0) / width, (top * side - y0) / height, (right * side - x0) / width, (bottom * side - y0) / height)
        return TokenGrid(self.rows, self.cols, self.start, box, self.part)

    def __str__(self) -> str:
        where = "the whole image" if self.box == WHOLE else "(" + ", ".join(f"{v:.3g}" for v in self.box) + ") of the image"
        return f"{self.rows} x {self.cols}" + (f" ({self.part}, from image token {self.start})" if self.part else "") + f" over {where}"

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "cols": self.cols, "start": self.start, "box": list(self.box), "part": self.part}

    def caption(self, tokens: int) -> str:
        """"" where the grid is all of an image's `tokens`; else which of them it shows."""
        if self.count >= tokens:
            return ""
        return f"the {self.part or 'grid'}'s {self.count} of {tokens} image tokens"

    @classmethod
    def coerce(cls, value: Any) -> TokenGrid | None:
        """A `TokenGrid` from itself, its `to_dict`, or (rows, cols) (reports written before the
        grid had a start and a box); None stays None."""
        if value is None or isinstance(value, TokenGrid):
            return value
        if isinstance(value, dict):
            return cls(int(value["rows"]), int(value["cols"]), int(value.get("start", 0)), tuple(value.get("box", WHOLE)),
                       str(value.get("part", "")))
        rows, cols = (int(n) for n in value)
        return cls(rows, cols)


def square(count: int, start: int = 0, part: str = "") -> TokenGrid | None:
    """`count` tokens from `start` on as a square raster over the whole image (`part`: what
    they are, where not all of the image's); None where `count` is not a square number."""
    side = math.isqrt(count)
    return TokenGrid(side, side, start, WHOLE, part) if side > 0 and side * side == count else None


def crop_box(image_processor: Any, width: int, height: int) -> Box:
    """The part of a `width` x `height` image that a CLIP-style image processor keeps: resize
    the short side to `size["shortest_edge"]`, then crop the centre `crop_size`; the whole image
    where it resizes to a fixed height and width or does not crop."""
    size = _as_dict(getattr(image_processor, "size", None))
    crop = _as_dict(getattr(image_processor, "crop_size", None))
    if not getattr(image_processor, "do_center_crop", False) or not crop or "shortest_edge" not in size:
        return WHOLE
    scale = size["shortest_edge"] / min(width, height)
    resized_w, resized_h = width * scale, height * scale
    crop_w, crop_h = min(crop.get("width", resized_w), resized_w), min(crop.get("height", resized_h), resized_h)
    left, top = (resized_w - crop_w) / 2 / resized_w, (resized_h - crop_h) / 2 / resized_h
    return (left, top, left + crop_w / resized_w, top + crop_h / resized_h)


SIZE_KEYS = ("height", "width", "shortest_edge", "longest_edge")


def _as_dict(value: Any) -> dict[str, Any]:
    """A size setting (a dict or transformers' `SizeDict`) without its unset keys."""
    if value is None:
        return {}
    read = value.get if hasattr(value, "get") else lambda key: getattr(value, key, None)
    return {key: read(key) for key in SIZE_KEYS if read(key) is not None}


def box_pixels(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """`box` (fractions) in pixels of a `width` x `height` image, rounded."""
    left, top, right, bottom = box
    return round(left * width), round(top * height), round(right * width), round(bottom * height)
