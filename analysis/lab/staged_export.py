"""The app's default models from the staged study: the declared unit's baseline, Vittle (F) and
Vittle (L), copied with model cards filled from measured numbers (docs/robustness-lab/staged.md,
"The app's models").

    python -m vittle.analysis.lab.staged_export --out runs/staged --archive docs/robustness-lab/staged/runs \
        --assets assets/models --base 0 --seed 0

A model is exported only when its unit's Vittle (F) passes gate (b) on that unit's own clean
numbers (the KL per dimension and the posterior mean alone against the unit's noise control);
otherwise nothing is copied and the reason is returned.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vittle.analysis.evaluate import Variants, load_samples
from vittle.analysis.lab.card import CardData, write_asset
from vittle.analysis.lab.plan import BATCH_SIZE, EXPORTED, MAX_NEW_TOKENS
from vittle.analysis.lab.results import RunResult
from vittle.analysis.lab.staged_plan import StagedConfig, StageRecord
from vittle.analysis.lab.staged_report import GATE_B_KL, GATE_B_MARGIN
from vittle.analysis.lab.summary import accuracy, clean_metrics

logger = logging.getLogger(__name__)

STAGED_PROTOCOL = "staged"


@dataclass(frozen=True)
class UnitGate:
    """Gate (b) of one unit's Vittle (F), from its clean numbers alone."""

    passed: bool
    kl: float
    alpha1_minus_noise: float | None
    reason: str


def unit_gate(vittle_f: RunResult, noise: RunResult | None) -> UnitGate:
    d = vittle_f.diagnostics
    kl = max(float(d.get("kl_visual", 0.0)), float(d.get("kl_text", 0.0)))
    if noise is None or "grounded_alpha1" not in noise.diagnostics:
        return UnitGate(False, kl, None, "the unit's noise control has not finished")
    margin = float(d.get("grounded_alpha1", 0.0)) - float(noise.diagnostics["grounded_alpha1"])
    passed = kl >= GATE_B_KL and margin >= GATE_B_MARGIN
    reason = (f"mean KL per dimension {kl:.3g} (needs {GATE_B_KL:g}); posterior mean alone {margin:+.1f} points "
              f"over the noise control (needs +{GATE_B_MARGIN:g})")
    return UnitGate(passed, kl, margin, reason)


def _config(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / "config.json").read_text(encoding="utf-8"))


def staged_card(result: RunResult, stages: dict[str, StageRecord], unit: tuple[int, int], clean: dict[str, float],
                test_questions: int, label: str, description: str) -> CardData:
    """The card of one stage-2 model of unit (base, seed)."""
    base, seed = unit
    text, align = stages[f"text-b{base}"], stages[f"align-b{base}"]
    config = _config(Path(result.model_dir))
    text_config = config.get("text_config", {})
    recipe = result.recipe_config.get("train", {})
    return CardData(
        name=result.name, asset=EXPORTED[result.name], label=label, description=description, seed=result.seed,
        recipe=result.recipe,
        overrides=[o for o in result.overrides if not o.startswith(("model.init=", "train.seed=", "data.path=", "train.max_steps="))],
        commit=result.commit, train_device=result.train_device, train_minutes=result.train_seconds / 60,
        base_train_minutes=(text.train_seconds + align.train_seconds) / 60, steps=int(recipe.get("max_steps", 0)),
        batch=int(recipe.get("batch_size", 0)), lr=float(recipe.get("lr", 0.0)),
        base_steps=_steps(text), base_batch=32, base_lr=1e-3,
        depth=int(text_config.get("num_hidden_layers", 0)), width=int(text_config.get("hidden_size", 0)), layer=result.layer,
        test_questions=test_questions, clean=clean, diagnostics=result.diagnostics, final_log=result.final_log, lab_seeds=1,
        protocol=STAGED_PROTOCOL, unit=f"b{base}-s{seed}",
        stages={"text": {"steps": _steps(text), "minutes": text.train_seconds / 60, **text.numbers},
                "align": {"steps": _steps(align), "minutes": align.train_seconds / 60, **align.numbers}},
    )


def _steps(record: StageRecord) -> int:
    for item in record.overrides:
        if item.startswith("train.max_steps="):
            return int(item.split("=", 1)[1])
    return 0


def export_staged(lab: Any, assets: Path, base: int, seed: int, card_images: int | None = None, device: str = "auto") -> tuple[list[Path], str]:
    """Copy unit (base, seed)'s baseline, Vittle (F) and Vittle (L) to `assets` with their cards,
    if the unit's Vittle (F) passes gate (b); returns the folders written and what was decided."""
    from vittle.inference import Assistant  # heavy

    stages, arms = lab.records()
    unit = 10 * base + seed
    runs = {r.name: r for r in arms.values() if r.seed == unit}
    missing = [name for name in (*EXPORTED, "noise") if name not in runs]
    if missing or f"text-b{base}" not in stages or f"align-b{base}" not in stages:
        return [], f"unit (b{base}, s{seed}) is not finished: {', '.join(missing) or 'its stages'} missing; the models stay"
    gate = unit_gate(runs["vittle-f"], runs["noise"])
    if not gate.passed:
        return [], f"unit (b{base}, s{seed})'s Vittle (F) fails gate (b): {gate.reason}; the models stay"
    absent = [r.name for name, r in runs.items() if name in EXPORTED and not (Path(r.model_dir) / "config.json").exists()]
    if absent:
        return [], f"the models of {', '.join(absent)} are not on disk (their results came from the archive); the models stay"
    samples = load_samples("easyvqa", card_images)
    images, questions = Variants(samples).get("clean")
    labels = {arm.name: (arm.label, arm.description) for arm in lab.config.arms}
    written = []
    for name in EXPORTED:
        result = runs[name]
        assistant = Assistant.load(result.model_dir, device=device)
        predictions = assistant.answer_batch(images, questions, max_new_tokens=MAX_NEW_TOKENS, batch_size=BATCH_SIZE)
        full = RunResult(**{**result.to_json(), "clean_predictions": predictions})
        card = staged_card(result, stages, (base, seed), clean_metrics(full, samples), len(samples), *labels[name])
        written.append(write_asset(Path(result.model_dir), assets / EXPORTED[name], card))
    grounded = accuracy(runs["vittle-f"].hits["clean"])
    return written, (f"exported unit (b{base}, s{seed}): its Vittle (F) passes gate (b) ({gate.reason}); "
                     f"clean grounded on the study's slice {grounded:.1f}%")


def main(argv: list[str] | None = None) -> int:
    from vittle.analysis.lab.staged import StagedLab  # heavy
    parser = argparse.ArgumentParser(prog="python -m vittle.analysis.lab.staged_export",
                                     description="Copy the staged study's declared unit into the app's models.")
    parser.add_argument("--out", type=Path, default=Path("runs/staged"))
    parser.add_argument("--archive", type=Path, default=Path("docs/robustness-lab/staged/runs"))
    parser.add_argument("--assets", type=Path, default=Path("assets/models"))
    parser.add_argument("--base", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--card-images", type=int, default=None, help="test images of the cards' clean accuracy (default: all 1,000)")
    args = parser.parse_args(argv)
    lab = StagedLab(StagedConfig(out=args.out, archive=args.archive, bases=(args.base,), seeds=(args.seed,)))
    written, decision = export_staged(lab, args.assets, args.base, args.seed, args.card_images)
    print(decision)
    for path in written:
        print(f"  {path}")
    return 0 if written else 1


if __name__ == "__main__":
    raise SystemExit(main())
