"""The page's tabs under the answers (Embeddings, Posterior, Distances, Robustness) and the
embedding map's controls: the join toggle and the kind filter act in the browser
(`vittle.app.map_script`); a click on a point loads that reference query into the inputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from vittle.app.examples import examples_dir
from vittle.app.map_figure import KINDS
from vittle.app.page import user_error

logger = logging.getLogger(__name__)

MAP_INTRO = ("The last input token's hidden state at the bottleneck layer for a reference set of easy-vqa queries, clean "
             "(blue) and perturbed (red), for both models on shared axes; circles are colour questions, squares shape "
             "questions, diamonds yes/no questions. The star is your clean query, the cross your perturbed one. Hover a point "
             "for its question, its answers and its images; click it to load that query into the inputs.")


@dataclass
class Tabs:
    embedding_plot: Any
    join: Any
    kinds: Any
    pick: Any
    variance_plot: Any
    kl_plot: Any
    overlay_plot: Any
    tokens: Any
    distance_plot: Any
    robustness_table: Any
    robustness_plot: Any


def build_tabs() -> Tabs:
    """The tabs' components (inside the page's Blocks)."""
    with gr.Tabs():
        with gr.Tab("Embeddings"):
            gr.Markdown(MAP_INTRO)
            with gr.Row():
                join = gr.Checkbox(False, label="Join each clean point to its perturbed twin", elem_id="map-join")
                kinds = gr.CheckboxGroup([(name, kind) for kind, (name, _) in KINDS.items()], value=list(KINDS),
                                         label="Question kinds shown", elem_id="map-kinds")
            embedding_plot = gr.Plot(label="Embedding map", elem_id="embedding-plot")
            pick = gr.Textbox("", visible="hidden", elem_id="map-pick")  # written by the page's script on a click
        with gr.Tab("Posterior"):
            gr.Markdown("Vittle's posterior for the perturbed query: variance and KL to the prior per image token "
                        "(over the image's token grid, and the variance over the image itself) and per text token. "
                        "The baseline has no posterior.")
            with gr.Row():
                variance_plot = gr.Plot(label="Variance per image token", elem_id="variance-plot")
                kl_plot = gr.Plot(label="KL per image token", elem_id="kl-plot")
            overlay_plot = gr.Plot(label="Variance over the image", elem_id="overlay-plot")
            tokens = gr.HTML(label="text tokens", elem_id="tokens")
        with gr.Tab("Distances"):
            gr.Markdown("Clean-vs-perturbed cosine distance of the same layer-l state over the reference set; dashed "
                        "lines mark your query. Smaller means the representation moved less under the shift. Hover a "
                        "bar for the queries in it.")
            distance_plot = gr.Plot(label="Cosine distances", elem_id="distance-plot")
        with gr.Tab("Robustness"):
            robustness_table = gr.Markdown(label="robustness table", elem_id="robustness-table")
            robustness_plot = gr.Plot(label="Accuracy vs severity", elem_id="robustness-plot")
    return Tabs(embedding_plot, join, kinds, pick, variance_plot, kl_plot, overlay_plot, tokens, distance_plot, robustness_table,
                robustness_plot)


def wire_map(tabs: Tabs, service: Any, image: Any, question: Any) -> None:
    """The map's events: the toggle and the filter run in the browser only; a picked point's
    query goes into the image and question inputs."""

    def load_reference(picked: str) -> tuple[Any, Any]:
        if not picked:
            return gr.skip(), gr.skip()
        try:
            index = int(picked.split(":", 1)[0])
        except ValueError as err:
            raise gr.Error(f"The map sent an unreadable point ({picked[:40]!r}).", print_exception=False) from err
        try:
            path, text = service.reference_query(index, reference_folder())
        except Exception as err:
            raise user_error(err) from err
        gr.Info(f"Loaded reference query #{index}: '{text}'. Press Run to compare the models on it.", title="Map")
        return str(path), text

    tabs.join.change(None, [tabs.join], None, js="(on) => { window.vittleMap && window.vittleMap.setJoin(on); }",
                     api_visibility="private")
    tabs.kinds.change(None, [tabs.kinds], None, js="(kinds) => { window.vittleMap && window.vittleMap.setKinds(kinds); }",
                      api_visibility="private")
    tabs.pick.change(load_reference, [tabs.pick], [image, question], api_visibility="private", queue=False)


def reference_folder() -> Path:
    """Where the reference images a click loads are copied: beside the examples, a folder the
    server may serve (and that the file sweep leaves alone)."""
    return examples_dir() / "reference"
