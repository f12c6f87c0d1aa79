"""ShiftAnalysis: one map, distances and summaries for several models, and its JSON round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vittle.analysis.projection import Projection
from vittle.analysis.shift import ShiftAnalysis


def _embeddings(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((20, 6)), rng.standard_normal((20, 6))
    return {"a": {"clean": X, "same": X.copy(), "flipped": -X, "other": rng.standard_normal((20, 6))},
            "b": {"clean": Y, "same": Y + 1e-3, "flipped": -Y, "other": Y}}


def test_distances_and_summary_by_hand():
    shift = ShiftAnalysis.compute(_embeddings(), map_specs=["other"])
    assert shift.specs == ["same", "flipped", "other"] and shift.models == ["a", "b"]
    summary = shift.summary()["a"]
    assert summary["same"]["cosine_mean"] == pytest.approx(0.0, abs=1e-12) and summary["same"]["jsd"] == pytest.approx(0.0, abs=1e-9)
    # -X points the other way (distance 2) but has the same uncentred covariance (JSD 0)
    assert summary["flipped"]["cosine_median"] == pytest.approx(2.0) and summary["flipped"]["jsd"] == pytest.approx(0.0, abs=1e-9)
    assert 0.0 < summary["other"]["jsd"] <= math.log(2) and summary["other"]["n"] == 20
    np.testing.assert_allclose(shift.distances["b"]["other"], np.zeros(20), atol=1e-12)
    assert shift.mean_distance("a", "flipped") == pytest.approx(2.0)


def test_one_map_for_every_model_and_new_points_on_it():
    embeddings = _embeddings()
    shift = ShiftAnalysis.compute(embeddings, map_specs=["flipped"], method="pca")
    # the same fit as one Projection over every model's clean and mapped rows, in that order
    reference = Projection().fit({f"{m}:{r}": embeddings[m][r] for m in ("a", "b") for r in ("clean", "flipped")})
    for m in ("a", "b"):
        assert set(shift.coordinates[m]) == {"clean", "flipped"}
        np.testing.assert_allclose(np.abs(shift.coordinates[m]["flipped"]), np.abs(reference.coordinates(f"{m}:flipped")), atol=1e-9)
        np.testing.assert_allclose(shift.place(m, embeddings[m]["clean"][:3]), shift.coordinates[m]["clean"][:3], atol=1e-9)
    (x0, x1), (y0, y1) = shift.axis_ranges()
    points = np.vstack([xy for roles in shift.coordinates.values() for xy in roles.values()])
    assert x0 < points[:, 0].min() and points[:, 0].max() < x1 and y0 < points[:, 1].min() and points[:, 1].max() < y1


def test_json_round_trip_keeps_every_number_but_the_states():
    shift = ShiftAnalysis.compute(_embeddings(), map_specs=["same", "other"])
    back = ShiftAnalysis.from_json(json.loads(json.dumps(shift.to_json())))
    assert back.specs == shift.specs and back.map_specs == ["same", "other"] and back.summary() == shift.summary()
    for m in shift.models:
        for role, xy in shift.coordinates[m].items():
            np.testing.assert_allclose(back.coordinates[m][role], xy)
        for spec, d in shift.distances[m].items():
            np.testing.assert_allclose(back.distances[m][spec], d)
    np.testing.assert_allclose(back.axis_ranges(), shift.axis_ranges())
    with pytest.raises(ValueError, match="no fitted map"):
        back.place("a", np.zeros((1, 6)))


def test_bad_input_names_the_problem():
    X = np.ones((4, 3))
    with pytest.raises(ValueError, match="'clean' entry"):
        ShiftAnalysis.compute({"a": {"frost:3": X}})
    with pytest.raises(ValueError, match="same specs"):
        ShiftAnalysis.compute({"a": {"clean": X, "frost:3": X}, "b": {"clean": X, "fog:3": X}})
    with pytest.raises(ValueError, match="not among the embedded specs"):
        ShiftAnalysis.compute({"a": {"clean": X, "frost:3": X}}, map_specs=["fog:3"])
    with pytest.raises(ValueError, match="no models"):
        ShiftAnalysis.compute({})
    with pytest.raises(ValueError, match="unknown model"):
        ShiftAnalysis.compute(_embeddings()).place("c", np.zeros((1, 6)))
