"""The app serving a baseline and a Vittle model of every family: each family's tiny random
model (tests/vittle/conftest.py's BUILDERS, through the `tiny_family` parameter of
tests/conftest.py) saved without and with a bottleneck, a `DemoService` on the pair, and one
whole turn through the service as the page's `run` makes it (prepare, the four answers, the
answer distributions and their charts, the panels, the turn's record). A family that cannot
score candidate answers (Qwen's 3-D positions) gets its turn without the charts and a note
saying why; a family that refuses the prefix cache is served without it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

QUESTION = "what color is the shape?"


@pytest.fixture
def served(save_tiny_family, tmp_path):
    from vittle.app.config import ServiceConfig
    from vittle.app.service import DemoService

    baseline = save_tiny_family(tmp_path / "baseline", bottleneck=False)
    vittle = save_tiny_family(tmp_path / "vittle")
    service = DemoService(ServiceConfig(baseline=str(baseline), vittle=str(vittle), vittle_l=None, warm_umap=False, reference_images=4,
                                        precompute=False, max_new_tokens=4, cache_dir=tmp_path / "cache")).start()
    try:
        assert service.wait_ready(120), "warm-up did not finish"
        assert service.startup_error is None, service.startup_error
        yield service
    finally:
        service.close()


def _image() -> Image.Image:
    """50 x 40, not square: a dynamic-resolution family's grid is not the square one."""
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8), "RGB")


def test_the_app_serves_a_pair_of_each_family(served):
    from vittle import families
    from vittle.app import ui_probe
    from vittle.app.inputs import InputError
    from vittle.app.record import TurnRecord, TurnSettings
    from vittle.app.service import ROLES
    from vittle.data import ImageEncoder

    service = served
    vittle = service.assistant("vittle-f")
    family = families.family_of(vittle.model)
    # the prefix cache (on by default) is skipped for a family that refuses it, not fatal
    refuses_cache = not family.positions_1d or bool(family.prefix_cache)
    for name in ("baseline", "vittle-f"):
        assert (service.assistant(name).prefix_cache is None) == refuses_cache, (family.name, name)
    assert "Models: " in service.status() and service.finding()

    # one turn as the page's `run` makes it
    query = service.prepare(_image(), QUESTION, "frost", 3, "char_typo", 2)
    for answers in service.answers(query):  # noqa: B007 (the last update holds all four)
        pass
    assert list(answers) == list(ROLES) and all(isinstance(a, str) and a for a in answers.values())
    turn = service.distributions(query, answers)
    baseline_chart, vittle_chart, effects = ui_probe.distribution_outputs(service, turn, "vittle-f")
    if family.positions_1d:
        assert not turn.unavailable and set(turn.distributions) == set(ROLES)
        for distribution in turn.distributions.values():
            assert sum(distribution.prob(c) for c in distribution.candidates) == pytest.approx(1.0, abs=1e-4)
        assert baseline_chart is not None and vittle_chart is not None and "total variation" in effects
    else:  # Qwen: no candidate scoring yet; the turn goes on without the charts and says why
        assert turn.distributions == {} and family.name in turn.unavailable
        assert "answer distributions is not supported yet" in turn.unavailable.lower()
        assert (baseline_chart, vittle_chart) == (None, None) and turn.unavailable in effects
        with pytest.raises(InputError, match=f"severity sweep scores candidate answers.*{family.name}"):
            service.sweep(_image(), QUESTION, "frost", "none")
    panels = service.panels(query, "vittle-f", "pca")
    numbers = panels.numbers
    labels = {service.label("baseline"), service.label("vittle-f")}
    assert set(numbers.layer) == {"baseline", "vittle-f"} and set(numbers.query_cosine_distance) == set(numbers.reference_cosine_mean) == labels
    assert all(np.isfinite(v) for v in [*numbers.query_cosine_distance.values(), *numbers.reference_cosine_mean.values()])
    assert numbers.posterior is not None and np.isfinite(numbers.posterior.visual_variance_mean)
    # the posterior per image token of the perturbed query, on the raster its image tokens hold: all of them, or
    # for a tiling family the base or global image's, which the titles name
    encoder = ImageEncoder(vittle.processor)
    count = encoder.num_tokens(encoder.encode(query.perturbed_image))
    raster = encoder.grid(query.perturbed_image)
    for name in ("variance", "kl", "overlay"):
        spec = panels.specs[name]
        grid = np.asarray(next(trace for trace in spec["data"] if trace["type"] == "heatmap")["z"], dtype=float)
        assert grid.shape == raster.shape and np.isfinite(grid).all(), (family.name, name, grid.shape, raster)
        title = spec["layout"]["title"]["text"]
        assert (f"the {raster.part}'s {raster.count} of {count} image tokens" in title) == (raster.count < count), (family.name, title)
    assert panels.specs["embeddings"] is not None and panels.specs["distances"] is not None
    # the turn's download keeps what was shown, the note included
    settings = TurnSettings(None, QUESTION, "frost", 3, "char_typo", 2, "vittle-f", None, "pca")
    record = ui_probe.turn_record(settings, query, answers, "", turn, panels)
    again = TurnRecord.from_json(record.to_json())
    assert again.distributions.unavailable == turn.unavailable and json.loads(record.to_json())["answers"] == answers
