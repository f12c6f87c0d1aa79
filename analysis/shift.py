"""How a shift moves the layer-l states of a reference set, for several models at once.

    embeddings = {"baseline": {"clean": A, "frost:3": B}, "vittle": {"clean": C, "frost:3": D}}
    shift = ShiftAnalysis.compute(embeddings, map_specs=["frost:3"], method="pca")
    shift.coordinates["vittle"]["frost:3"]      # (n, 2) on the map every model shares
    shift.distances["vittle"]["frost:3"]        # (n,) cosine distance of each query to its clean twin
    shift.place("vittle", states)               # new states (e.g. the user's query) on the same map
    shift.summary()                             # mean / median distance and JSD per model and spec

The report (`vittle.analysis.report`) and the app's embedding and distance panels both use it, so the
two show the same numbers for the same embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vittle.analysis.metrics import cosine_distances, representation_jsd
from vittle.analysis.perturb import CLEAN
from vittle.analysis.projection import Projection, axis_ranges
from vittle.analysis.umap_process import UmapProcess


@dataclass
class ShiftAnalysis:
    specs: list[str]
    """The shifted specs (every spec of the embeddings but "clean"), in order."""
    map_specs: list[str]
    """The shifted specs on the map, which is fitted on every model's clean and map-spec rows."""
    method: str
    """"pca" or "umap"."""
    coordinates: dict[str, dict[str, np.ndarray]]
    """model -> "clean" or map spec -> (n, 2) map coordinates."""
    distances: dict[str, dict[str, np.ndarray]]
    """model -> shifted spec -> (n,) cosine distance between each clean state and its shifted twin."""
    embeddings: dict[str, dict[str, np.ndarray]] | None = None
    """model -> spec -> (n, d) states; not kept by `from_json` (the report stores no states)."""
    projection: Any = None
    """The fitted `vittle.analysis.projection.Projection` (for `place`); None after `from_json`."""
    _summary: dict[str, dict[str, dict[str, float]]] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def compute(cls, embeddings: Mapping[str, Mapping[str, np.ndarray]], map_specs: Sequence[str] | None = None,
                method: str = "pca", seed: int = 0, umap: UmapProcess | None = None) -> ShiftAnalysis:
        """`embeddings`: model -> spec -> (n, d), each model with a "clean" entry whose rows
        pair with every other spec's. `map_specs` (default: every shifted spec) are drawn.
        `umap`: where a UMAP map is fitted (`Projection.fit`)."""
        if not embeddings:
            raise ValueError("no models to analyse")
        models = {name: dict(per_spec) for name, per_spec in embeddings.items()}
        for name, per_spec in models.items():
            if CLEAN not in per_spec:
                raise ValueError(f"{name}: the embeddings need a {CLEAN!r} entry to compare against; got {list(per_spec)}")
        specs = [s for s in next(iter(models.values())) if s != CLEAN]
        for name, per_spec in models.items():
            if [s for s in per_spec if s != CLEAN] != specs:
                raise ValueError(f"every model needs the same specs; {name} has {[s for s in per_spec if s != CLEAN]}, not {specs}")
        mapped = list(specs if map_specs is None else map_specs)
        missing = [s for s in mapped if s not in specs]
        if missing:
            raise ValueError(f"map specs {missing} are not among the embedded specs {specs}")
        roles = [CLEAN, *mapped]
        # One map over every model's rows, so all panels share their axes; keys keep model and role apart.
        projection = Projection().fit({f"{name}\t{role}": per_spec[role] for name, per_spec in models.items() for role in roles},
                                      method=method, seed=seed, umap=umap)
        coordinates = {name: {role: projection.coordinates(f"{name}\t{role}") for role in roles} for name in models}
        distances = {name: {s: cosine_distances(per_spec[CLEAN], per_spec[s]) for s in specs} for name, per_spec in models.items()}
        return cls(specs=specs, map_specs=mapped, method=method, coordinates=coordinates, distances=distances,
                   embeddings=models, projection=projection)

    @property
    def models(self) -> list[str]:
        return list(self.distances)

    def place(self, model: str, states: np.ndarray) -> np.ndarray:
        """New layer-l states (m, d) of `model` on the shared map: (m, 2)."""
        if self.projection is None:
            raise ValueError("this analysis was read back from JSON and has no fitted map to place new states on")
        if model not in self.coordinates:
            raise ValueError(f"unknown model {model!r}; analysed: {', '.join(self.models)}")
        return self.projection.transform(f"{model}\t{CLEAN}", states)

    def axis_ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """((xmin, xmax), (ymin, ymax)) over every model's map points with a 5% margin: the
        same ranges for every panel."""
        return axis_ranges(np.vstack([xy for per_role in self.coordinates.values() for xy in per_role.values()]))

    def mean_distance(self, model: str, spec: str) -> float:
        return float(np.mean(self.distances[model][spec]))

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """model -> spec -> mean and median cosine distance (in [0, 2]), the matrix-based JSD
        between the clean and shifted sets (nats, in [0, log 2]; None without the states) and n.
        Computed once."""
        if self._summary is None:
            self._summary = {}
            for name, per_spec in self.distances.items():
                states = (self.embeddings or {}).get(name)
                self._summary[name] = {spec: {
                    "cosine_mean": float(np.mean(d)), "cosine_median": float(np.median(d)),
                    "jsd": representation_jsd(states[CLEAN], states[spec]) if states is not None else None, "n": len(d),
                } for spec, d in per_spec.items()}
        return self._summary

    def to_json(self) -> dict[str, Any]:
        """Everything but the states and the fitted map (arrays as lists)."""
        return {"specs": self.specs, "map_specs": self.map_specs, "method": self.method, "summary": self.summary(),
                "coordinates": {m: {r: xy.tolist() for r, xy in roles.items()} for m, roles in self.coordinates.items()},
                "distances": {m: {s: d.tolist() for s, d in per.items()} for m, per in self.distances.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShiftAnalysis:
        return cls(specs=list(data["specs"]), map_specs=list(data["map_specs"]), method=data["method"],
                   coordinates={m: {r: np.asarray(xy, dtype=np.float64).reshape(-1, 2) for r, xy in roles.items()}
                                for m, roles in data["coordinates"].items()},
                   distances={m: {s: np.asarray(d, dtype=np.float64) for s, d in per.items()} for m, per in data["distances"].items()},
                   _summary={m: dict(per) for m, per in data["summary"].items()})
