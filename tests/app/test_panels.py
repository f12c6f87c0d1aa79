"""The page's panels (vittle.app.panels): each gives a value for every output it owns, cleared for
an empty turn and read from a real turn otherwise; the registry keeps /run's published order and
appends a new panel's outputs after it."""

from __future__ import annotations

import json
from pathlib import Path

import easy_vqa
import gradio as gr
import pytest
from gradio.components.plot import PlotData

from vittle.app import ui_probe
from vittle.app.panels import API_ORDER, PANELS, Page, Panel, TurnView
from vittle.app.record import ExampleFinder


@pytest.fixture(scope="module")
def page(service):
    with gr.Blocks():
        built = Page(service)
        built.build("results")
        with gr.Tabs():
            built.build("tabs")
    return built


@pytest.fixture(scope="module")
def turn(service, page, tmp_path_factory):
    """A whole turn of the embedded models, as the page's /run makes it."""
    image = easy_vqa.get_test_image_paths()[0]
    query = service.prepare(image, "what color is the shape?", "gaussian_noise", 3, "char_typo", 3)
    view = TurnView(query=query, vittle="vittle-f", label=service.label("vittle-f"))
    for view.answers in service.answers(query, "vittle-f"):
        pass
    view.domain = service.domain(query)
    view.distributions = service.distributions(query, view.answers, "vittle-f")
    view.panels = service.panels(query, "vittle-f", "pca")
    settings = ui_probe.settings_of(ExampleFinder([image]), image, query.question, "gaussian_noise", 3, "char_typo", 3, "vittle-f",
                                    None, "pca", service.training_alpha("vittle-f"))
    record = ui_probe.turn_record(settings, query, view.answers, view.marks, view.distributions, view.panels, view.domain)
    view.files = record.write(tmp_path_factory.mktemp("turn"), query.perturbed_image)
    view.link, view.record = ui_probe.link_markdown(settings, False), record.to_json()
    return view


AFTER = ["stale", "domain", "vittle_heading"]
"""The page's own components, set from the turn's record after it (not /run's outputs)."""


def test_the_registry_keeps_the_published_order_of_run_s_outputs(page):
    assert page.output_names() == list(API_ORDER)  # what API clients know, unchanged
    assert [type(p) for p in page.panels.values()] == list(PANELS)
    assert len({id(c) for c in page.turn_outputs()}) == len(API_ORDER)  # one component per name
    assert page.after_outputs() == [page.component(name) for name in AFTER]
    with pytest.raises(KeyError, match="no component 'nope'; outputs: perturbed_image"):
        page.component("nope")


def test_an_empty_turn_clears_every_output(page):
    updates = page.cleared()()
    assert set(updates) == {*page.turn_outputs(), *page.after_outputs()}
    for name in [*API_ORDER, "stale", "domain"]:
        assert updates[page.component(name)] in (None, ""), name
    assert updates[page.component("vittle_heading")] == gr.skip()  # the heading keeps the name of the model last shown


@pytest.mark.parametrize("name", [cls.name for cls in PANELS])
def test_each_panel_shows_a_turn(page, turn, name):
    panel = page[name]
    values = panel.values(turn)
    assert set(values) == set(panel.outputs)  # a value for each of its outputs, nothing else
    answers = turn.answers
    if name == "query":
        assert values["perturbed_question"] == turn.query.perturbed_question and values["perturbed_image"] == turn.query.perturbed_image
        assert values["header"].startswith("**Perturbation:** Gaussian noise (severity 3) + Keyboard typos (level 3)")
        assert turn.marks and turn.marks in values["header"]
        after = panel.after_values(json.loads(turn.record))
        assert after == {"stale": "", "domain": ""}  # an easy-vqa image: no badge
        photo = {**json.loads(turn.record), "domain": {"score": 0.3, "threshold": 0.05, "outside": True}}
        assert "Outside what these models were trained on" in panel.after_values(photo)["domain"]
    elif name == "answers":
        assert values == answers and values["baseline_clean"] == "red"
        assert panel.after_values(json.loads(turn.record)) == {"vittle_heading": "## Vittle (F)"}
    elif name == "distributions":
        assert isinstance(values["baseline_distribution"], PlotData) and isinstance(values["vittle_distribution"], PlotData)
        assert "total variation" in values["effects"]
    elif name == "summary":
        assert "Cosine distance between the clean and perturbed query" in values["summary"]
    elif name == "probe":
        assert [Path(f).suffix for f in values["download"]] == [".json", ".png"] and "example=0&" in values["link"]
        assert '"baseline_clean": "red"' in values["record"]
        domain = json.loads(values["record"])["domain"]  # the score is in turn.json too
        assert domain["outside"] is False and domain["score"] <= domain["threshold"]
    elif name == "posterior":
        assert all(isinstance(values[k], PlotData) for k in ("variance_plot", "kl_plot", "overlay_plot"))
        assert "posterior variance" in values["tokens"]
    elif name in ("map", "distances"):
        assert all(isinstance(v, PlotData) for v in values.values())
    elif name == "robustness":
        assert values == {} and {"robustness_table", "robustness_plot"} <= set(panel.parts)  # its own event fills it
    else:
        raise AssertionError(f"panel {name!r} has no test here")


def test_a_new_panel_is_its_class_and_its_registration(service):
    class Caption(Panel):
        name, place = "caption", "results"

        def build(self) -> None:
            self.outputs["caption"] = gr.Markdown(elem_id="caption")

        def values(self, view: TurnView) -> dict:
            return {"caption": view.query.question if view.query is not None else ""}

    class Broken(Caption):
        name = "broken"

        def values(self, view: TurnView) -> dict:
            return {}

    with gr.Blocks():
        page = Page(service, (*PANELS, Caption))
        page.build("results")
        page.build("tabs")
    assert page.output_names() == [*API_ORDER, "caption"]  # appended: older API clients keep their positions
    assert page.updates(TurnView())[page.component("caption")] == ""
    with gr.Blocks():
        broken = Page(service, (*PANELS, Broken))
        broken.build("results")
        broken.build("tabs")
    with pytest.raises(RuntimeError, match=r"panel 'broken' gave no value for \['caption'\]"):
        broken.updates(TurnView())
