"""The page's panels, each one unit: its components (made by `build` where the layout places it),
its values for a turn (`values`, read from a `TurnView`), and the events that concern it alone.

    page = Page(service)                      # every panel of PANELS
    page.build("results")                     # inside the results column: the panels placed there
    page.build("tabs")                        # inside gr.Tabs
    yield page.updates(view)                  # {component: value} for every output of a turn

A turn's events return Gradio's dictionary form over `page.turn_outputs()`. Their order is what
`/run` returns to an API client: `API_ORDER` keeps the published positions and the outputs of a
panel added later are appended after them, so older clients read the same positions. What only
the page needs (the model heading, the stale line, the domain badge) is a panel's `after`
components, set from the turn's record by an event that follows the turn (`after_updates`), so
/run's outputs stay those clients know. Adding a panel is its class here (or in its own module),
its name in `PANELS` and its test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import gradio as gr
from gradio.components.plot import PlotData

from vittle.analysis.domain import DomainVerdict
from vittle.app.components import ServedImage
from vittle.app.examples import examples_dir
from vittle.app.map_figure import KINDS
from vittle.app.page import user_error
from vittle.app.presentation import answer_marks
from vittle.app.query import ROLES
from vittle.app.ui_probe import DISTRIBUTION_INTRO, distribution_outputs

API_ORDER = ("perturbed_image", "perturbed_question", "header", "baseline_clean", "baseline_perturbed", "vittle_clean",
             "vittle_perturbed", "embedding_plot", "distance_plot", "variance_plot", "kl_plot", "tokens", "summary",
             "baseline_distribution", "vittle_distribution", "effects", "download", "link", "overlay_plot", "record")
"""/run's outputs as published (README, gradio_client); a new panel's outputs come after these."""

SCROLL_TO_INPUTS = "() => { document.querySelector('#query-image')?.scrollIntoView({behavior: 'smooth', block: 'start'}); }"

MAP_INTRO = ("The last input token's hidden state at the bottleneck layer for a reference set of easy-vqa queries, clean "
             "(blue) and perturbed (red), for both models on shared axes; circles are colour questions, squares shape "
             "questions, diamonds yes/no questions. The star is your clean query, the cross your perturbed one. Hover a point "
             "for its question, its answers and its images; click it to load that query into the inputs.")


@dataclass
class TurnView:
    """What a turn has produced so far; the empty view is a cleared screen (an error, or a new
    turn, never leaves an earlier query's results on screen)."""

    query: Any = None
    """The prepared query (`vittle.app.query.Query`)."""
    vittle: str = "vittle-f"
    answers: dict[str, str] = field(default_factory=dict)
    """Role -> answer (`ROLES`); empty until the models have answered."""
    distributions: Any = None
    """The answers' `TurnDistributions`."""
    panels: Any = None
    """The turn's `vittle.app.presentation.Panels` (figures, token highlighting, summary)."""
    files: list[str] | None = None
    link: str = ""
    record: str = ""
    """The turn's record as JSON (the sweep joins it)."""
    domain: Any = None
    """The query image's `DomainVerdict` (None: not scored); the page shows it from the record."""

    @property
    def marks(self) -> str:
        return answer_marks(self.answers, self.label) if self.answers else ""

    label: str = "Vittle"
    """The Vittle model's name on the page."""


def figure_value(panels: Any, name: str) -> PlotData | None:
    """One of a turn's figures as `gr.Plot`'s value (plotly JSON), or None."""
    if panels is None:
        return None
    text = panels.json(name) if name in panels.specs else None
    return None if text is None else PlotData(type="plotly", plot=text)


class Panel:
    """A unit of the page. `build` makes its components inside the current Blocks context and
    records the ones a turn updates in `outputs` (name -> component); `values` gives each of
    them its value for a view; `wire` adds the events that concern this panel alone."""

    name: ClassVar[str] = ""
    place: ClassVar[str] = "results"
    """Where the layout builds it: "results" (the column beside the inputs) or "tabs"."""

    def __init__(self, service: Any):
        self.service = service
        self.outputs: dict[str, Any] = {}
        self.after: dict[str, Any] = {}
        """Components set once a turn is complete, from its record (`after_values`): the page's
        own, not among /run's outputs, so that API clients keep the outputs they know."""
        self.parts: dict[str, Any] = {}
        """Components that no turn updates (buttons, toggles), by name."""

    def build(self) -> None:
        raise NotImplementedError

    def values(self, view: TurnView) -> dict[str, Any]:
        """Name -> value for every name in `outputs`."""
        return {}

    def after_values(self, record: dict[str, Any]) -> dict[str, Any]:
        """Name -> value for every name in `after`, from a turn's record (`TurnRecord` as a
        dict; empty: the screen is being cleared)."""
        return {}

    def wire(self, page: Page, inputs: dict[str, Any]) -> None:
        """This panel's own events (`inputs`: the query's input components by name)."""


class QueryPanel(Panel):
    """The perturbed image and question, the header (the perturbation, notes, flips), the badge of
    an image unlike the training images, and the line that marks results of earlier settings."""

    name = "query"

    def build(self) -> None:
        self.after["stale"] = gr.Markdown("", elem_id="stale")
        self.outputs = {
            "perturbed_image": ServedImage(label="Perturbed image", interactive=False, height=220, elem_id="perturbed-image"),
            "perturbed_question": gr.Textbox(label="Perturbed question", interactive=False, elem_id="perturbed-question"),
            "header": gr.Markdown(label="perturbation", elem_id="perturbation"),
        }
        self.after["domain"] = gr.Markdown("", elem_id="domain-badge")

    def values(self, view: TurnView) -> dict[str, Any]:
        query = view.query
        if query is None:
            return {"perturbed_image": None, "perturbed_question": "", "header": ""}
        notes = "; ".join(query.notes)
        header = f"**Perturbation:** {query.label}" + (f"  \n_Note: {notes}_" if notes else "")
        header += f"  \n{view.marks}" if view.marks else ""
        return {"perturbed_image": query.perturbed_image, "perturbed_question": query.perturbed_question, "header": header}

    def after_values(self, record: dict[str, Any]) -> dict[str, Any]:
        domain = record.get("domain")
        badge = DomainVerdict(domain["score"], domain["threshold"]).badge() if domain else ""
        return {"stale": "", "domain": badge}


class AnswersPanel(Panel):
    """The four answers: baseline and Vittle, clean and perturbed."""

    name = "answers"

    def build(self) -> None:
        with gr.Row(equal_height=True):
            with gr.Column(min_width=160):
                gr.Markdown("## Baseline")
                self.outputs["baseline_clean"] = gr.Textbox(label="Baseline: clean query", interactive=False, elem_id="baseline-clean")
                self.outputs["baseline_perturbed"] = gr.Textbox(label="Baseline: perturbed query", interactive=False,
                                                                elem_id="baseline-perturbed")
            with gr.Column(min_width=160):
                # the model that produced the answers under it: set by each turn, not by the model choice
                self.after["vittle_heading"] = gr.Markdown(f"## {self.service.label('vittle-f')}", elem_id="vittle-heading")
                self.outputs["vittle_clean"] = gr.Textbox(label="Vittle: clean query", interactive=False, elem_id="vittle-clean")
                self.outputs["vittle_perturbed"] = gr.Textbox(label="Vittle: perturbed query", interactive=False,
                                                              elem_id="vittle-perturbed")

    def values(self, view: TurnView) -> dict[str, Any]:
        return {role: view.answers.get(role, "") for role in ROLES}

    def after_values(self, record: dict[str, Any]) -> dict[str, Any]:
        vittle = record.get("settings", {}).get("vittle")
        return {"vittle_heading": f"## {self.service.label(vittle)}" if vittle else gr.skip()}  # cleared: the last name stays


class DistributionsPanel(Panel):
    """Each model's answer probabilities, clean and perturbed, and the shift's effect in numbers."""

    name = "distributions"

    def build(self) -> None:
        gr.Markdown(DISTRIBUTION_INTRO)
        with gr.Row():
            self.outputs["baseline_distribution"] = gr.Plot(label="Baseline: answer probabilities", elem_id="baseline-distribution",
                                                            min_width=160)
            self.outputs["vittle_distribution"] = gr.Plot(label="Vittle: answer probabilities", elem_id="vittle-distribution",
                                                          min_width=160)
        self.outputs["effects"] = gr.Markdown(label="the shift's effect", elem_id="distribution-effects")

    def values(self, view: TurnView) -> dict[str, Any]:
        if view.distributions is None:
            return {"baseline_distribution": None, "vittle_distribution": None, "effects": ""}
        baseline, vittle, effects = distribution_outputs(self.service, view.distributions, view.vittle)
        return {"baseline_distribution": baseline, "vittle_distribution": vittle, "effects": effects}


class SummaryPanel(Panel):
    """The panels' numbers in words (the query's cosine distances, the posterior)."""

    name = "summary"

    def build(self) -> None:
        self.outputs["summary"] = gr.Markdown(label="summary", elem_id="summary")

    def values(self, view: TurnView) -> dict[str, Any]:
        return {"summary": view.panels.summary if view.panels is not None else ""}


class ProbePanel(Panel):
    """Probe further: the severity sweep (its own event, `/sweep`), the turn's download and link,
    and the turn's record (hidden; the sweep joins it)."""

    name = "probe"

    def build(self) -> None:
        # closed on a first visit: fewer things to read before Run, and its parts are mounted when it opens
        with gr.Accordion("Probe further: severity sweep, download, link", open=False, elem_id="probe"):
            self.parts["sweep_button"] = gr.Button("Sweep severities 1-5 (both models)", elem_id="sweep")
            self.parts["sweep_plot"] = gr.Plot(label="Severity sweep", elem_id="sweep-plot")
            self.parts["sweep_summary"] = gr.Markdown(elem_id="sweep-summary")
            self.outputs["download"] = gr.File(label="This turn: JSON with every number shown, and the perturbed image",
                                               file_count="multiple", interactive=False, elem_id="download")
            self.outputs["link"] = gr.Markdown(elem_id="share-link")
            # not gr.State: a page with state holds a heartbeat connection open, and a server
            # stopped by SIGTERM then times out waiting for it instead of deleting its files
            self.outputs["record"] = gr.Textbox("", visible=False, elem_id="turn-record")

    def values(self, view: TurnView) -> dict[str, Any]:
        return {"download": view.files, "link": view.link, "record": view.record}

    def downloads(self) -> Path:
        """Where a turn's and a sweep's files go (inside the app's own folder)."""
        return Path(self.outputs["download"].GRADIO_CACHE) / "vittle-turns"


class MapPanel(Panel):
    """The Embeddings tab: the layer-l map, its join toggle and kind filter (acting in the
    browser, `vittle.app.map_script`), and a click on a point loading that query into the inputs."""

    name = "map"
    place = "tabs"

    def build(self) -> None:
        with gr.Tab("Embeddings"):
            gr.Markdown(MAP_INTRO)
            with gr.Row():
                self.parts["join"] = gr.Checkbox(False, label="Join each clean point to its perturbed twin", elem_id="map-join")
                self.parts["kinds"] = gr.CheckboxGroup([(name, kind) for kind, (name, _) in KINDS.items()], value=list(KINDS),
                                                       label="Question kinds shown", elem_id="map-kinds")
            self.outputs["embedding_plot"] = gr.Plot(label="Embedding map", elem_id="embedding-plot")
            self.parts["pick"] = gr.Textbox("", visible="hidden", elem_id="map-pick")  # written by the page's script on a click

    def values(self, view: TurnView) -> dict[str, Any]:
        return {"embedding_plot": figure_value(view.panels, "embeddings")}

    def wire(self, page: Page, inputs: dict[str, Any]) -> None:
        service = self.service

        def load_reference(picked: str) -> tuple[Any, Any, Any]:
            if not picked:
                return gr.skip(), gr.skip(), gr.skip()
            try:
                index = int(picked.split(":", 1)[0])
            except ValueError as err:
                raise gr.Error(f"The map sent an unreadable point ({picked[:40]!r}).", print_exception=False) from err
            try:
                path, text = service.reference_query(index, reference_folder())
            except Exception as err:
                raise user_error(err) from err
            message = f"Loaded reference query #{index} from the map: '{text}'. Press Run to compare the models on it."
            gr.Info(message, title="Map")
            return str(path), text, message

        join, kinds = self.parts["join"], self.parts["kinds"]
        join.change(None, [join], None, js="(on) => { window.vittleMap && window.vittleMap.setJoin(on); }", api_visibility="private")
        kinds.change(None, [kinds], None, js="(kinds) => { window.vittleMap && window.vittleMap.setKinds(kinds); }",
                     api_visibility="private")
        # queued: Gradio delivers gr.Info through the queue; the notice says it on the page as well, and the inputs scroll into view
        self.parts["pick"].change(load_reference, [self.parts["pick"]], [inputs["image"], inputs["question"], inputs["notice"]],
                                  api_visibility="private").then(None, js=SCROLL_TO_INPUTS)


class PosteriorPanel(Panel):
    """The Posterior tab: variance and KL per image token, the variance over the image, and the
    text tokens highlighted by their variance."""

    name = "posterior"
    place = "tabs"

    def build(self) -> None:
        with gr.Tab("Posterior"):
            gr.Markdown("Vittle's posterior for the perturbed query: variance and KL to the prior per image token "
                        "(over the image's token grid, and the variance over the image itself) and per text token. "
                        "The baseline has no posterior.")
            with gr.Row():
                self.outputs["variance_plot"] = gr.Plot(label="Variance per image token", elem_id="variance-plot")
                self.outputs["kl_plot"] = gr.Plot(label="KL per image token", elem_id="kl-plot")
            self.outputs["overlay_plot"] = gr.Plot(label="Variance over the image", elem_id="overlay-plot")
            self.outputs["tokens"] = gr.HTML(label="text tokens", elem_id="tokens")

    def values(self, view: TurnView) -> dict[str, Any]:
        panels = view.panels
        return {"variance_plot": figure_value(panels, "variance"), "kl_plot": figure_value(panels, "kl"),
                "overlay_plot": figure_value(panels, "overlay"),
                "tokens": panels.tokens_html if panels is not None else ""}


class DistancesPanel(Panel):
    """The Distances tab: clean-vs-perturbed cosine distances over the reference set."""

    name = "distances"
    place = "tabs"

    def build(self) -> None:
        with gr.Tab("Distances"):
            gr.Markdown("Clean-vs-perturbed cosine distance of the same layer-l state over the reference set; dashed "
                        "lines mark your query. Smaller means the representation moved less under the shift. Hover a "
                        "bar for the queries in it.")
            self.outputs["distance_plot"] = gr.Plot(label="Cosine distances", elem_id="distance-plot")

    def values(self, view: TurnView) -> dict[str, Any]:
        return {"distance_plot": figure_value(view.panels, "distances")}


class RobustnessPanel(Panel):
    """The Robustness tab: the study's numbers for the chosen Vittle model (its own event,
    `/robustness`, on load and when the model changes)."""

    name = "robustness"
    place = "tabs"

    def build(self) -> None:
        with gr.Tab("Robustness"):  # the picture first, the tables after it
            self.parts["robustness_plot"] = gr.Plot(label="Robustness at a glance", elem_id="robustness-plot")
            self.parts["robustness_table"] = gr.Markdown(label="robustness table", elem_id="robustness-table")


PANELS: tuple[type[Panel], ...] = (QueryPanel, AnswersPanel, DistributionsPanel, SummaryPanel, ProbePanel, MapPanel,
                                   PosteriorPanel, DistancesPanel, RobustnessPanel)
"""Every panel of the page, in layout order within its place."""


class Page:
    """The registry: the panels of `PANELS`, their components by name and a turn's updates."""

    def __init__(self, service: Any, panels: tuple[type[Panel], ...] = PANELS):
        self.panels = {cls.name: cls(service) for cls in panels}

    def __getitem__(self, name: str) -> Panel:
        return self.panels[name]

    def build(self, place: str) -> None:
        for panel in self.panels.values():
            if panel.place == place:
                panel.build()

    def wire(self, inputs: dict[str, Any]) -> None:
        for panel in self.panels.values():
            panel.wire(self, inputs)

    def component(self, name: str) -> Any:
        """A turn output, an `after` component or a part, by name (a KeyError naming the outputs otherwise)."""
        for kind in ("outputs", "after", "parts"):
            for panel in self.panels.values():
                if name in getattr(panel, kind):
                    return getattr(panel, kind)[name]
        raise KeyError(f"no component {name!r}; outputs: {', '.join(self.output_names())}")

    def output_names(self) -> list[str]:
        """Every turn output's name: the published order, then any other panel's in registry order."""
        names = [name for panel in self.panels.values() for name in panel.outputs]
        return [n for n in API_ORDER if n in names] + [n for n in names if n not in API_ORDER]

    def turn_outputs(self) -> list[Any]:
        return [self.component(name) for name in self.output_names()]

    def after_outputs(self) -> list[Any]:
        """The components set once a turn is complete (not /run's outputs), in registry order."""
        return [component for panel in self.panels.values() for component in panel.after.values()]

    def after_updates(self, record: str) -> dict[Any, Any]:
        """{component: value} for every `after` component, from a turn's record (JSON; "": cleared)."""
        data = json.loads(record) if record else {}
        updates: dict[Any, Any] = {}
        for panel in self.panels.values():
            values = panel.after_values(data)
            missing = set(panel.after) - set(values)
            if missing:
                raise RuntimeError(f"panel {panel.name!r} gave no value for {sorted(missing)}")
            updates.update({panel.after[name]: value for name, value in values.items()})
        return updates

    def updates(self, view: TurnView) -> dict[Any, Any]:
        """{component: value} for every turn output: a value for each, never a skip (a skipped
        component makes Gradio rebuild its config, the costliest part of a turn under load)."""
        updates: dict[Any, Any] = {}
        for panel in self.panels.values():
            values = panel.values(view)
            missing = set(panel.outputs) - set(values)
            if missing:
                raise RuntimeError(f"panel {panel.name!r} gave no value for {sorted(missing)}")
            updates.update({panel.outputs[name]: value for name, value in values.items()})
        return updates

    def cleared(self) -> Callable[[], dict[Any, Any]]:
        """A callback that empties every turn output and every `after` component (its outputs:
        `turn_outputs() + after_outputs()`)."""
        return lambda: {**self.updates(TurnView()), **self.after_updates("")}


def reference_folder() -> Path:
    """Where the reference images a click loads are copied: beside the examples, a folder the
    server may serve (and that the file sweep leaves alone)."""
    return examples_dir() / "reference"
