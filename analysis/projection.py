"""2-D maps of layer-l embeddings that are comparable across models.

One `Projection` is fitted on the concatenation of every model's embeddings (e.g. clean and
perturbed queries of the baseline and of Vittle), so all models land in the same plane with
the same axis scales, as in the paper's Figure 8. Features are standardised with the fit
set's mean and standard deviation. PCA uses numpy's SVD; UMAP (umap-learn) is imported only
when used, since its first import and first fit in a process cost ~10 s each of numba JIT
(`warm_umap` pays that up front).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vittle.analysis.umap_process import UmapProcess, warm_umap

__all__ = ["METHODS", "Projection", "axis_ranges", "warm_umap"]

METHODS = ("pca", "umap")


def _principal_axes(Z: np.ndarray, k: int) -> np.ndarray:
    """The top-k right singular vectors of centred Z (n, d) as columns (d, k), each signed so
    that its largest-magnitude loading is positive (a reproducible orientation)."""
    if min(Z.shape) > 500 and k < min(Z.shape) // 4:
        # a few leading axes of a large matrix: ARPACK finds them without the full SVD (10,000 x 4,096: ~1 s vs 30 s)
        from scipy.sparse.linalg import svds  # heavy

        _, values, vt = svds(Z, k=k, random_state=0)
        axes = vt[np.argsort(values)[::-1]].T
    else:
        _, _, vt = np.linalg.svd(Z, full_matrices=False)
        axes = vt[:k].T
    signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(axes.shape[1])])
    return axes * np.where(signs == 0, 1.0, signs)


class Projection:
    """A shared 2-D map: `fit` once on all models, then read `coordinates(name)`, place new
    points with `transform` and draw every model with the same `axis_ranges()`."""

    def __init__(self) -> None:
        self.method: str | None = None
        self._mean: np.ndarray | None = None
        self._scale: np.ndarray | None = None
        self._axes: np.ndarray | None = None  # PCA: (d, 2) map; UMAP: (d, pca_dims) pre-reduction or None
        self._umap: Any = None
        self._coordinates: dict[str, np.ndarray] = {}

    @property
    def names(self) -> list[str]:
        """The fitted models, in the order given to `fit`."""
        return list(self._coordinates)

    def fit(self, arrays: Mapping[str, np.ndarray], method: str = "pca", seed: int = 0, n_neighbors: int = 15,
            pca_dims: int = 50, umap: UmapProcess | None = None) -> Projection:
        """Fit one map on the rows of all `arrays` (name -> (n_name, d), same d for all).

        `method` "pca": the top two principal axes of the standardised features. "umap":
        UMAP with `n_neighbors` (capped at the number of rows - 1) and random_state=`seed`,
        after PCA to `pca_dims` dimensions when d > `pca_dims`; fitted (and later `transform`ed)
        in `umap`'s process when given (`vittle.analysis.umap_process`: the same map, computed
        away from this interpreter), else here. Returns self."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
        if not arrays:
            raise ValueError("nothing to project: no arrays given")
        matrices = {name: self._check(np.asarray(X, dtype=np.float64), f"arrays[{name!r}]") for name, X in arrays.items()}
        widths = {name: X.shape[1] for name, X in matrices.items()}
        if len(set(widths.values())) > 1:
            raise ValueError(f"all arrays must have the same width (features), got {widths}")
        stacked = np.vstack(list(matrices.values()))
        if stacked.shape[0] < 3 or stacked.shape[1] < 2:
            raise ValueError(f"need at least 3 rows and 2 features in all, got {stacked.shape}")
        if n_neighbors < 2 or pca_dims < 2:
            raise ValueError(f"n_neighbors and pca_dims must be at least 2, got {n_neighbors} and {pca_dims}")
        self.method, self._coordinates = None, {}  # a fit that fails part-way leaves no stale map
        std = stacked.std(0)
        self._mean, self._scale = stacked.mean(0), np.where(std > 0, std, 1.0)
        self._umap = None
        Z = (stacked - self._mean) / self._scale
        if method == "pca":
            self._axes = _principal_axes(Z, 2)
            fitted = Z @ self._axes
        else:
            fitted = self._fit_umap(Z, seed, n_neighbors, pca_dims, umap)
        bounds = np.cumsum([0] + [len(X) for X in matrices.values()])
        self._coordinates = {name: fitted[start:stop] for name, start, stop in zip(matrices, bounds[:-1], bounds[1:])}
        self.method = method
        return self

    def _fit_umap(self, Z: np.ndarray, seed: int, n_neighbors: int, pca_dims: int, process: UmapProcess | None) -> np.ndarray:
        self._axes = _principal_axes(Z, pca_dims) if Z.shape[1] > pca_dims else None
        reduced = Z @ self._axes if self._axes is not None else Z
        neighbours = min(n_neighbors, len(Z) - 1)
        if process is not None:
            self._umap, fitted = process.fit(reduced, seed, neighbours)
            return fitted
        import umap  # heavy

        self._umap = umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=seed, n_jobs=1)
        return np.asarray(self._umap.fit_transform(reduced), dtype=np.float64)

    def transform(self, name: str | None, X: np.ndarray) -> np.ndarray:
        """Place new rows X (m, d) in the fitted map without refitting: (m, 2). `name`, when
        given, must be a fitted model (a check only: the map is shared by all models)."""
        if self.method is None:
            raise ValueError("the projection is not fitted: call fit() first")
        if name is not None and name not in self._coordinates:
            raise ValueError(f"unknown model {name!r}; fitted: {self.names}")
        X = self._check(np.asarray(X, dtype=np.float64), "X")
        if X.shape[1] != len(self._mean):
            raise ValueError(f"X has {X.shape[1]} features but the projection was fitted on {len(self._mean)}")
        Z = (X - self._mean) / self._scale
        if self.method == "pca":
            return Z @ self._axes
        reduced = Z @ self._axes if self._axes is not None else Z
        return np.asarray(self._umap.transform(reduced), dtype=np.float64)

    def coordinates(self, name: str) -> np.ndarray:
        """The fitted 2-D coordinates of model `name`, (n_name, 2)."""
        if name not in self._coordinates:
            raise ValueError(f"unknown model {name!r}; fitted: {self.names}")
        return self._coordinates[name].copy()

    def axis_ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """((xmin, xmax), (ymin, ymax)) covering every fitted model's points with a 5% margin
        of the span on each side: use the same ranges for all models' panels."""
        if not self._coordinates:
            raise ValueError("the projection is not fitted: call fit() first")
        return axis_ranges(np.vstack(list(self._coordinates.values())))

    @staticmethod
    def _check(X: np.ndarray, name: str) -> np.ndarray:
        if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(f"{name} must be a 2-D array with at least one row and column, got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError(f"{name} contains NaN or infinite values")
        return X


def axis_ranges(points: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """((xmin, xmax), (ymin, ymax)) covering (n, 2) `points` with a 5% margin of the span on
    each side (0.5 where the span is 0)."""
    ranges = []
    for low, high in zip(points.min(0), points.max(0)):
        pad = 0.05 * (high - low) if high > low else 0.5
        ranges.append((float(low - pad), float(high + pad)))
    return ranges[0], ranges[1]
