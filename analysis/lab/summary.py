"""From the runs to the lab's typed summary: means over seeds and paired intervals."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from vittle.analysis.evaluate.scoring import score
from vittle.analysis.lab.plan import ARMS, LABEL_KEEPING, SHIFT_GROUPS, Arm, LabConfig, spec_group
from vittle.analysis.lab.results import ArmSummary, BaseSummary, LabSummary, RunResult, RunRow, Stat, environment
from vittle.analysis.lab.stats import Interval, difference_matrix, paired_bootstrap

COLOUR_TARGET, SHAPE_TARGET = 95.0, 99.0
"""What every base must reach on clean colour and shape questions."""


def stat(values: Sequence[float | None]) -> Stat | None:
    """Mean and std over the values that exist; None if none does (JSON has no NaN)."""
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not kept:
        return None
    return Stat(statistics.fmean(kept), statistics.stdev(kept) if len(kept) > 1 else 0.0, len(kept))


def stats(keys: Sequence[str], values: Any) -> dict[str, Stat]:
    """{key: stat(values(key))} for the keys that have any value."""
    out = {key: stat(values(key)) for key in keys}
    return {key: value for key, value in out.items() if value is not None}


def hits_array(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8) == ord("1")


def accuracy(text: str) -> float:
    if not text:
        raise ValueError("no outcomes to score")
    return 100.0 * text.count("1") / len(text)


def clean_metrics(result: RunResult, samples: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Clean accuracy on the slice: all, grounded, per kind, and POPE-style yes/no metrics."""
    scored = score(samples, result.clean_predictions)
    out = {"all": scored["accuracy"], **scored["by_kind"]}
    if "grounded" in scored:
        out["grounded"] = scored["grounded"]
    for key in ("accuracy", "precision", "recall", "f1", "yes_ratio"):
        if key in scored.get("yes_no", {}):
            out[f"yes_no_{key}"] = scored["yes_no"][key]
    return out


def group_accuracy(result: RunResult, specs: Sequence[str]) -> float | None:
    present = [accuracy(result.hits[s]) for s in specs if s in result.hits]
    return statistics.fmean(present) if present else None


def groups_of(specs: Sequence[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {name: [s for s in specs if spec_group(s) == name] for name in SHIFT_GROUPS}
    groups["label-keeping"] = [s for name in LABEL_KEEPING for s in groups[name]]
    return {name: members for name, members in groups.items() if members}


def versus(arm_runs: dict[int, RunResult], baseline_runs: dict[int, RunResult], groups: dict[str, list[str]]) -> dict[str, Interval]:
    """Arm minus baseline on grounded accuracy, paired by seed and question, per group."""
    seeds = sorted(set(arm_runs) & set(baseline_runs))
    if not seeds:
        return {}
    out = {}
    for name, specs in {"clean": ["clean"], **groups}.items():
        specs = [s for s in specs if all(s in arm_runs[k].hits and s in baseline_runs[k].hits for k in seeds)]
        if specs:
            matrix = difference_matrix([[hits_array(arm_runs[k].hits[s]) for s in specs] for k in seeds],
                                       [[hits_array(baseline_runs[k].hits[s]) for s in specs] for k in seeds])
            out[name] = paired_bootstrap(matrix)
    return out


def summarize_base(result: RunResult, samples: Sequence[dict[str, Any]]) -> BaseSummary:
    clean = clean_metrics(result, samples)
    depth = int(result.recipe_config.get("model", {}).get("num_layers", 0) or 0)
    return BaseSummary(
        seed=result.seed, layer=result.layer, depth=depth,
        clean={k: clean[k] for k in ("all", "grounded", "color", "shape", "yes/no") if k in clean},
        hidden_rms={m: result.diagnostics[f"hidden_rms_{m}"] for m in ("visual", "text") if f"hidden_rms_{m}" in result.diagnostics},
        image_attention=result.diagnostics.get("image_attention"), train_minutes=result.train_seconds / 60, device=result.train_device,
        meets_target=clean.get("color", 0.0) >= COLOUR_TARGET and clean.get("shape", 0.0) >= SHAPE_TARGET,
    )


def summarize(results: Sequence[RunResult], lab: Any, planned: Sequence[tuple[Arm | None, int]], seconds: float) -> LabSummary:
    """The typed summary of finished runs. `lab` gives the slice, the specs and the config."""
    from vittle.analysis.report import to_jsonable  # heavy

    config: LabConfig = lab.config
    groups = groups_of(lab.specs)
    by_arm: dict[str, dict[int, RunResult]] = defaultdict(dict)
    for result in results:
        by_arm[result.name][result.seed] = result
    known = {arm.name: arm for arm in (*config.arms, *ARMS)}
    arms: dict[str, ArmSummary] = {}
    for name, runs in by_arm.items():
        if name == "base":
            continue
        arm, seeds = known[name], sorted(runs)
        cleans = [clean_metrics(runs[s], lab.slice) for s in seeds]
        diag_keys = sorted({k for s in seeds for k in runs[s].diagnostics})
        arms[name] = ArmSummary(
            name=name, label=arm.label, group=arm.group, description=arm.description, seeds=seeds,
            clean=stats(list(dict.fromkeys(k for c in cleans for k in c)), lambda key: [c.get(key) for c in cleans]),
            shifted=stats(lab.specs, lambda spec: [accuracy(runs[s].hits[spec]) for s in seeds if spec in runs[s].hits]),
            groups=stats(list(groups), lambda g: [group_accuracy(runs[s], groups[g]) for s in seeds]),
            diagnostics=stats(diag_keys, lambda k: [runs[s].diagnostics.get(k) for s in seeds]),
            versus_baseline={} if name == "baseline" else versus(runs, by_arm.get("baseline", {}), groups),
            versus_noise=versus(runs, by_arm.get("noise", {}), groups) if name.startswith("vittle") else {},
            train_minutes=stat([runs[s].train_seconds / 60 for s in seeds]), devices=sorted({runs[s].train_device for s in seeds}),
        )
    order = [a.name for a in config.arms if a.name in arms]
    rows = [RunRow.of(r, clean_metrics(r, lab.slice), group_accuracy(r, groups.get("label-keeping", []))) for r in results]
    return LabSummary(
        arms={name: arms[name] for name in order},
        bases=[summarize_base(by_arm["base"][s], lab.slice) for s in sorted(by_arm.get("base", {}))],
        specs=list(lab.specs), spec_groups=groups,
        slice={"images": config.slice_images, "questions": len(lab.slice), "grounded": len(lab.grounded)},
        runs=rows, export_seed=config.export_seed, config=to_jsonable(dataclasses.asdict(config)), environment=environment(),
        seconds=round(seconds, 1), runs_reported=[r.run_id for r in results],
        runs_planned=[f"{'base' if a is None else a.name}-s{s}" for a, s in planned],
    )
