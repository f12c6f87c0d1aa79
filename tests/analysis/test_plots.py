"""Representation figures: traces, names, shared axes, shapes, HTML escaping and export."""

from __future__ import annotations

import re

import numpy as np
import pytest

from vittle.analysis.plots import (
    cosine_histograms,
    embedding_scatter,
    metric_table,
    save_figure,
    token_colours_html,
    variance_heatmap,
)
from vittle.analysis.projection import Projection


@pytest.fixture
def mapped():
    """A PCA map fitted on two models' clean and perturbed embeddings, and their 2-D points."""
    rng = np.random.default_rng(0)
    arrays = {f"{model}/{role}": rng.standard_normal((30, 8)) + shift
              for model, shift in (("baseline", 0.0), ("vittle-f", 1.0)) for role in ("clean", "frost:3")}
    projection = Projection().fit(arrays)
    points = {model: {role: projection.coordinates(f"{model}/{role}") for role in ("clean", "frost:3")}
              for model in ("baseline", "vittle-f")}
    return projection, points


def test_embedding_scatter_panels_share_the_projection_ranges(mapped):
    projection, points = mapped
    fig = embedding_scatter(projection, points)
    assert len(fig.data) == 4  # clean + perturbed per model
    assert [t.name for t in fig.data] == ["clean", "frost:3", "clean", "frost:3"]
    assert [t.showlegend for t in fig.data] == [True, True, False, False]
    assert [a.text for a in fig.layout.annotations] == ["baseline", "vittle-f"]
    (x_range, y_range) = projection.axis_ranges()
    assert tuple(fig.layout.xaxis.range) == tuple(fig.layout.xaxis2.range) == x_range
    assert tuple(fig.layout.yaxis.range) == tuple(fig.layout.yaxis2.range) == y_range
    np.testing.assert_allclose(fig.data[1].x, points["baseline"]["frost:3"][:, 0])


def test_embedding_scatter_query_line_and_widened_ranges(mapped):
    projection, points = mapped
    (x_range, _) = projection.axis_ranges()
    far = x_range[1] + 10.0
    query = {"baseline": (np.zeros(2), np.ones((1, 2))), "vittle-f": (np.zeros(2), np.array([far, 0.0]))}
    fig = embedding_scatter(projection, points, query=query)
    assert len(fig.data) == 8  # 2 point clouds + query clean + query line, per model
    line = fig.data[3]
    assert line.name == "query: perturbed" and line.mode == "lines+markers"
    assert list(line.x) == [0.0, 1.0] and list(line.y) == [0.0, 1.0]
    assert fig.data[2].name == "query: clean" and list(fig.data[2].x) == [0.0]
    assert tuple(fig.layout.xaxis.range) == tuple(fig.layout.xaxis2.range)
    assert fig.layout.xaxis.range[1] > far  # widened for both panels to show the far query
    with pytest.raises(ValueError, match="not in points"):
        embedding_scatter(projection, points, query={"other": (np.zeros(2), np.zeros(2))})
    with pytest.raises(ValueError, match="shape"):
        embedding_scatter(projection, points, query={"baseline": (np.zeros(3), np.zeros(2))})


def test_cosine_histograms_traces_means_and_markers():
    distances = {"frost:3": {"baseline": np.array([0.1, 0.2, 0.3]), "vittle-f": np.array([0.05, 0.05])},
                 "char_typo:3": {"baseline": np.array([0.4]), "vittle-f": np.array([0.2, 0.4])}}
    fig = cosine_histograms(distances, marker={"baseline": 0.25, "vittle-f": 0.1})
    assert len(fig.data) == 4
    assert [t.name for t in fig.data] == ["baseline (mean 0.200)", "vittle-f (mean 0.050)",
                                          "baseline (mean 0.400)", "vittle-f (mean 0.300)"]
    assert [a.text for a in fig.layout.annotations][:2] == ["frost:3", "char_typo:3"]
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert sorted(s.x0 for s in lines) == [0.1, 0.1, 0.25, 0.25]  # one per model in each of the 2 panels
    assert fig.layout.barmode == "overlay"
    with pytest.raises(ValueError, match="no distances"):
        cosine_histograms({})


def test_variance_heatmap_has_the_grid_shape():
    values = np.arange(12, dtype=np.float32)
    fig = variance_heatmap(values, (3, 4))
    z = np.asarray(fig.data[0].z)
    assert z.shape == (3, 4)
    assert z[1, 0] == 4 and z[2, 3] == 11  # row-major
    assert fig.layout.yaxis.autorange == "reversed"
    with pytest.raises(ValueError, match="12 values do not fill a grid of 5 x 5"):
        variance_heatmap(values, (5, 5))


def test_token_colours_html_escapes_and_strips_bpe_markers():
    tokens = ["<s>", "ĠWhat", "Ġ<script>", "▁colour", "?"]
    text = token_colours_html(tokens, np.array([0.0, 1.0, 2.0, 3.0, 4.0]), label="variance")
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "&lt;s&gt;" in text and "Ġ" not in text and "▁" not in text
    assert "> What</span>" in text and "> colour</span>" in text
    assert 'title="variance: 2"' in text
    assert "rgba(214, 39, 40, 0.000)" in text and "rgba(214, 39, 40, 1.000)" in text  # min clear, max full
    assert text.count("<span") == 5 and text.startswith("<div") and text.endswith("</div>")
    with pytest.raises(ValueError, match="2 tokens but 3 values"):
        token_colours_html(["a", "b"], np.zeros(3))


def test_metric_table_rows_and_columns():
    fig = metric_table({"baseline": {"JSD": 0.0123456, "EMID": 0.5}, "vittle-f": {"JSD": 0.01}})
    table = fig.data[0]
    assert list(table.header.values) == ["model", "JSD", "EMID"]
    assert [list(column) for column in table.cells.values] == [["baseline", "vittle-f"], ["0.01235", "0.01"], ["0.5", "\u2013"]]


def test_save_figure_writes_self_contained_html(tmp_path):
    fig = variance_heatmap(np.ones(4), (2, 2))
    written = save_figure(fig, tmp_path / "x", png=False)
    assert written == [tmp_path / "x.html"]
    text = written[0].read_text()
    assert text.lstrip().lower().startswith("<!doctype html") and text.rstrip().endswith("</html>")
    assert not re.search(r"<script[^>]*\bsrc=", text)  # plotly.js is embedded, not fetched
    assert len(text) > 1_000_000 and "Plotly.newPlot" in text


def test_interval_chart_gives_every_comparison_its_own_colour_and_its_interval():
    from vittle.analysis.plots import interval_chart

    intervals = {f"arm {i}": {"clean": (0.1 * i, -1.0, 1.0 + i), "shifted": (-0.5, -2.0, 0.5)} for i in range(10)}
    fig = interval_chart(intervals, "t")
    colours = [trace.marker.color for trace in fig.data]
    assert len(fig.data) == 10 and len(set(colours)) == 10
    third = fig.data[3]
    assert list(third.y) == ["clean", "shifted"] and list(third.x) == pytest.approx([0.3, -0.5])
    assert list(third.error_x.array) == pytest.approx([3.7, 1.0]) and list(third.error_x.arrayminus) == pytest.approx([1.3, 1.5])
