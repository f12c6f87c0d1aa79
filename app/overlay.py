"""The posterior variance drawn over the image itself: each image token's variance over the part
of the image it reads, semi-transparent over the image enlarged by nearest neighbour.

    overlay = overlay_arrays(image, probe.visual_variance, probe.grid)
    overlay.image      # (rows * k, cols * k, 3) uint8: the part of the image the grid covers, k pixels per token
    overlay.tokens     # (rows, cols) variance per token, row-major like `ProbeResult.grid`
    overlay.zmax       # max(1, largest variance): the colour scale is 0..zmax, the prior's 1 marked
    variance_overlay_spec(overlay, "Vittle (F)")  # the plotly figure dict

The token grid (`vittle.token_grid.TokenGrid`) says which part of the image its tokens read:
the square LLaVA-1.5 pads the image to (the padding drawn grey), the centre square a CLIP-style
processor crops, or the whole image squeezed to the tower's shape (Gemma 3; the base or global
image of the tiling families) or kept in its aspect ratio (Qwen-VL).
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from vittle.token_grid import TokenGrid, box_pixels

PRIOR_VARIANCE = 1.0
"""The fixed prior's variance (N(0, I)): marked on the colour bar."""
OPACITY = 0.55
"""The variance layer's opacity: the image shows through."""
SIDE = 256
"""The enlarged image is at least this many pixels on a side (a whole number of pixels per token)."""
PADDING = (128, 128, 128)
"""Where the grid reaches beyond the image (a processor's padding): drawn mid-grey."""


@dataclass
class Overlay:
    image: np.ndarray
    """(rows * k, cols * k, 3) uint8: the part of the image the grid covers, enlarged by nearest neighbour."""
    tokens: np.ndarray
    """(rows, cols) float: the value of each image token."""
    zmax: float
    """Top of the fixed colour scale: max(1, the largest finite value)."""
    pixels_per_token: int


def overlay_arrays(image: Any, values: Any, grid: TokenGrid | tuple[int, int], side: int = SIDE) -> Overlay:
    """`values` laid on the token grid over `image` (a PIL image): for a `TokenGrid`, one value
    per image token (the grid's run of them is drawn over its box of the image); for (rows,
    cols), exactly rows * cols values over the whole image. The colour scale runs from 0 to
    max(1, the largest finite value), so a posterior at the prior (variance 1 everywhere) reads
    as flat at the prior's mark, not as a pattern."""
    flat = np.asarray(values, dtype=float).reshape(-1)
    if not isinstance(grid, TokenGrid):
        rows, cols = (int(n) for n in grid)
        if rows < 1 or cols < 1 or flat.size != rows * cols:
            raise ValueError(f"{flat.size} values do not fill a grid of {rows} x {cols} = {rows * cols} tokens")
        grid = TokenGrid(rows, cols)
    tokens = grid.values(flat)
    finite = tokens[np.isfinite(tokens)]
    zmax = max(PRIOR_VARIANCE, float(finite.max()) if finite.size else 0.0)
    k = max(1, math.ceil(side / max(grid.rows, grid.cols)))
    rgb = image.convert("RGB")
    left, top, right, bottom = box_pixels(grid.box, *rgb.size)
    canvas = Image.new("RGB", (max(1, right - left), max(1, bottom - top)), PADDING)
    canvas.paste(rgb, (-left, -top))
    shown = canvas.resize((grid.cols * k, grid.rows * k), Image.Resampling.NEAREST)
    return Overlay(np.asarray(shown, dtype=np.uint8), tokens, zmax, k)


def _png_uri(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def variance_overlay_spec(overlay: Overlay, title: str, label: str = "variance") -> dict[str, Any]:
    """The image (an `image` trace, drawn pixelated) under a semi-transparent heatmap of the
    tokens' values on the fixed scale 0..zmax, the prior's variance marked on the colour bar."""
    rows, cols = overlay.tokens.shape
    step = 1.0 / overlay.pixels_per_token  # one image pixel, in token units
    marks = {0.0: "0", PRIOR_VARIANCE: f"{PRIOR_VARIANCE:g} (prior)"}
    if overlay.zmax > PRIOR_VARIANCE:
        marks[overlay.zmax] = f"{overlay.zmax:.3g}"
    data = [{"type": "image", "source": _png_uri(overlay.image), "x0": -0.5 + step / 2, "dx": step, "y0": -0.5 + step / 2,
             "dy": step, "hoverinfo": "skip"},
            {"type": "heatmap", "z": overlay.tokens.tolist(), "zmin": 0.0, "zmax": overlay.zmax, "colorscale": "Viridis",
             "opacity": OPACITY, "colorbar": {"title": {"text": label}, "tickvals": list(marks), "ticktext": list(marks.values())},
             "hovertemplate": f"row %{{y}}, col %{{x}}<br>{label} %{{z:.4g}}<extra></extra>"}]
    layout = {"title": {"text": title, "font": {"size": 14}}, "height": 420, "autosize": True,
              "xaxis": {"range": [-0.5, cols - 0.5], "constrain": "domain", "showgrid": False, "title": {"text": "column"}},
              "yaxis": {"range": [rows - 0.5, -0.5], "scaleanchor": "x", "constrain": "domain", "showgrid": False,
                        "title": {"text": "row"}},
              "margin": {"l": 10, "r": 10, "t": 26 + 18 * (title.count("<br>") + 1), "b": 40}}
    return {"data": data, "layout": layout}


def overlay_spec(probe: Any, image: Any, label: str, setting: str) -> dict[str, Any] | None:
    """The Vittle model's posterior variance over its (perturbed) input image; None without
    image tokens, a posterior or an image."""
    if image is None or probe.grid is None or getattr(probe, "visual_variance", None) is None:
        return None
    overlay = overlay_arrays(image, probe.visual_variance, probe.grid)
    shown = probe.grid.caption(len(probe.visual_variance))
    return variance_overlay_spec(overlay, f"{label}<br>posterior variance over the image<br>({setting})" + (f"<br>{shown}" if shown else ""))
