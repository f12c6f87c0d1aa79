"""What the app can say about its models before it loads them, from their folders' config.json
and model cards: the answers' length cap, what they can answer, and the finding line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vittle.analysis.lab.plan import MAX_NEW_TOKENS
from vittle.analysis.perturb.translation_types import Language
from vittle.app.presentation import model_finding, model_line, robustness_markdown
from vittle.toy.easyvqa import COLORS, SHAPES

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 64
"""The answers' cap for models that are not lab models (`ServiceConfig.max_new_tokens` = 0)."""


def model_card(path: str) -> Any:
    """The lab's model card data beside a model folder (`CardData`), or None."""
    from vittle.analysis.lab.card import read_card  # heavy

    return read_card(path)


def answer_cap(paths: Iterable[str], setting: int) -> int:
    """`setting`, or (0) what the models were trained to give: a lab model of the easy-vqa task
    answers in one word (4 tokens: the word and its end)."""
    if setting:
        return setting
    return MAX_NEW_TOKENS if all(model_card(path) is not None for path in paths) else DEFAULT_MAX_NEW_TOKENS


def answerable(paths: Iterable[str]) -> str:
    """What the models can answer, when every one is a lab model of the easy-vqa task (else "":
    their makers know)."""
    if not all(model_card(path) is not None for path in paths):
        return ""
    return (f"The models answer about one coloured shape: its colour ({', '.join(COLORS)}), shape ({', '.join(SHAPES)}) "
            "or yes/no, in easy-vqa's wording.")  # short: a newcomer reads it before Run


def answer_vocabulary(paths: Iterable[str]) -> tuple[str, ...]:
    """Every answer the models were trained to give, when every one is a lab model of the easy-vqa
    task (yes/no, its shapes and colours); () otherwise."""
    if not all(model_card(path) is not None for path in paths):
        return ()
    return ("yes", "no", *SHAPES, *COLORS)


def training_alpha(path: str) -> float | None:
    """The alpha a Vittle model was trained to (its config's alpha_max); None for a model
    without a bottleneck, or one whose config cannot be read before it loads."""
    settings = _vittle_settings(path)
    alpha = settings.get("alpha_max") if settings else None
    return float(alpha) if isinstance(alpha, (int, float)) and settings.get("kind") != "noise" else None


def _vittle_settings(path: str) -> dict[str, Any] | None:
    try:
        return json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("vittle")
    except (OSError, ValueError):  # a hub id, or not there
        return None


def finding(paths: Mapping[str, str], labels: Mapping[str, str], summary: Any) -> str:
    """One line per model: its bottleneck, whether its posterior carries information or sits at
    the prior, the lab's headline with its interval (`summary`: the LabSummary or None)."""
    lines = []
    for name, path in paths.items():
        try:
            settings = json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("vittle")
        except (OSError, ValueError):  # a hub id, or not there: nothing to say before it loads
            continue
        card = model_card(path)
        arm = summary.arms.get(card.name) if summary is not None and card is not None and not is_staged(card) else None
        lines.append(model_finding(labels[name], settings, card, arm))
    return "\n\n".join(lines)


def model_strip(paths: Mapping[str, str], labels: Mapping[str, str], summary: Any) -> str:
    """One plain line per model (`model_line`), then the numbers behind them (`finding`) in a
    details element: the first screen says what the models are without a wall of numbers."""
    lines = []
    for name, path in paths.items():
        try:
            settings = json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("vittle")
        except (OSError, ValueError):  # a hub id, or not there: its label alone
            lines.append(f"**{labels[name]}**")
            continue
        lines.append(model_line(labels[name], settings, model_card(path)))
    details = finding(paths, labels, summary)
    strip = "  \n".join(lines)
    return strip + (f"\n\n<details><summary>These models in numbers</summary>\n\n{details}\n\n</details>" if details else "")


def is_staged(card: Any) -> bool:
    """True for a model of the staged study (its card says so), whose numbers the first lab's
    table (a different protocol) does not describe."""
    return getattr(card, "protocol", "") == "staged"


def is_translation(name: str) -> bool:
    """True for the translation shifts (arabic, greek, hindi)."""
    return name in {language.value for language in Language}


def load_lab(path: str | None) -> Any:
    """The robustness lab's `LabSummary` at `path`, or None (no path, or unreadable: logged)."""
    from vittle.analysis.lab import LabSummary  # heavy

    if not path:
        return None
    try:
        return LabSummary.load(path)
    except FileNotFoundError:
        logger.warning("no lab results: %s is missing", path)
        return None
    except (OSError, ValueError) as err:
        logger.warning("no lab results: %s", err)
        return None


def load_staged(path: str | None) -> Any:
    """The staged study's `StagedSummary` at `path`, or None (no path, or unreadable: logged)."""
    from vittle.analysis.lab.staged_report import StagedSummary  # heavy

    if not path:
        return None
    try:
        return StagedSummary.load(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("no staged study results: %s", err)
        return None


def robustness_view(summary: Any, lab_path: str | None, paths: Mapping[str, str], labels: Mapping[str, str],
                    vittle: str, staged_path: str | None = None) -> tuple[str, Any]:
    """The lab's table (markdown) and severity curves (figure or None) for the shown models
    (`paths`, `labels`: name -> folder, UI name); `summary` from `load_lab(lab_path)`; for models
    of the staged study, its numbers from `staged_path` (staged.json)."""
    from vittle.analysis.lab.report import severity_figure  # heavy
    cards = {name: model_card(path) for name, path in paths.items()}
    staged = {name: card.unit for name, card in cards.items() if is_staged(card)}
    shown = {name: (card.name if card is not None and name not in staged else None) for name, card in cards.items()}
    staged_summary = load_staged(staged_path) if staged else None
    table = robustness_markdown(summary, shown, dict(labels), dict(paths), vittle, staged, staged_summary,
                                {name: cards[name].name for name in staged})
    if summary is None:
        why = ("the app was started without one (--lab none)" if not lab_path else
               f"its file {Path(lab_path).name} is missing or unreadable (the server log says why)")
        table = f"The robustness lab's results are not shown: {why}.\n\n{table}"
    if staged_summary is not None and staged_summary.shifted:  # the staged study's models: every arm's intervals in one picture
        from vittle.analysis.lab.staged_report import forest  # heavy
        from vittle.analysis.plots import figure as as_figure  # heavy

        return table, as_figure(forest(staged_summary, columns=1))  # stacked: it fits a phone's width too
    found = {name: arm for name, arm in shown.items() if summary is not None and arm in summary.arms}
    figure = severity_figure(summary, list(found.values()), {arm: labels[name] for name, arm in found.items()}) if found else None
    return table, figure
