"""A turn as it can leave the page: `TurnSettings` (the inputs, and the link that reopens them)
and `TurnRecord` (every number the turn showed), written as a JSON file beside the perturbed
image for the download.

    settings = TurnSettings(example=0, question="what color is the shape?", visual="frost", severity=3)
    settings.link()                         # "?example=0&question=what+color+is+the+shape%3F&visual=frost&..."
    TurnSettings.from_params(params, ...)   # the link's values read back, with what was wrong in them
    TurnRecord(settings, ...).write(folder, perturbed_image)   # [turn.json, perturbed.png]
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from vittle.app.probe_results import Sweep, TurnDistributions
from vittle.files import write_bytes_atomic, write_text_atomic

FORMAT_VERSION = 1
NO_IMAGE = "none"


@dataclass
class TurnSettings:
    """What a link restores: the example image (its index in the gallery, None: no image), the
    question, the shifts and their strengths, the Vittle model, its alpha and the map method."""

    example: int | None = None
    question: str = "what color is the shape?"
    visual: str = "frost"
    severity: int = 3
    text: str = "none"
    level: int = 3
    vittle: str = "vittle-f"
    alpha: float | None = None
    """None: the model's training alpha."""
    method: str = "pca"

    def to_params(self) -> dict[str, str]:
        params = {"example": NO_IMAGE if self.example is None else str(self.example), "question": self.question,
                  "visual": self.visual, "severity": str(self.severity), "text": self.text, "level": str(self.level),
                  "vittle": self.vittle, "method": self.method}
        if self.alpha is not None:
            params["alpha"] = f"{self.alpha:g}"
        return params

    def link(self, base: str = "") -> str:
        """`base` (the page's address; "" for a link relative to the page) with the settings as query parameters."""
        return f"{base}?{urlencode(self.to_params())}"

    @classmethod
    def from_params(cls, params: Mapping[str, str], examples: int, choices: Mapping[str, Sequence[str]]) -> tuple[dict[str, Any], list[str]]:
        """The settings a link gives ({field: value} for each valid parameter present) and a
        message per parameter that was not valid. `examples`: how many gallery images there are;
        `choices`: field ("visual", "text", "vittle", "method") -> its allowed values."""
        found: dict[str, Any] = {}
        problems: list[str] = []
        for name in (f.name for f in fields(cls)):
            if name not in params:
                continue
            value = str(params[name]).strip()
            try:
                found[name] = _parse(name, value, examples, choices)
            except ValueError as err:
                problems.append(f"{name}={value[:40]!r}: {err}")
        return found, problems


def _parse(name: str, value: str, examples: int, choices: Mapping[str, Sequence[str]]) -> Any:
    if name == "example":
        if value.lower() == NO_IMAGE:
            return None
        if not value.isdigit() or int(value) >= examples:
            raise ValueError(f"an example number from 0 to {examples - 1}, or {NO_IMAGE}")
        return int(value)
    if name in ("severity", "level"):
        if value not in {"1", "2", "3", "4", "5"}:
            raise ValueError("a whole number from 1 to 5")
        return int(value)
    if name == "alpha":
        try:
            alpha = float(value)
        except ValueError:
            raise ValueError("a number from 0 to 1") from None
        if not 0.0 <= alpha <= 1.0:
            raise ValueError("a number from 0 to 1")
        return alpha
    if name == "question":
        if not value or len(value) > 2000:
            raise ValueError("a question of 1 to 2,000 characters")
        return value
    if value not in choices.get(name, ()):
        raise ValueError(f"one of {', '.join(choices.get(name, ()))}")
    return value


class ExampleFinder:
    """Which gallery example an image file is (by its bytes: Gradio hands the callback a copy)."""

    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)
        self._index = {_digest(path): n for n, path in enumerate(self.paths)}

    def index(self, path: str | None) -> int | None:
        if not path:
            return None
        try:
            return self._index.get(_digest(path))
        except OSError:
            return None


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class TurnRecord:
    """Every number a turn showed, with the settings that produced it."""

    settings: TurnSettings
    spec: str = ""
    label: str = ""
    perturbed_question: str = ""
    notes: list[str] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)
    """Role -> answer ("baseline_clean", "baseline_perturbed", "vittle_clean", "vittle_perturbed")."""
    marks: str = ""
    distributions: TurnDistributions | None = None
    panels: dict[str, Any] = field(default_factory=dict)
    """The panels' numbers: layer, query_cosine_distance, reference_cosine_mean (model label ->
    value) and posterior (the Vittle model's mean variance and KL per modality, None without one)."""
    sweep: Sweep | None = None
    domain: dict[str, Any] | None = None
    """The query image's domain score: {"score", "threshold", "outside"} (None: not scored)."""
    format: int = FORMAT_VERSION

    def to_json(self) -> str:
        data = {"format": self.format, "settings": asdict(self.settings), "link": self.settings.link(), "spec": self.spec,
                "label": self.label, "perturbed_question": self.perturbed_question, "notes": self.notes,
                "answers": self.answers, "marks": self.marks,
                "distributions": self.distributions.to_dict() if self.distributions else None,
                "panels": self.panels, "sweep": self.sweep.to_dict() if self.sweep else None, "domain": self.domain}
        return json.dumps(data, indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> TurnRecord:
        data = json.loads(text)
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"turn record format {data.get('format')!r}; this version reads {FORMAT_VERSION}")
        return cls(TurnSettings(**data["settings"]), data["spec"], data["label"], data["perturbed_question"], list(data["notes"]),
                   dict(data["answers"]), data["marks"],
                   TurnDistributions.from_dict(data["distributions"]) if data["distributions"] else None, dict(data["panels"]),
                   Sweep.from_dict(data["sweep"]) if data["sweep"] else None, data.get("domain"))

    def write(self, folder: Path, perturbed_image: Any = None) -> list[str]:
        """turn.json (and perturbed.png) in a new folder under `folder`: each download is written
        once under its own name, never rewritten while it may be served. Returns the paths."""
        target = Path(folder) / uuid.uuid4().hex
        paths = [target / "turn.json"]
        write_text_atomic(paths[0], self.to_json() + "\n")
        if perturbed_image is not None:
            buffer = io.BytesIO()
            perturbed_image.save(buffer, format="PNG")
            paths.append(target / "perturbed.png")
            write_bytes_atomic(paths[1], buffer.getvalue())
        return [str(path) for path in paths]


def panel_numbers(numbers: Any) -> dict[str, Any]:
    """The JSON-able numbers of a turn's `PanelNumbers`."""
    posterior = numbers.posterior
    return {"layer": dict(numbers.layer), "query_cosine_distance": dict(numbers.query_cosine_distance),
            "reference_cosine_mean": dict(numbers.reference_cosine_mean),
            "posterior": asdict(posterior) if posterior is not None else None}
