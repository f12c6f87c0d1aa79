"""The Gradio Blocks of the demo: `build_demo(service) -> gr.Blocks`.

Plain callbacks around `vittle.app.service.DemoService`; no model or torch code here. Every event
has an `api_name`, so everything the page does can also be called from `gradio_client`:
`/run` (a whole turn, streamed), `/sweep` (the query at severities 1-5), `/embeddings` (the map
for another method or model) and `/robustness` (the lab's table and curves). A page opened with
query parameters (the link under a turn) starts with those inputs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr

from vittle.app import ui_probe
from vittle.app.components import AppBlocks, QueryImage
from vittle.app.examples import example_rows
from vittle.app.inputs import whole_number
from vittle.app.page import QUESTION_TEMPLATES, SCROLL_IF_HIDDEN, SCROLL_TO_ANSWERS, hidden_note
from vittle.app.page import choices as _choices
from vittle.app.page import user_error as _user_error
from vittle.app.panels import Page, TurnView, figure_value
from vittle.app.record import ExampleFinder
from vittle.app.service import NONE, DemoService

logger = logging.getLogger(__name__)

FILE_LIFETIME_S = 3600
"""Uploads and output images older than this are deleted (checked every 10 minutes), and all
of them when the server stops: a long-running Space does not fill its disk."""


def fit_width(figure: Any) -> Any:
    """The figure sized by its container (on a phone too); None stays None (the page's CSS then
    hides the Robustness plot rather than showing an empty box)."""
    if figure is not None:
        figure.update_layout(width=None, autosize=True)
    return figure


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

    page = Page(service)  # the panels (vittle.app.panels): their components, their values for a turn
    rows = example_rows()
    finder = ExampleFinder([row[0] for row in rows])

    def run(image: str | None, question: str, visual: str, severity: int, text: str, level: int, vittle: str,
            method: str, alpha: float | None = None) -> Iterator[dict[Any, Any]]:
        """Ask a baseline and a Vittle model the same question about an image, clean and perturbed.

        Args:
            image: the image file (PNG, JPEG, WebP, ...).
            question: the question about it.
            visual: a visual corruption (e.g. frost, gaussian_noise) or "none".
            severity: the corruption's severity, 1 to 5.
            text: a text perturbation (e.g. char_typo, word_swap, greek) or "none".
            level: the text perturbation's level, 1 to 5.
            vittle: the second column's model: "vittle-f", "vittle-l" or a name the server's --compare gives.
            method: the embedding map's projection, "pca" or "umap".
            alpha: the Vittle model's alpha at inference, 0 (bottleneck off) to 1 (posterior mean only);
                None or its training alpha: as trained.

        Returns:
            The perturbed image and question, a header, the four answers (baseline and Vittle, clean
            and perturbed), the panels' figures (embedding map, cosine distances, posterior variance
            and KL), the token highlighting, a summary, the answer-distribution charts (baseline,
            Vittle) with their numbers, the download (the turn's JSON and the perturbed image), a
            link that reopens the settings, the posterior variance over the image, and the turn's record (JSON).
        """
        try:
            with service.turn():
                yield from _run(image, question, visual, severity, text, level, vittle, method, alpha)
        except gr.Error:
            raise
        except Exception as err:
            raise _user_error(err) from err

    def _run(image: str | None, question: str, visual: str, severity: int, text: str, level: int, vittle: str,
             method: str, alpha: float | None) -> Iterator[dict[Any, Any]]:
        """`run`'s turn: the page's updates as it goes, each with every output's value (its errors
        are turned into messages by `run`)."""
        with service.answering():  # the warm-up's work waits until the answers are on the page
            ready()
            need_image(image)
            query = service.prepare(image, question, visual, whole_number("severity", severity), text, whole_number("text level", level))
            settings = ui_probe.settings_of(finder, image, query.question, visual, severity, text, level, vittle, alpha, method,
                                            service.training_alpha(vittle))
            view = TurnView(query=query, vittle=vittle, label=service.label(vittle))
            yield page.updates(view)  # the perturbed query at once, no panels of an earlier query next to it
            for view.answers in service.answers(query, vittle, settings.alpha):  # the last update is the answers
                pass
            view.distributions = service.distributions(query, view.answers, vittle, settings.alpha)
            yield page.updates(view)
        view.panels = service.panels(query, vittle, method)
        view.domain = service.domain(query)  # last: at start-up its calibration may still be under way
        record = ui_probe.turn_record(settings, query, view.answers, view.marks, view.distributions, view.panels, view.domain)
        view.files = record.write(page["probe"].downloads(), query.perturbed_image)
        view.link, view.record = ui_probe.link_markdown(settings, image is not None), record.to_json()
        yield page.updates(view)  # the whole turn again: an API caller's final result holds every output

    def embeddings(image: str | None, question: str, visual: str, severity: int, text: str, level: int, vittle: str,
                   method: str, alpha: float | None = None) -> tuple[Any, Any]:
        """The layer-l embedding map of a query, clean and perturbed, over a reference set of
        easy-vqa queries (arguments as for /run; the map shows Vittle at its training alpha);
        returns the figure and a summary."""
        try:
            ready()
            need_image(image)
            query = service.prepare(image, question, visual, whole_number("severity", severity), text, whole_number("text level", level))
            with service.turn():
                panels = service.panels(query, vittle, method)
        except gr.Error:
            raise
        except Exception as err:
            raise _user_error(err) from err
        return figure_value(panels, "embeddings"), panels.summary

    def sweep(image: str | None, question: str, visual: str, severity: int, text: str, level: int, vittle: str, method: str,
              alpha: float | None = None, previous: str = "") -> tuple[Any, str, list[str], str]:
        """The query under the chosen visual corruption at severities 1 to 5 (with the text perturbation
        at levels 1 to 5, when it has levels), for both models: the probability of each model's clean
        answer and the cosine distance of its layer-l state from the clean query's, per severity
        (arguments as for /run; `previous`: the last turn's record, which the sweep joins in the
        download when the settings match). Returns the figure, a summary, the download's files and
        the record (JSON)."""
        try:
            ready()
            ui_probe.check_sweep_inputs(image)
            settings = ui_probe.settings_of(finder, image, question, visual, whole_number("severity", severity), text,
                                            whole_number("text level", level), vittle, alpha, method, service.training_alpha(vittle))
            return ui_probe.sweep_outputs(service, settings, image, previous or "", page["probe"].downloads())
        except gr.Error:
            raise
        except Exception as err:
            raise _user_error(err) from err

    def restore(request: gr.Request) -> tuple[Any, ...]:
        """The inputs a link's query parameters give (nothing changes without parameters)."""
        params = dict(request.query_params) if request is not None else {}
        names = ("image", "question", "visual", "severity", "text", "level", "vittle", "alpha", "method")
        if not params:
            return tuple(gr.skip() for _ in (*names, "notice"))
        choices = {"visual": [value for _, value in _choices("visual")], "text": [value for _, value in _choices("text")],
                   "vittle": [value for _, value in service.vittle_choices], "method": ["pca", "umap"]}
        values, problems = ui_probe.restored(service, rows, params, choices)
        message = ("Some settings in the link were not used: " + "; ".join(problems) + ".") if problems else ""
        if message:
            gr.Warning(message, title="Link")
        return (*(values[name] if name in values else gr.skip() for name in names), message or gr.skip())

    def mark_stale(record: str) -> str:
        """A line over results that no longer match the inputs (a setting changed after the turn)."""
        if not record:
            return ""
        try:
            shown = json.loads(record)
            which = f"{service.label(shown['settings']['vittle'])}, {shown.get('label') or 'no perturbation'}"
        except (ValueError, KeyError, TypeError):
            which = "the previous query"
        return f"_These results are for the previous settings ({which}); press Run to answer with the new ones._"

    def next_example(count: int) -> tuple[str, str, int]:
        """The next example (image and question) and the new count."""
        row = rows[count % len(rows)]
        return row[0], row[1], count + 1

    def rerun_for_alpha(*args: Any) -> Iterator[dict[Any, Any]]:
        """Moving the alpha slider answers again, once there is an image to ask about."""
        if args[0] is None:
            yield {}  # nothing changes
            return
        yield from run(*args)

    def robustness(vittle: str) -> tuple[str, Any, str]:
        """The studies' numbers for the baseline and the chosen second model ("vittle-f", "vittle-l" or a
        --compare name): markdown tables, a figure (the staged study's forest plot, or the first lab's
        accuracy-vs-severity curves; None where neither study has the models) and the server's status."""
        try:
            table, figure = service.robustness(vittle)
        except gr.Error:
            raise
        except Exception as err:
            raise _user_error(err) from err
        return table, fit_width(figure), service.status()

    with AppBlocks(title=title, delete_cache=(min(600, file_lifetime_s), file_lifetime_s)) as demo:
        # the introduction is the page's own HTML, before the app (`page.intro_html`, put there by the server)
        with gr.Row(elem_id="workspace"):
            with gr.Column(scale=1):
                image = QueryImage(label="Image", type="filepath", image_mode=None, height=200, sources=["upload", "clipboard"],
                                   elem_id="query-image")
                question = gr.Textbox(label="Question (Enter runs it)", value="what color is the shape?", lines=1, max_lines=1,
                                      elem_id="question")
                if can_answer := service.answerable():
                    gr.Markdown(can_answer, elem_id="answerable")
                with gr.Row():
                    visual = gr.Dropdown(_choices("visual"), value="frost", label="Visual perturbation", elem_id="visual")
                    severity = gr.Slider(1, 5, value=3, step=1, label="Severity", elem_id="severity")
                with gr.Row():
                    text = gr.Dropdown(_choices("text"), value=NONE, label="Text perturbation", elem_id="text")
                    level = gr.Slider(1, 5, value=3, step=1, label="Level (translations have none)", elem_id="level")
                with gr.Row(elem_id="actions"):
                    button = gr.Button("Run", variant="primary", elem_id="run", scale=2)
                    try_example = gr.Button("Try an example", elem_id="try-example", scale=1)
                notice = gr.Markdown("", elem_id="notice")  # what an action did, on the page (not only in a toast)
                with gr.Row():
                    vittle = gr.Radio(service.vittle_choices, value="vittle-f", label="Vittle model", elem_id="vittle")
                    method = gr.Radio([("PCA", "pca"), ("UMAP", "umap")], value="pca", label="Embedding map", elem_id="method")
                trained = service.training_alpha("vittle-f")
                alpha = gr.Slider(0, 1, value=trained if trained is not None else 0.0, step=0.05, interactive=trained is not None,
                                  label=f"Vittle's alpha at inference (0: bottleneck off, 1: posterior mean only; trained at {trained})",
                                  elem_id="alpha")
                examples = gr.Examples(example_rows(), inputs=[image, question], examples_per_page=4, elem_id="examples",
                                       label="Examples (a click runs one): easy-vqa test images (what the default models know) and "
                                             "photos (out of their domain on purpose: the models only know one coloured shape on a "
                                             "plain background)")
                if can_answer:
                    gr.Examples(QUESTION_TEMPLATES, inputs=[question], label="Questions they were trained on (click one)",
                                examples_per_page=len(QUESTION_TEMPLATES))
                if note := hidden_note():
                    gr.Markdown(note, elem_id="hidden-perturbations")
            with gr.Column(scale=1, elem_id="results"):
                status = gr.Markdown(service.status(), label="status", elem_id="status")
                gr.Markdown(service.model_strip(), label="the models", elem_id="finding")
                page.build("results")
        with gr.Tabs():
            page.build("tabs")
        outputs = page.turn_outputs()
        after = page.after_outputs()  # the page's own: the heading, the stale line and the badge, from the turn's record
        inputs = [image, question, visual, severity, text, level, vittle, method, alpha]
        page.wire({"image": image, "question": question, "vittle": vittle, "notice": notice})
        robustness_table, robustness_plot = page.component("robustness_table"), page.component("robustness_plot")
        record, stale = page.component("record"), page.component("stale")

        def clear(trigger: Any) -> Any:
            """Empty the screen at once: an error, or a new turn, never leaves an earlier query's results on screen."""
            return trigger(page.cleared(), None, [*outputs, *after], queue=False, api_visibility="private", show_progress="hidden")

        def then_after(event: Any) -> Any:
            return event.then(page.after_updates, [record], after, queue=False, api_visibility="private", show_progress="hidden")

        for trigger, api_name in ((button.click, "run"), (question.submit, None)):
            clear(trigger)
            event = trigger(run, inputs, outputs, concurrency_id="models",
                            **({"api_name": api_name} if api_name else {"api_visibility": "private"}))
            done = then_after(event)
            if api_name:
                done.then(None, js=SCROLL_IF_HIDDEN)  # after the turn: results that arrive while it scrolls can cut it short
        button.click(None, js=SCROLL_TO_ANSWERS)  # on a narrow screen the answers are far below the button
        then_after(alpha.release(rerun_for_alpha, inputs, outputs, api_visibility="private", concurrency_id="models"))
        # one click runs an example: the button takes the next one, a gallery click the one clicked
        shown = gr.State(0)
        for loaded in (try_example.click(next_example, [shown], [image, question, shown], api_visibility="private", queue=False),
                       examples.load_input_event):
            cleared = loaded.then(page.cleared(), None, [*outputs, *after], queue=False, api_visibility="private",
                                  show_progress="hidden")
            then_after(cleared.then(run, inputs, outputs, api_visibility="private", concurrency_id="models"))
        # results of earlier settings are marked as such until the next turn (and greyed: the page's CSS)
        for control in (image, question, visual, severity, text, level, vittle, alpha):
            control.change(mark_stale, [record], [stale], api_visibility="private", queue=False, show_progress="hidden")
        page.component("sweep_button").click(sweep, [*inputs, record], [page.component(name) for name in
                                             ("sweep_plot", "sweep_summary", "download", "record")],
                                             api_name="sweep", concurrency_id="models")
        vittle.input(lambda name: service.training_alpha(name) if service.training_alpha(name) is not None else gr.skip(),
                     [vittle], [alpha], api_visibility="private", queue=False)  # each model starts at its training alpha
        demo.load(restore, None, [image, question, visual, severity, text, level, vittle, alpha, method, notice],
                  api_visibility="private", show_progress="hidden")  # queued: a warning about the link reaches the page too
        method.input(embeddings, inputs, [page.component("embedding_plot"), page.component("summary")], api_name="embeddings",
                     concurrency_id="models")
        vittle.change(robustness, [vittle], [robustness_table, robustness_plot, status], api_name="robustness")
        demo.load(robustness, [vittle], [robustness_table, robustness_plot, status], api_visibility="private",
                  show_progress="hidden")  # no loading overlay on the status line: nothing on the first screen moves

        def refresh_status() -> tuple[str, Any]:
            done = service.startup_error is not None or service.wait_ready(0)
            return service.status(), gr.Timer(active=not done)  # stops ticking once the warm-up is over

        status_timer = gr.Timer(2.0)  # the status line follows the warm-up instead of keeping its first words
        status_timer.tick(refresh_status, None, [status, status_timer], api_visibility="private",
                          show_progress="hidden", queue=False)
    return demo
