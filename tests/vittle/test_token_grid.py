"""Where an image's tokens sit on the image (`vittle.token_grid`), per family layout."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from transformers import CLIPImageProcessor

from vittle.data import ImageEncoder
from vittle.token_grid import WHOLE, TokenGrid, crop_box, square


def test_values_are_the_grid_s_run_of_tokens_row_major():
    grid = TokenGrid(2, 3, start=4)
    assert grid.values(np.arange(12)).tolist() == [[4, 5, 6], [7, 8, 9]]
    assert grid.shape == (2, 3) and grid.count == 6 and grid.caption(12) == "the grid's 6 of 12 image tokens"
    assert TokenGrid(2, 2).caption(4) == ""
    with pytest.raises(ValueError, match="9 image tokens, but the grid takes tokens 4 to 9"):
        grid.values(np.zeros(9))


def test_a_padded_square_s_box_in_the_image_s_own_fractions():
    """A 200 x 100 image pasted into the middle of a 200 x 200 square (LLaVA-1.5's pad): the
    square reaches half the image's height above and below it."""
    grid = TokenGrid(4, 4).in_image(200, 100, 200)
    np.testing.assert_allclose(grid.box, (0.0, -0.5, 1.0, 1.5))
    tall = TokenGrid(4, 4, box=(0.25, 0.0, 0.75, 1.0)).in_image(50, 100, 100)  # a crop of the square's middle half
    np.testing.assert_allclose(tall.box, (0.0, 0.0, 1.0, 1.0))


def test_crop_box_follows_a_clip_processor_s_resize_and_centre_crop():
    crop = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, do_center_crop=True)
    np.testing.assert_allclose(crop_box(crop, 640, 480), (0.125, 0.0, 0.875, 1.0), atol=1e-9)
    np.testing.assert_allclose(crop_box(crop, 100, 200), (0.0, 0.25, 1.0, 0.75), atol=1e-9)
    squash = CLIPImageProcessor(size={"height": 224, "width": 224}, do_center_crop=False)
    assert crop_box(squash, 640, 480) == WHOLE


def test_round_trip_and_old_reports():
    grid = TokenGrid(3, 4, start=2, box=(0.0, -0.5, 1.0, 1.5), part="thumbnail")
    assert TokenGrid.coerce(grid.to_dict()) == grid and TokenGrid.coerce([7, 7]) == TokenGrid(7, 7)
    assert TokenGrid.coerce(None) is None
    assert square(10) is None and square(16, 4, "global image") == TokenGrid(4, 4, 4, WHOLE, "global image")


def test_llava_s_grid_covers_the_padded_square(tiny):
    """The tiny LLaVA pads to a square: a wide image's grid reaches above and below it, and the
    overlay would draw that padding, not crop the image's centre."""
    _, processor = tiny
    encoder = ImageEncoder(processor)
    wide, square_image = Image.new("RGB", (64, 32)), Image.new("RGB", (32, 32))
    count = encoder.num_tokens(encoder.encode(wide))
    grid = encoder.grid(wide)
    assert grid.count == count and grid.start == 0
    np.testing.assert_allclose(grid.box, (0.0, -0.5, 1.0, 1.5), atol=1e-6)
    np.testing.assert_allclose(encoder.grid(square_image).box, WHOLE, atol=1e-6)
