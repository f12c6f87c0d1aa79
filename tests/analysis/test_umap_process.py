"""UMAP in a process of its own (`vittle.analysis.umap_process`): the same maps as in-process,
maps dropped when the server lets them go, a child that dies is started again."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

from vittle.analysis.projection import Projection
from vittle.analysis.umap_process import MapLost, UmapProcess

pytestmark = pytest.mark.slow


def arrays(n: int = 60, d: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {"baseline": rng.standard_normal((n, d)), "vittle": rng.standard_normal((n, d)) + 2.0}


@pytest.fixture(scope="module")
def process():
    pytest.importorskip("umap") if not os.environ.get("CI") else __import__("umap")  # as `require`, once per module
    maps = UmapProcess(seed=0)
    yield maps
    maps.close()
    assert not maps.alive


def test_a_map_fitted_in_the_process_equals_the_one_fitted_here(process):
    data = arrays()
    here = Projection().fit(data, method="umap", seed=0, pca_dims=8)
    there = Projection().fit(data, method="umap", seed=0, pca_dims=8, umap=process)
    assert process.warm_seconds is not None and process.warm_seconds > 0  # the child compiled before its first reply
    for name in here.names:
        np.testing.assert_allclose(there.coordinates(name), here.coordinates(name), atol=1e-4)
    probe = data["vittle"][:5]
    np.testing.assert_allclose(there.transform("vittle", probe), here.transform("vittle", probe), atol=1e-4)


def test_maps_the_server_lets_go_are_dropped_by_the_process(process):
    data = arrays(n=30)
    kept = Projection().fit(data, method="umap", seed=0, pca_dims=8, umap=process)
    gone = Projection().fit(data, method="umap", seed=1, pca_dims=8, umap=process)
    kept_key, gone_key = kept._umap.key, gone._umap.key
    assert {kept_key, gone_key} <= set(process.kept())
    del gone
    gc.collect()
    held = process.kept()  # the drop travels with this request
    assert gone_key not in held and kept_key in held
    assert kept.transform(None, data["baseline"][:2]).shape == (2, 2)


def test_a_process_that_died_is_started_again_and_its_maps_are_lost(require):
    require("umap")
    maps = UmapProcess(seed=0)
    try:
        data = arrays(n=30)
        first = Projection().fit(data, method="umap", seed=0, pca_dims=8, umap=maps)
        maps._process.kill()
        maps._process.wait()
        with pytest.raises(MapLost, match="restarted"):
            first.transform(None, data["baseline"][:2])
        again = Projection().fit(data, method="umap", seed=0, pca_dims=8, umap=maps)  # a new child
        assert maps.alive
        np.testing.assert_allclose(again.coordinates("baseline"), first.coordinates("baseline"), atol=1e-4)
    finally:
        maps.close()


def test_the_process_compiles_pynndescent_on_first_call_and_three_loops_serially():
    from vittle.analysis.umap_process import compile_options

    signature = "f4(f4[::1],f4[::1])"
    args, kwargs = compile_options((signature,), {"fastmath": True}, "pynndescent.distances")
    assert args == () and kwargs == {"cache": True, "fastmath": True}
    args, kwargs = compile_options((signature,), {}, "umap.utils")  # its types fix its random numbers: kept
    assert args == (signature,) and kwargs == {"cache": True}
    args, kwargs = compile_options((len,), {"cache": False}, "pynndescent.utils")  # a function, not a signature
    assert args == (len,) and kwargs == {"cache": False}
    assert compile_options((signature,), {}, "pynndescentish")[0] == (signature,)
    assert compile_options((), {"parallel": True}, "umap.utils", "fast_knn_indices")[1] == {"cache": True, "parallel": False}
    assert compile_options((), {"parallel": True}, "umap.umap_", "smooth_knn_dist")[1] == {"cache": True, "parallel": True}
