"""The page's probe panels, as plain functions the callbacks of `vittle.app.ui` call: the answer
distributions under the answers, the severity sweep, the turn's download and its link, and the
settings a link restores. No model code: everything goes through `DemoService`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradio.components.plot import PlotData

from vittle.analysis.plots import figure_json
from vittle.app.figures import distribution_specs, effects_markdown, sweep_markdown, sweep_spec
from vittle.app.inputs import InputError
from vittle.app.record import TurnRecord, TurnSettings, panel_numbers

DISTRIBUTION_INTRO = ("Answer probabilities: for each model, its most likely answers on the clean (blue) and the perturbed "
                      "(red) query, on one 0-1 scale.")


def plot(spec: dict[str, Any] | None) -> PlotData | None:
    """A figure dict as `gr.Plot`'s value (plotly JSON, no Figure built)."""
    return None if spec is None else PlotData(type="plotly", plot=figure_json(spec))


def distribution_outputs(service: Any, turn: Any, vittle: str) -> tuple[Any, Any, str]:
    """(baseline chart, Vittle chart, the numbers in markdown) of a turn's `TurnDistributions`;
    no charts and the reason, for models whose family cannot score candidate answers yet."""
    if turn.unavailable:
        return None, None, f"_{turn.unavailable}_"
    labels = {"baseline": service.label("baseline"), "vittle": service.label(vittle)}
    specs = distribution_specs(turn, labels)
    return plot(specs["baseline"]), plot(specs["vittle"]), effects_markdown(turn, labels["vittle"], service.training_alpha(vittle))


def settings_of(finder: Any, image: str | None, question: str, visual: str, severity: Any, text: str, level: Any, vittle: str,
                alpha: Any, method: str, training_alpha: float | None) -> TurnSettings:
    """The inputs as a link keeps them: the image as its gallery index (None: no image, or an
    upload, which no link can carry); alpha None when it is the model's own."""
    chosen = None if alpha is None or training_alpha is None or float(alpha) == training_alpha else float(alpha)
    return TurnSettings(finder.index(image), question or "", visual, int(severity), text, int(level), vittle, chosen, method)


def link_markdown(settings: TurnSettings, uploaded: bool) -> str:
    note = " (your uploaded image is not in the link: upload it again there)" if uploaded and settings.example is None else ""
    return f"[Link that reopens these settings]({settings.link()}){note}"


def turn_record(settings: TurnSettings, query: Any, answers: dict[str, str], marks: str, turn: Any, panels: Any,
                domain: Any = None) -> TurnRecord:
    return TurnRecord(settings, query.spec, query.label, query.perturbed_question, list(query.notes), dict(answers), marks, turn,
                      panel_numbers(panels.numbers) if panels is not None else {}, domain=domain.to_dict() if domain is not None else None)


def sweep_outputs(service: Any, settings: TurnSettings, image: str | None, previous: str, folder: Path) -> tuple[Any, str, list[str], str]:
    """Run the sweep of the current inputs: (figure, markdown, the download's files, the record
    as JSON). The sweep joins the last turn's record when that turn had the same settings."""
    sweep = service.sweep(image, settings.question, settings.visual, settings.text, settings.vittle, settings.alpha)
    record = None
    if previous:
        try:
            record = TurnRecord.from_json(previous)
        except (ValueError, KeyError, TypeError):
            record = None
    if record is None or record.settings != settings:
        record = TurnRecord(settings)
    record.sweep = sweep
    query = service.prepare(image, settings.question, settings.visual, settings.severity, settings.text, settings.level)
    files = record.write(folder, query.perturbed_image)
    return plot(sweep_spec(sweep)), sweep_markdown(sweep), files, record.to_json()


def restored(service: Any, rows: list[list[str]], params: dict[str, str], choices: dict[str, list[str]]) -> tuple[dict[str, Any], list[str]]:
    """{input name: value} of the settings in a link's query parameters (image: the example's
    file, or None), and what was wrong with the others. A link without parameters restores nothing."""
    found, problems = TurnSettings.from_params(params, len(rows), choices)
    values: dict[str, Any] = {name: value for name, value in found.items() if name != "example"}
    if "example" in found:
        values["image"] = None if found["example"] is None else rows[found["example"]][0]
    if "vittle" in found and "alpha" not in found:
        values["alpha"] = service.training_alpha(found["vittle"])
    if "alpha" in values and values["alpha"] is None:
        values.pop("alpha")
    return values, problems


def check_sweep_inputs(image: str | None) -> None:
    if image is None:
        raise InputError("Choose an image first (upload one or pick an example): the sweep perturbs it at each severity.")
