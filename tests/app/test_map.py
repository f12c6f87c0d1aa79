"""The explorable map, the distance histogram, the variance overlay and the settings' names,
as figure dicts and arrays (no models)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vittle.app.map_figure import ReferenceView, distance_histogram_spec, reference_map_spec
from vittle.app.overlay import overlay_arrays, variance_overlay_spec
from vittle.app.query import setting_name
from vittle.token_grid import TokenGrid


@pytest.mark.parametrize("spec, name", [("frost:3+char_typo:3", "Frost 3 + Keyboard typos 3"), ("zoom_blur:2+greek", "Zoom blur 2 + Translation to Greek"),
                                        ("gaussian_noise:5", "Gaussian noise 5"), ("word_swap:1", "Word swap 1"), ("clean", "Clean")])
def test_setting_names_use_the_menus_labels(spec, name):
    assert setting_name(spec) == name


def test_setting_name_refuses_an_unknown_spec():
    with pytest.raises(ValueError):
        setting_name("frost:9")


class Shift:
    """The part of `ShiftAnalysis` the map reads."""

    def __init__(self, n: int, spec: str):
        rng = np.random.default_rng(0)
        self.coordinates = {name: {"clean": rng.normal(size=(n, 2)), spec: rng.normal(size=(n, 2))} for name in ("baseline", "vittle-f")}

    def axis_ranges(self):
        every = np.vstack([xy for roles in self.coordinates.values() for xy in roles.values()])
        return (float(every[:, 0].min()), float(every[:, 0].max())), (float(every[:, 1].min()), float(every[:, 1].max()))


def view(n: int = 6) -> ReferenceView:
    kinds = ["color", "shape", "yes/no"] * (n // 3)
    answers = {label: {"clean": [f"c{i}" for i in range(n)], "perturbed": [f"p{i}" for i in range(n)]} for label in ("Baseline", "Vittle (F)")}
    return ReferenceView([f"question <{i}>?" for i in range(n)], kinds, [f"e{i}" for i in range(n)], answers,
                         {"clean": [f"data:clean{i}" for i in range(n)], "perturbed": [f"data:pert{i}" for i in range(n)]})


def test_map_traces_by_kind_with_hidden_joins_indices_and_thumbnails():
    labels = {"baseline": "Baseline", "vittle-f": "Vittle (F)"}
    placed = {"Baseline": (np.array([0.1, 0.1]), np.array([0.1, 0.1])), "Vittle (F)": (np.array([5.0, 0.0]), np.array([0.2, 0.3]))}
    spec = reference_map_spec(Shift(6, "frost:3"), "frost:3", labels, placed, view(), "pca")
    parts = [trace.get("meta", {}).get("part") for trace in spec["data"]]
    assert parts.count("points") == 2 * 2 * 3 and parts.count("join") == 2 * 3  # (model x role x kind) and (model x kind)
    joins = [t for t in spec["data"] if t.get("meta", {}).get("part") == "join"]
    assert all(t["visible"] is False for t in joins) and len(joins[0]["x"]) == 3 * 2  # two points of a kind: 2 segments + breaks
    points = [t for t in spec["data"] if t.get("meta", {}).get("part") == "points"]
    assert sorted(i for t in points[:6] for i in t["customdata"]) == sorted(list(range(6)) * 2)  # each query once per role
    colour = next(t for t in points if t["meta"] == {"part": "points", "kind": "color", "role": "perturbed"})
    assert colour["name"] == "Frost 3" and colour["customdata"] == [0, 3]
    hover = colour["hovertext"][0]
    assert "#0: question &lt;0&gt;?" in hover and "Baseline: c0 → p0" in hover and "Vittle (F): c0 → p0" in hover and "expected 'e0'" in hover
    assert spec["layout"]["meta"]["thumbnails"]["perturbed"][3] == "data:pert3"
    assert "Frost 3" in spec["layout"]["title"]["text"] and "frost:3" not in spec["layout"]["title"]["text"]
    # the user's query: the cross comes after the star (drawn on top), larger outline, and the axes widened to hold the star at x=5
    names = [t.get("name") for t in spec["data"]]
    star, cross = names.index("your query: clean"), names.index("your query: Frost 3")
    assert cross > star and spec["data"][cross]["marker"]["line"]["width"] > 0 and spec["layout"]["xaxis2"]["range"][1] > 5


def test_histogram_bars_list_their_queries_and_the_query_labels_sit_in_the_legend():
    distances = {"Baseline": np.array([0.01, 0.02, 0.5, 0.51]), "Vittle (F)": np.array([0.011, 0.3, 0.31, 0.9])}
    spec = distance_histogram_spec(distances, {"Baseline": 0.2, "Vittle (F)": 0.2001}, ["q0", "q1", "q2", "q3"], "frost:3", bins=5)
    bars = [t for t in spec["data"] if t["type"] == "bar"]
    assert len(bars) == 2 and sum(bars[0]["y"]) == 4 and sum(bars[1]["y"]) == 4
    first = bars[0]["hovertext"][0]
    assert "2 queries" in first and "#0 q0 (0.0100)" in first and "#1 q1 (0.0200)" in first and "q2" not in first
    assert bars[0]["x"] == bars[1]["x"] and bars[0]["offset"] != bars[1]["offset"]  # shared bins, side by side
    lines = [t for t in spec["data"] if t["type"] == "scatter"]
    assert [t["name"] for t in lines] == ["your query, Baseline: 0.2000", "your query, Vittle (F): 0.2001"]
    assert not spec["layout"].get("annotations")  # no labels on the plot that could overlap
    assert "Frost 3" in spec["layout"]["title"]["text"]


def test_overlay_maps_each_token_onto_its_block_of_the_image():
    image = Image.fromarray(np.arange(12 * 8 * 3, dtype=np.uint8).reshape(8, 12, 3))  # 12 x 8: a grid over its centre 8 x 8 square
    values = np.arange(4, dtype=float) / 10  # a 2 x 2 grid
    overlay = overlay_arrays(image, values, TokenGrid(2, 2, box=(2 / 12, 0.0, 10 / 12, 1.0)), side=64)
    assert overlay.pixels_per_token == 32 and overlay.image.shape == (64, 64, 3) and overlay.image.dtype == np.uint8
    assert overlay.tokens.tolist() == [[0.0, 0.1], [0.2, 0.3]]  # row-major, like ProbeResult.grid
    centre = np.asarray(image)[:, 2:10]
    assert (overlay.image[::8, ::8] == centre).all()  # nearest neighbour: every 8th pixel is an original one
    assert overlay.zmax == 1.0  # the scale never shrinks below the prior's variance


def test_overlay_draws_the_padding_a_grid_covers_and_only_its_run_of_tokens():
    """A grid over the square a 4 x 2 image was padded to (LLaVA-1.5): the image in the middle
    rows, grey above and below; the grid's tokens are the run from its start (a tiling family's
    global image after its tiles)."""
    image = Image.new("RGB", (4, 2), (200, 10, 10))
    grid = TokenGrid(2, 2, start=3, box=(0.0, -0.5, 1.0, 1.5), part="global image")
    overlay = overlay_arrays(image, np.arange(7, dtype=float), grid, side=8)
    assert overlay.tokens.tolist() == [[3.0, 4.0], [5.0, 6.0]]
    assert overlay.image.shape == (8, 8, 3)
    assert (overlay.image[0, 0] == (128, 128, 128)).all() and (overlay.image[7, 7] == (128, 128, 128)).all()
    assert (overlay.image[2:6, :] == (200, 10, 10)).all()
    with pytest.raises(ValueError, match="6 image tokens, but the grid takes tokens 3 to 6"):
        overlay_arrays(image, np.zeros(6), grid)


def test_overlay_scale_is_fixed_and_grows_only_above_the_prior():
    image = Image.new("RGB", (64, 64), (10, 200, 30))
    collapsed = overlay_arrays(image, np.full(49, 0.999), (7, 7))
    assert collapsed.zmax == 1.0 and collapsed.image.shape[0] % 7 == 0 and collapsed.image.shape[0] >= 256
    wide = overlay_arrays(image, np.r_[np.full(48, 0.5), 2.5], (7, 7))
    assert wide.zmax == 2.5
    with_nan = overlay_arrays(image, np.r_[np.full(48, 0.5), np.nan], (7, 7))
    assert with_nan.zmax == 1.0
    spec = variance_overlay_spec(collapsed, "title")
    heatmap = spec["data"][1]
    assert spec["data"][0]["type"] == "image" and spec["data"][0]["source"].startswith("data:image/png;base64,")
    assert (heatmap["zmin"], heatmap["zmax"]) == (0.0, 1.0) and 0 < heatmap["opacity"] < 1
    assert "1 (prior)" in heatmap["colorbar"]["ticktext"]
    with pytest.raises(ValueError, match="do not fill a grid"):
        overlay_arrays(image, np.zeros(48), (7, 7))
