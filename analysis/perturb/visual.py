"""The nine visual corruptions, on the real imagecorruptions code, for any PIL image.

`corrupt(image, name, severity, seed)` returns an image of the same size and mode.
imagecorruptions needs sides of at least 32 px and, for fog (and, for speed, zoom blur),
at most 1024 px; outside those bounds we corrupt a resized working copy and resize the
result back, so callers always get their own size.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ._rng import derive_seed, seeded_global_rng
from ._shims import imagecorruptions
from .imagemodes import to_rgb
from .registry import LEVELS, Modality, list_perturbations

if TYPE_CHECKING:
    from vittle.memo import Memo

logger = logging.getLogger(__name__)

VISUAL_NAMES = tuple(p.name for p in list_perturbations(Modality.VISUAL))
MIN_SIDE = 32  # imagecorruptions refuses anything smaller
# fog's plasma fractal is sized to the next power of two of the longest side, which
# changes the look of the fog beyond 1024 px; zoom blur costs ~25 s at 4000 x 3000.
MAX_SIDE = {"fog": 1024, "zoom_blur": 1024}

def corrupt(image: Image.Image, name: str, severity: int, seed: int = 0, memo: Memo | None = None) -> Image.Image:
    """Apply corruption `name` at `severity` (1..5); deterministic for `seed`. With `memo` (a
    `vittle.memo.Memo` the caller owns), a corruption of the same image is computed once."""
    if name not in VISUAL_NAMES:
        raise ValueError(f"unknown visual corruption {name!r}; valid: {', '.join(VISUAL_NAMES)}")
    if severity not in LEVELS:
        raise ValueError(f"invalid severity {severity!r} for {name!r}; valid: {list(LEVELS)}")
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    key = (_fingerprint(image), name, severity, seed) if memo is not None else None
    if key is not None and (kept := memo.get(key)) is not None:
        return kept.copy()
    view = to_rgb(image)
    result = view.restore(corrupt_rgb(view.rgb, name, severity, seed))
    if key is not None:
        memo.put(key, result.copy())
    return result


def _fingerprint(image: Image.Image) -> tuple:
    digest = hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()
    return image.mode, image.size, str(image.info.get("transparency")), digest


def corrupt_rgb(rgb: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Corrupt a uint8 H x W x 3 array; the result has the same shape."""
    height, width = rgb.shape[:2]
    work_size = working_size(width, height, MAX_SIDE.get(name))
    upscaled = work_size[0] > width or work_size[1] > height
    work = _resize(rgb, work_size, upscaled, shrinking=True) if work_size != (width, height) else rgb
    # The seed ignores severity on purpose: all severities of one seed share their random
    # draws (noise pattern, frost crop), so a severity sweep varies only the strength.
    with seeded_global_rng(derive_seed(seed, name)):
        out = imagecorruptions().corrupt(np.ascontiguousarray(work), severity=severity, corruption_name=name)
    if work_size != (width, height):
        out = _resize(out, (width, height), upscaled, shrinking=False)
    return out.astype(np.uint8, copy=False)


def working_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """The (width, height) imagecorruptions can handle for this image."""
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = round(width * scale), round(height * scale)
    return max(width, MIN_SIDE), max(height, MIN_SIDE)


def _resize(rgb: np.ndarray, size: tuple[int, int], upscaled: bool, shrinking: bool) -> np.ndarray:
    # Tiny images go up and down by nearest neighbour, so a pixel of the result is a
    # pixel the corruption produced (averaging would wash out the noise). Large ones are
    # shrunk with antialiasing and enlarged smoothly.
    if upscaled:
        resample = Image.Resampling.NEAREST
    else:
        resample = Image.Resampling.LANCZOS if shrinking else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(rgb, "RGB").resize(size, resample))
