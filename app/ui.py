"""The Gradio Blocks of the demo: `build_demo(service) -> gr.Blocks`.

Plain callbacks around `vittle.app.service.DemoService`; no model or torch code here. Every event
has an `api_name`, so everything the page does can also be called from `gradio_client`:
`/run` (a whole turn, streamed), `/embeddings` (the map for another method or model) and
`/robustness` (the lab's table and curves).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr
from gradio.components.plot import PlotData

from vittle.app.components import QueryImage, ServedImage
from vittle.app.examples import example_rows
from vittle.app.inputs import InputError, whole_number
from vittle.app.presentation import FIGURES, answer_marks
from vittle.app.service import NONE, ROLES, DemoService

logger = logging.getLogger(__name__)

INTRO = """# Vittle: baseline vs Vittle on the same perturbed query
Upload an image (or pick an example), ask a question and choose a visual and/or text
perturbation. Both models answer the clean and the perturbed query; the tabs below show what
happens inside, at the layer where Vittle's bottleneck sits. The default models are small
LLaVA-architecture models trained on easy-vqa (64 x 64 shapes: ask about the shape's colour,
its shape, or whether there is a given shape or colour)."""


SCROLL_TO_ANSWERS = ("() => { if (window.innerWidth < 800) { "
                     "document.querySelector('#perturbation')?.scrollIntoView({behavior: 'smooth', block: 'start'}); } }")

QUESTION_TEMPLATES = [["What color is the shape?"], ["What shape is this?"], ["Is there a red shape?"], ["Is there not a circle?"],
                      ["Does this image contain a triangle?"]]
"""easy-vqa's kinds of question: colour, shape, yes/no (also negated)."""

CSS = """
#query-image img, #perturbed-image img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
#robustness-table table { display: block; overflow-x: auto; }
@media (max-width: 800px) { .tab-container button { padding-left: 8px; padding-right: 8px; font-size: 13px; } }
"""
"""The page's own style (passed to `launch`): a small image (easy-vqa's are 64 x 64) fills its box,
enlarged by nearest neighbour, so a corruption's pixels can be seen."""


def _choices(modality: str) -> list[tuple[str, str]]:
    """The menu: every perturbation of `modality` whose data is installed here."""
    from vittle.analysis.perturb import list_perturbations, unavailable

    return [("None", NONE)] + [(p.label, p.name) for p in list_perturbations(modality) if unavailable(p.name) is None]


def hidden_note() -> str:
    """A line naming the perturbations hidden on this server and what they need ("" if none)."""
    from vittle.analysis.perturb import list_perturbations, unavailable

    reasons: dict[str, list[str]] = {}
    for perturbation in list_perturbations():
        why = unavailable(perturbation.name)
        if why:
            reasons.setdefault(why, []).append(perturbation.label)
    if not reasons:
        return ""
    return "Not offered on this server: " + "; ".join(f"{', '.join(labels)} ({why})" for why, labels in reasons.items()) + "."


def _user_error(err: Exception) -> gr.Error:
    """A message for the page: the input error as written, anything else without internals."""
    if isinstance(err, InputError):
        return gr.Error(str(err), title="Cannot use this input", print_exception=False)
    logger.exception("request failed")
    return gr.Error(f"The server could not complete this request ({type(err).__name__}: {err}). "
                    "Other requests are not affected.", title="Server error")


def _plots(panels: Any) -> list[PlotData | None]:
    """The turn's four figures as plotly JSON for `gr.Plot` (no Figure objects to build)."""
    return [None if (text := panels.json(name)) is None else PlotData(type="plotly", plot=text) for name in FIGURES]


FILE_LIFETIME_S = 3600
"""Uploads and output images older than this are deleted (checked every 10 minutes), and all
of them when the server stops: a long-running Space does not fill its disk."""


def build_demo(service: DemoService, title: str = "Vittle demo", file_lifetime_s: int = FILE_LIFETIME_S) -> gr.Blocks:
    """The whole app around a (started) service."""

    def ready() -> None:
        service.wait_models()  # the answers need the models only; the panels wait for their reference sets
        if service.startup_error:
            raise gr.Error(f"The models could not be loaded, so the app cannot answer: {service.startup_error}",
                           title="Models not loaded", print_exception=False)

    def need_image(image: Any) -> None:
        if image is None:  # the models answer questions about an image: without one they only babble
            raise gr.Error("Choose an image first (upload one or pick an example): the models answer questions about an image.",
                           title="No image", print_exception=False)

    def clear() -> tuple[Any, ...]:
        """Empty outputs: an error, or a new turn, never leaves an earlier query's results on screen."""
        return (None, "", "", "", "", "", "", None, None, None, None, "", "")

    def run(image: str | None, question: str, visual: str, severity: int, text: str, level: int, vittle: str,
            method: str) -> Iterator[tuple[Any, ...]]:
        """Ask a baseline and a Vittle model the same question about an image, clean and perturbed.

        Args:
            image: the image file (PNG, JPEG, WebP, ...).
            question: the question about it.
            visual: a visual corruption (e.g. frost, gaussian_noise) or "none".
            severity: the corruption's severity, 1 to 5.
            text: a text perturbation (e.g. char_typo, word_swap, greek) or "none".
            level: the text perturbation's level, 1 to 5.
            vittle: which Vittle model: "vittle-f" or "vittle-l".
            method: the embedding map's projection, "pca" or "umap".

        Returns:
            The perturbed image and question, a header, the four answers (baseline and Vittle, clean
            and perturbed), the panels' figures (embedding map, cosine distances, posterior variance
            and KL), the token highlighting and a summary.
        """
        try:
            ready()
            need_image(image)
            query = service.prepare(image, question, visual, whole_number("severity", severity), text, whole_number("text level", level))
            notes = "; ".join(query.notes)
            header = f"**Perturbation:** {query.label}" + (f"  \n_Note: {notes}_" if notes else "")
            # Three updates, each with every output's value: gr.skip() would be cheaper to write but
            # makes Gradio rebuild the component's config, the costliest part of a turn under load
            answers = dict.fromkeys(ROLES, "")
            cleared = (None, None, None, None, "", "")  # no panels of an earlier query next to the new answers
            yield (query.perturbed_image, query.perturbed_question, header, *answers.values(), *cleared)
            for answers in service.answers(query, vittle):  # noqa: B007 (the last update is used below); the four arrive together
                pass
            marks = answer_marks(answers, service.label(vittle))
            header += f"  \n{marks}" if marks else ""
            yield (query.perturbed_image, query.perturbed_question, header, *answers.values(), *cleared)
            panels = service.panels(query, vittle, method)
            yield (query.perturbed_image, query.perturbed_question, header, *answers.values(), *_plots(panels), panels.tokens_html,
                   panels.summary)  # the whole turn again: an API caller's final result holds every output
        except gr.Error:
            raise
        except Exception as err:
            raise _user_error(err) from err

    def embeddings(image: str | None, question: str, visual: str, severity: int, text: str, level: int, vittle: str,
                   method: str) -> tuple[Any, Any]:
        """The layer-l embedding map of a query, clean and perturbed, over a reference set of
        easy-vqa queries (arguments as for /run); returns the figure and a summary."""
        try:
            ready()
            need_image(image)
            query = service.prepare(image, question, visual, whole_number("severity", severity), text, whole_number("text level", level))
            panels = service.panels(query, vittle, method)
        except gr.Error:
            raise
        except Exception as err:
            raise _user_error(err) from err
        return _plots(panels)[0], panels.summary

    def robustness(vittle: str) -> tuple[str, Any, str]:
        """The robustness lab's numbers for the baseline and the chosen Vittle model ("vittle-f" or
        "vittle-l"): a markdown table, accuracy-vs-severity curves and the server's status."""
        try:
            table, figure = service.robustness(vittle)
            if figure is not None:
                figure.update_layout(width=None, autosize=True)  # the container's width, on a phone too
        except gr.Error:
            raise
        except Exception as err:
            raise _user_error(err) from err
        return table, figure, service.status()

    with gr.Blocks(title=title, delete_cache=(min(600, file_lifetime_s), file_lifetime_s)) as demo:
        gr.Markdown(INTRO)
        status = gr.Markdown(service.status(), label="status", elem_id="status")
        gr.Markdown(service.finding(), label="what the models do", elem_id="finding")
        with gr.Row():
            with gr.Column(scale=1):
                image = QueryImage(label="Image", type="filepath", image_mode=None, height=260, sources=["upload", "clipboard"],
                                   elem_id="query-image")
                question = gr.Textbox(label="Question", value="What color is the shape?", lines=2, max_lines=6,
                                      elem_id="question")
                if can_answer := service.answerable():
                    gr.Markdown(can_answer, elem_id="answerable")
                    gr.Examples(QUESTION_TEMPLATES, inputs=[question], label="Questions they were trained on (click one)",
                                examples_per_page=len(QUESTION_TEMPLATES))
                with gr.Row():
                    visual = gr.Dropdown(_choices("visual"), value="frost", label="Visual perturbation", elem_id="visual")
                    severity = gr.Slider(1, 5, value=3, step=1, label="Severity")
                with gr.Row():
                    text = gr.Dropdown(_choices("text"), value=NONE, label="Text perturbation", elem_id="text")
                    level = gr.Slider(1, 5, value=3, step=1, label="Level (translations have none)")
                if note := hidden_note():
                    gr.Markdown(note, elem_id="hidden-perturbations")
                with gr.Row():
                    vittle = gr.Radio(service.vittle_choices, value="vittle-f", label="Vittle model", elem_id="vittle")
                    method = gr.Radio([("PCA", "pca"), ("UMAP", "umap")], value="pca", label="Embedding map", elem_id="method")
                button = gr.Button("Run", variant="primary", elem_id="run")
                gr.Examples(example_rows(), inputs=[image, question], examples_per_page=4,
                            label="Examples: easy-vqa test images (what the default models know) and photos (out of their "
                                  "domain on purpose: the default models only know one coloured shape on a plain background)")
            with gr.Column(scale=1):
                perturbed_image = ServedImage(label="Perturbed image", interactive=False, height=220, elem_id="perturbed-image")
                perturbed_question = gr.Textbox(label="Perturbed question", interactive=False, elem_id="perturbed-question")
                header = gr.Markdown(label="perturbation", elem_id="perturbation")
                with gr.Row(equal_height=True):
                    with gr.Column(min_width=160):
                        gr.Markdown("### Baseline")
                        baseline_clean = gr.Textbox(label="Baseline: clean query", interactive=False, elem_id="baseline-clean")
                        baseline_perturbed = gr.Textbox(label="Baseline: perturbed query", interactive=False, elem_id="baseline-perturbed")
                    with gr.Column(min_width=160):
                        vittle_heading = gr.Markdown(f"### {service.label('vittle-f')}", elem_id="vittle-heading")
                        vittle_clean = gr.Textbox(label="Vittle: clean query", interactive=False, elem_id="vittle-clean")
                        vittle_perturbed = gr.Textbox(label="Vittle: perturbed query", interactive=False, elem_id="vittle-perturbed")
                summary = gr.Markdown(label="summary", elem_id="summary")
        with gr.Tabs():
            with gr.Tab("Embeddings"):
                gr.Markdown("The last input token's hidden state at the bottleneck layer for a reference set of easy-vqa "
                            "queries, clean and perturbed, for both models on shared axes; the star is your clean query, "
                            "the cross your perturbed one.")
                embedding_plot = gr.Plot(label="Embedding map", elem_id="embedding-plot")
            with gr.Tab("Posterior"):
                gr.Markdown("Vittle's posterior for the perturbed query: variance and KL to the prior per image token "
                            "(over the image's token grid) and per text token. The baseline has no posterior.")
                with gr.Row():
                    variance_plot = gr.Plot(label="Variance per image token", elem_id="variance-plot")
                    kl_plot = gr.Plot(label="KL per image token", elem_id="kl-plot")
                tokens = gr.HTML(label="text tokens", elem_id="tokens")
            with gr.Tab("Distances"):
                gr.Markdown("Clean-vs-perturbed cosine distance of the same layer-l state over the reference set; dashed "
                            "lines mark your query. Smaller means the representation moved less under the shift.")
                distance_plot = gr.Plot(label="Cosine distances", elem_id="distance-plot")
            with gr.Tab("Robustness"):
                robustness_table = gr.Markdown(label="robustness table", elem_id="robustness-table")
                robustness_plot = gr.Plot(label="Accuracy vs severity", elem_id="robustness-plot")

        outputs = [perturbed_image, perturbed_question, header, baseline_clean, baseline_perturbed, vittle_clean,
                   vittle_perturbed, embedding_plot, distance_plot, variance_plot, kl_plot, tokens, summary]
        inputs = [image, question, visual, severity, text, level, vittle, method]
        for trigger in (button.click, question.submit):  # the screen is emptied at once, before the turn (or its error)
            trigger(clear, None, outputs, queue=False, api_visibility="private")
        button.click(run, inputs, outputs, api_name="run", concurrency_id="models")
        button.click(None, js=SCROLL_TO_ANSWERS)  # on a narrow screen the answers are far below the button
        question.submit(run, inputs, outputs, api_visibility="private", concurrency_id="models")
        method.input(embeddings, inputs, [embedding_plot, summary], api_name="embeddings",
                      concurrency_id="models")
        vittle.change(robustness, [vittle], [robustness_table, robustness_plot, status], api_name="robustness")
        vittle.change(lambda name: f"### {service.label(name)}", [vittle], [vittle_heading], api_visibility="private", queue=False)
        demo.load(robustness, [vittle], [robustness_table, robustness_plot, status], api_visibility="private")

        def refresh_status() -> tuple[str, Any]:
            done = service.startup_error is not None or service.wait_ready(0)
            return service.status(), gr.Timer(active=not done)  # stops ticking once the warm-up is over

        status_timer = gr.Timer(2.0)  # the status line follows the warm-up instead of keeping its first words
        status_timer.tick(refresh_status, None, [status, status_timer], api_visibility="private",
                          show_progress="hidden", queue=False)
    return demo
