"""Bring any PIL image to the 8-bit RGB the corruptions expect, and back to its own mode.

The corruptions are defined on 8-bit RGB. Everything else is mapped there and back:
alpha is set aside untouched and re-attached; palette images get a fresh adaptive
palette (the old one may lack the new colours); 16-bit and float images are scaled to
8 bits and back, so the corruption keeps its meaning relative to the value range.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_HIGH_DEPTH_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


@dataclass
class RGBView:
    """An image as uint8 RGB (H x W x 3) plus how to return to the original mode."""

    rgb: np.ndarray
    restore: Callable[[np.ndarray], Image.Image]


def to_rgb(image: Image.Image) -> RGBView:
    """Split `image` into an RGB array and a function that rebuilds its mode."""
    mode = image.mode
    if mode == "RGB":
        return RGBView(np.asarray(image, dtype=np.uint8), lambda rgb: Image.fromarray(rgb, "RGB"))
    if mode in _ALPHA_MODES:
        return _alpha_view(image)
    if mode in _HIGH_DEPTH_MODES:
        return _high_depth_view(image)
    if mode == "P":
        if "transparency" in image.info:
            return _alpha_view(image)
        return RGBView(np.asarray(image.convert("RGB")), _quantize)
    # L, 1, CMYK, YCbCr, LAB, HSV, RGBX: Pillow converts both ways.
    return RGBView(np.asarray(image.convert("RGB")), lambda rgb: Image.fromarray(rgb, "RGB").convert(mode))


def _quantize(rgb_or_rgba: np.ndarray) -> Image.Image:
    # Fast octree handles alpha too, so transparent palette images stay transparent.
    return Image.fromarray(rgb_or_rgba).quantize(colors=256, method=Image.Quantize.FASTOCTREE)


def _alpha_view(image: Image.Image) -> RGBView:
    mode = image.mode
    rgba = np.asarray(image.convert("RGBA"))
    alpha = rgba[..., 3].copy()

    def restore(rgb: np.ndarray) -> Image.Image:
        merged = np.dstack([rgb, alpha])
        if mode == "P":
            return _quantize(merged)
        return Image.fromarray(merged, "RGBA").convert(mode)

    return RGBView(np.ascontiguousarray(rgba[..., :3]), restore)


def _value_range(image: Image.Image, values: np.ndarray) -> tuple[float, float]:
    """The range that maps to 0..255: the dtype's range where it has one."""
    if image.mode.startswith("I;16"):
        return 0.0, 65535.0
    if image.mode == "I" and values.size and values.min() >= 0:
        return 0.0, 255.0 if values.max() <= 255 else 65535.0 if values.max() <= 65535 else float(values.max())
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    return (low, high) if high > low else (low, low + 1.0)


def _high_depth_view(image: Image.Image) -> RGBView:
    mode = image.mode
    values = np.asarray(image).astype(np.float64)
    low, high = _value_range(image, values)
    gray = np.clip(np.rint((values - low) / (high - low) * 255.0), 0, 255).astype(np.uint8)

    def restore(rgb: np.ndarray) -> Image.Image:
        luma = np.asarray(Image.fromarray(rgb, "RGB").convert("L"), dtype=np.float64)
        back = luma / 255.0 * (high - low) + low
        if mode == "F":
            return Image.fromarray(back.astype(np.float32), "F")
        if mode == "I":
            return Image.fromarray(np.rint(back).astype(np.int32), "I")
        out = Image.fromarray(np.clip(np.rint(back), 0, 65535).astype(np.uint16))
        return out if out.mode == mode else out.convert(mode)

    return RGBView(np.repeat(gray[..., None], 3, axis=2), restore)
