"""The staged study's plan: its arms, its settings and the order of its runs (see
`analysis.lab.staged`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vittle.analysis.lab.plan import (
    LABEL_KEEPING,
    Arm,
    LabConfig,
    lab_specs,
    spec_group,
)
from vittle.analysis.lab.results import JsonRecord

TEXT_RECIPE, ALIGN_RECIPE = "tiny-stage0-text", "tiny-stage1-align"
HIDDEN_SIZE = 128
MATCHED_KL = 0.1 * HIDDEN_SIZE / 4096
"""The paper's KL weight per nat of information: 0.1 per dimension at d = 4096 is 0.1 x d/4096
here (0.003125 at d = 128); the stage-2 Vittle recipes carry it."""

WEIGHT_DECAY = 0.1
"""The largest of the paper's grid {0.1, 0.01, 0.001}, fixed before any run rather than selected: with
AdamW's decoupled decay the weights shrink by lr x wd per step, which over the 1,205 steps of the
cosine schedule from 3e-4 is 1 - exp(-0.018) = 1.8% at 0.1 and 0.2% at 0.01; the smaller values
would be the baseline again."""
ROSS_WEIGHT = 1.0
"""ROSS weighs its reconstruction objective 1.0 beside the answer loss (vittle.reconstruction)."""

STAGED_ARMS = (
    Arm("baseline", "tiny-stage2-baseline", "Baseline", "stage 2 without a bottleneck"),
    Arm("vittle-f", "tiny-stage2-vittle-f", "Vittle (F)", "fixed N(0, I) prior, KL weight 0.1 x d/4096, alpha 0.5 from the first step"),
    Arm("vittle-l", "tiny-stage2-vittle-l", "Vittle (L)", "learnable prior, otherwise as Vittle (F)"),
    Arm("noise", "tiny-stage2-noise", "Noise only", "control: (1 - alpha) h + alpha eps, alpha 0.5 from the first step, no MLP, no KL"),
    Arm("vittle-f-kl0.1", "tiny-stage2-vittle-f", "Vittle (F), KL 0.1", "Vittle (F) at the paper's literal per-dimension weight 0.1",
        ("bottleneck.kl_weight=0.1",), "sweep"),
    Arm("augmented", "tiny-stage2-baseline", "Baseline + augmentation",
        "the baseline with half its training images blurred or noised (the positive control; a method on every unit)",
        group="methods", data="augmented"),
    Arm("weight-decay", "tiny-stage2-baseline", "Weight decay", f"the baseline with AdamW weight decay {WEIGHT_DECAY:g}",
        (f"train.weight_decay={WEIGHT_DECAY:g}",), "methods"),
    Arm("l2t", "tiny-stage2-baseline", "L2T", "the baseline with the loss also on the instruction's tokens (Learning to Instruct)",
        ("data.instruction_loss=true",), "methods"),
    Arm("ross", "tiny-stage2-baseline", "ROSS", "the baseline with the image positions' outputs reconstructing the image's "
        f"latent tokens through a head (regression, weight {ROSS_WEIGHT:g})", (f"reconstruction.weight={ROSS_WEIGHT:g}",), "methods"),
    Arm("vittle-f-augmented", "tiny-stage2-vittle-f", "Vittle (F) + augmentation", "Vittle (F) on the augmented data",
        group="methods", data="augmented"),
)
MAIN_NAMES = ("baseline", "vittle-f", "vittle-l", "noise")
EXTRA_NAMES = ("vittle-f-kl0.1",)
METHOD_NAMES = ("augmented", "weight-decay", "l2t", "ross", "vittle-f-augmented")
"""The comparison methods (issue 31; docs/robustness-lab.md, "What makes a model robust?"), on every unit."""
NEW_BASE_NAMES = ("baseline", "vittle-f", *METHOD_NAMES)
"""What the units of a base added for the methods (`new_bases`) run."""


@dataclass(frozen=True)
class Job:
    """One run of the plan: stage 0 or 1 of a base, or a stage-2 arm of a unit."""

    kind: str
    """"text" (stage 0), "align" (stage 1 and the pressure measurement) or "arm"."""
    base: int
    seed: int = -1
    arm: Arm | None = None

    @property
    def name(self) -> str:
        if self.kind == "arm":
            return f"{self.arm.name}-b{self.base}-s{self.seed}"
        return f"{self.kind}-b{self.base}"

    @property
    def unit(self) -> int:
        return 10 * self.base + self.seed


@dataclass
class StageRecord(JsonRecord):
    """What stage 0 or 1 of one base measured (archived as `<job>.json`)."""

    name: str
    base: int
    kind: str
    train_seconds: float
    train_device: str
    commit: str
    final_log: dict[str, float]
    numbers: dict[str, float]
    """text: `rms_layer<k>` (per-dimension RMS after decoder layer k on corpus samples) and
    `ce`; align: the pressure (`ce_<data>_clean`, `ce_<data>_alpha<a>`) and the RMS at layer l
    on image and text tokens of VQA queries."""
    overrides: list[str] = field(default_factory=list)
    reproduces: dict[str, float] = field(default_factory=dict)
    """A base trained again while its record was archived (the models are not archived): the
    largest relative difference from the archived record's final log and numbers
    (`max_relative_difference`); empty for a first training."""


REPRODUCE_TOLERANCE = 1e-3
"""A retrained base must match its archived record within this relative difference, else the
study stops: the arms of its units would not be paired with the archived ones."""


def max_relative_difference(old: StageRecord, new: StageRecord) -> float:
    """The largest |new - old| / max(|old|, 1e-12) over the final log and the numbers both hold."""
    pairs = [(old.final_log[k], new.final_log[k]) for k in old.final_log if k in new.final_log]
    pairs += [(old.numbers[k], new.numbers[k]) for k in old.numbers if k in new.numbers]
    if not pairs:
        return float("inf")
    return max(abs(b - a) / max(abs(a), 1e-12) for a, b in pairs)


@dataclass
class StagedConfig(LabConfig):
    """The staged study's settings; LabConfig's fields keep their meaning (`seeds`: the stage-2
    seeds of every base)."""

    out: Path = Path("runs/staged")
    bases: tuple[int, ...] = (0, 1)
    """Stage-0/1 bases (each a stage-0 seed)."""
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    """Stage-2 seeds per base: units = bases x seeds."""
    extra_seeds: tuple[int, ...] = (0, 1)
    """Seeds whose units also run Vittle (F) at KL 0.1; the units of `new_bases`."""
    new_bases: tuple[int, ...] = (2,)
    """Bases added for the comparison methods (so that the between-base variance has more than one
    degree of freedom): their units (seeds `extra_seeds`) run the baseline, Vittle (F) and the
    methods, after every unit of `bases`."""
    methods: bool = True
    """Run the comparison methods' arms (`METHOD_NAMES`) on every unit."""
    text_steps: int = 800
    align_steps: int = 200
    arm_steps: int = 1205
    """Stage-2 steps of every arm: one epoch of the 38,575 train questions at batch 32 (the
    pilot's 600 left the baseline at 90% clean grounded, docs/robustness-lab/staged.md)."""
    severities: tuple[int, ...] = (3,)
    slice_images: int = 200
    diagnostic_queries: int = 128
    pressure_samples: int = 128
    """VQA and caption samples the pressure is measured on."""
    clean_only: bool = False
    """Evaluate clean only (the pilot)."""
    gates_only: bool = False
    """Report the gates alone, leaving every shifted number out (to read the gates before any
    shifted result is looked at)."""
    export_seed: int = 0
    arms: tuple[Arm, ...] = field(default=STAGED_ARMS, metadata={"cli": False})

    @classmethod
    def quick(cls, **kwargs: Any) -> StagedConfig:
        """Under 10 minutes on 2 CPU cores: one base, one unit, short stages, a small slice."""
        values: dict[str, Any] = {"bases": (0,), "seeds": (0,), "extra_seeds": (), "new_bases": (), "methods": False,
                                  "text_steps": 100, "align_steps": 40,
                                  "arm_steps": 120, "slice_images": 30, "diagnostic_queries": 32, "pressure_samples": 32,
                                  "train_images": 300, "only": MAIN_NAMES, "specs": ("gaussian_noise:3", "char_typo:3")}
        values.update(kwargs)
        return cls(**values)

    def jobs(self) -> list[Job]:
        """Every run in order: the bases' stages first (`new_bases` too), then the main arms unit
        after unit (seed-major, so an interrupted study has complete units), then the extra arms
        of the `extra_seeds` units, then the methods on every unit of `bases` in the same order,
        then the units of `new_bases` (baseline, Vittle (F) and the methods, unit after unit)."""
        by_name = {arm.name: arm for arm in self.arms if not self.only or arm.name in self.only}
        plan: list[Job] = []
        stages = (
            (MAIN_NAMES, self.seeds),
            (tuple(a.name for a in self.arms if a.name not in MAIN_NAMES and a.name not in METHOD_NAMES), self.extra_seeds),
            (METHOD_NAMES if self.methods else (), self.seeds),
        )
        for names, seeds in stages:
            for seed in seeds:
                for base in self.bases:
                    plan += [Job("arm", base, seed, by_name[n]) for n in names if n in by_name]
        for seed in self.extra_seeds:
            for base in self.new_bases:
                names = NEW_BASE_NAMES if self.methods else ("baseline", "vittle-f")
                plan += [Job("arm", base, seed, by_name[n]) for n in names if n in by_name]
        needed = {job.base for job in plan}  # a base whose units run nothing here is not trained
        return [Job(kind, b) for b in (*self.bases, *self.new_bases) if b in needed or not plan for kind in ("text", "align")] + plan


def label_keeping_specs(severities: tuple[int, ...]) -> list[str]:
    """clean and the label-keeping shifts (the main comparison's): blur and noise at
    `severities`, typos and word edits at level 3."""
    return [s for s in lab_specs(severities) if s == "clean" or spec_group(s) in LABEL_KEEPING]
