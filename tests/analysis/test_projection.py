"""Shared 2-D maps of embeddings: PCA exactly, UMAP in one slow test."""

from __future__ import annotations

import numpy as np
import pytest

from vittle.analysis.projection import Projection


def two_models(n: int = 100, d: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Two clouds of the same width, the second shifted and stretched."""
    rng = np.random.default_rng(seed)
    return {"baseline": rng.standard_normal((n, d)), "vittle": 2.0 * rng.standard_normal((n, d)) + 3.0}


def test_pca_axis_ranges_are_shared_and_cover_both_models():
    projection = Projection().fit(two_models())
    (xmin, xmax), (ymin, ymax) = projection.axis_ranges()
    for name in ("baseline", "vittle"):
        coords = projection.coordinates(name)
        assert coords.shape == (100, 2)
        assert np.all((xmin < coords[:, 0]) & (coords[:, 0] < xmax))
        assert np.all((ymin < coords[:, 1]) & (coords[:, 1] < ymax))
    both = np.vstack([projection.coordinates("baseline"), projection.coordinates("vittle")])
    span = both.max(0) - both.min(0)
    np.testing.assert_allclose([xmax - xmin, ymax - ymin], 1.1 * span)
    # the clouds differ by a mean shift, which PCA's first axis picks up
    gap = projection.coordinates("vittle")[:, 0].mean() - projection.coordinates("baseline")[:, 0].mean()
    assert abs(gap) > 3.0


def test_pca_transform_of_fitted_points_is_exact_and_does_not_refit():
    arrays = two_models()
    projection = Projection().fit(arrays)
    before = {name: projection.coordinates(name) for name in projection.names}
    ranges = projection.axis_ranges()
    for name, X in arrays.items():
        np.testing.assert_allclose(projection.transform(name, X), before[name], atol=1e-8)
    new = np.random.default_rng(1).standard_normal((7, 16))
    placed = projection.transform(None, new)
    assert placed.shape == (7, 2) and np.all(np.isfinite(placed))
    assert projection.axis_ranges() == ranges
    for name in projection.names:
        np.testing.assert_array_equal(projection.coordinates(name), before[name])


def test_pca_is_a_standardised_linear_map():
    arrays = two_models()
    projection = Projection().fit(arrays)
    stacked = np.vstack(list(arrays.values()))
    Z = (stacked - stacked.mean(0)) / stacked.std(0)
    top_variance = np.linalg.svd(Z, compute_uv=False)[:2] ** 2
    fitted = np.vstack([projection.coordinates(name) for name in projection.names])
    np.testing.assert_allclose((fitted**2).sum(0), top_variance, rtol=1e-10)


def test_projection_errors():
    with pytest.raises(ValueError, match=r"same width.*'baseline': 16.*'vittle': 8"):
        Projection().fit({"baseline": np.ones((5, 16)), "vittle": np.ones((5, 8))})
    with pytest.raises(ValueError, match=r"'pca', 'umap'.*'tsne'"):
        Projection().fit(two_models(), method="tsne")
    projection = Projection()
    with pytest.raises(ValueError, match="not fitted"):
        projection.transform(None, np.ones((2, 16)))
    projection.fit(two_models())
    with pytest.raises(ValueError, match="8 features.*16"):
        projection.transform(None, np.ones((2, 8)))
    with pytest.raises(ValueError, match="unknown model 'other'"):
        projection.coordinates("other")


@pytest.mark.slow
def test_umap_map_is_deterministic_and_transform_lands_near_the_fit(require):
    require("umap")
    arrays = two_models(n=100, d=16)  # 200 points in all
    first = Projection().fit(arrays, method="umap", seed=0, pca_dims=8)
    assert first.coordinates("baseline").shape == (100, 2)
    both = np.vstack([first.coordinates(name) for name in first.names])
    spread = np.linalg.norm(both.max(0) - both.min(0))
    probe = arrays["vittle"][:10]
    placed = first.transform("vittle", probe)
    assert placed.shape == (10, 2)
    distances = np.linalg.norm(placed - first.coordinates("vittle")[:10], axis=1)
    assert np.median(distances) < 0.1 * spread, (distances, spread)
    second = Projection().fit(arrays, method="umap", seed=0, pca_dims=8)
    for name in first.names:
        np.testing.assert_array_equal(second.coordinates(name), first.coordinates(name))
    np.testing.assert_array_equal(second.transform("vittle", probe), placed)
