"""Typed lab results: one `RunResult` per trained model, one `LabSummary` for the whole lab.

Both are dataclasses written as JSON with `to_json` / `from_json` (and `save` / `load`), so
the report, the model cards and the app read fields, never string keys of nested dicts.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vittle.analysis.lab.stats import Interval
from vittle.files import write_text_atomic


def _decode(hint: Any, value: Any) -> Any:
    """Rebuild a value of type `hint` (dataclasses, lists, tuples, dicts, optionals) from JSON."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return _decode(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        names = {f.name for f in dataclasses.fields(hint)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ValueError(f"{hint.__name__}: unknown fields {unknown}")
        return hint(**{k: _decode(hints[k], v) for k, v in value.items()})
    if origin is list:
        return [_decode(args[0], v) for v in value]
    if origin is tuple:
        return tuple(_decode(args[0], v) for v in value)
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in value.items()}
    return value


class JsonRecord:
    """to_json / from_json / save / load for a dataclass of JSON-friendly fields."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Any:
        return _decode(cls, data)

    def save(self, path: str | Path, compact: bool = False) -> Path:
        """Write atomically; `compact`: one line, no indentation (the lab's archived results)."""
        path = Path(path)
        text = json.dumps(self.to_json(), separators=(",", ":")) + "\n" if compact else json.dumps(self.to_json(), indent=1)
        write_text_atomic(path, text)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Any:
        try:
            return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"{path} is not a {cls.__name__} JSON: {err}") from err


@dataclass
class RunResult(JsonRecord):
    """One trained model (a base or an arm for one seed) and what was measured on it."""

    name: str
    """The arm's name, or "base"."""
    seed: int
    group: str
    """"base", "main" or "sweep"."""
    recipe: str
    overrides: list[str]
    model_dir: str
    train_seconds: float
    train_device: str
    eval_seconds: float
    eval_device: str
    commit: str
    final_log: dict[str, float]
    """The last logged ce, kl_v, kl_t, alpha of training."""
    clean_predictions: list[str]
    """The answer to every question of the evaluation slice, clean, in slice order."""
    hits: dict[str, str]
    """spec -> "0110...": right (1) or wrong (0) on each colour/shape question of the slice, in
    slice order; "clean" included."""
    diagnostics: dict[str, float] = field(default_factory=dict)
    """Flat: hidden_rms_visual/text at the bottleneck layer, posterior KL and use measures
    (see vittle.analysis.evaluate.diagnostics), grounded accuracy with the bottleneck off."""
    layer: int = 0
    """The bottleneck layer (for the base and the baseline: where it would sit)."""
    recipe_config: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return f"{self.name}-s{self.seed}"


@dataclass
class Stat:
    """Mean and sample standard deviation over seeds (std 0 for one seed)."""

    mean: float
    std: float
    n: int


@dataclass
class BaseSummary:
    seed: int
    layer: int
    depth: int
    clean: dict[str, float]
    """all, grounded, color, shape, yes/no (% on the slice)."""
    hidden_rms: dict[str, float]
    """Per-dimension RMS of the layer-l state: visual and text tokens."""
    image_attention: float | None
    train_minutes: float
    device: str
    meets_target: bool
    """Colour >= 95% and shape >= 99% on the clean slice."""


@dataclass
class ArmSummary:
    name: str
    label: str
    group: str
    description: str
    seeds: list[int]
    clean: dict[str, Stat]
    """all, grounded, color, shape, yes/no, and POPE-style yes_no_{accuracy,precision,recall,f1,yes_ratio}."""
    shifted: dict[str, Stat]
    """spec -> grounded accuracy ("clean" included). Missing values are left out (JSON has no NaN)."""
    groups: dict[str, Stat]
    """Shift group -> grounded accuracy averaged over the group's specs; "label-keeping" joins
    the label-keeping groups."""
    diagnostics: dict[str, Stat]
    versus_baseline: dict[str, Interval]
    """"clean", each shift group and "label-keeping": arm minus baseline, grounded accuracy
    points, paired by seed and question, 95% bootstrap interval. Empty for the baseline."""
    train_minutes: Stat
    devices: list[str]
    versus_noise: dict[str, Interval] = field(default_factory=dict)
    """The same paired difference against the noise-only control of the same base, for the
    arms with a posterior: what the information bottleneck adds to the noise it injects."""


@dataclass
class RunRow:
    """One line of the table of every run."""

    run: str
    train_device: str
    train_minutes: float
    clean: float
    color: float | None
    shape: float | None
    yes_no: float | None
    grounded: float | None
    label_keeping: float | None
    """Grounded accuracy averaged over the label-keeping shifts (None for a base)."""
    kl_visual: float | None
    kl_text: float | None
    answer_tv: float | None

    @classmethod
    def of(cls, result: RunResult, clean: dict[str, float], label_keeping: float | None) -> RunRow:
        d = result.diagnostics
        return cls(result.run_id, result.train_device, result.train_seconds / 60, clean["all"], clean.get("color"), clean.get("shape"),
                   clean.get("yes/no"), clean.get("grounded"), label_keeping, d.get("kl_visual"), d.get("kl_text"), d.get("answer_tv"))


@dataclass
class LabSummary(JsonRecord):
    arms: dict[str, ArmSummary]
    bases: list[BaseSummary]
    specs: list[str]
    spec_groups: dict[str, list[str]]
    slice: dict[str, int]
    """Evaluation slice: images, questions, grounded questions."""
    runs: list[RunRow]
    export_seed: int
    config: dict[str, Any]
    environment: dict[str, str]
    seconds: float
    runs_reported: list[str]
    runs_planned: list[str]

    def arm(self, name: str) -> ArmSummary | None:
        return self.arms.get(name)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment() -> dict[str, str]:
    import torch  # heavy

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''})"
    return {"device": device, "torch": torch.__version__, "python": platform.python_version(), "commit": git_commit()}
