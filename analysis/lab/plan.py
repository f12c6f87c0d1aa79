"""What the lab runs: a base per seed, then every arm fine-tuned from that base.

The base stands in for a pretrained, aligned LLaVA: a small LLaVA trained from scratch on
easy-vqa until it reads colour and shape (recipe `tiny-easyvqa-base`). Every arm then
fine-tunes from the same base with the same data, steps, batch, data order and a low
learning rate, as the paper fine-tunes Vicuna: the baseline (no bottleneck), Vittle (F),
Vittle (L) and the noise-only control; a KL-weight sweep of Vittle (F) runs on fewer seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vittle.analysis.perturb.registry import Category, Modality, list_perturbations

BATCH_SIZE = 64
"""Evaluation batch of the lab's models."""
MAX_NEW_TOKENS = 4  # easy-vqa answers are one word

DEFAULT_KL = 0.1
BASE_RECIPE = "tiny-easyvqa-base"


@dataclass(frozen=True)
class Arm:
    """One fine-tuned configuration: a built-in recipe plus overrides."""

    name: str
    recipe: str
    label: str
    description: str
    overrides: tuple[str, ...] = ()
    group: str = "main"
    """"main" (every seed), "sweep" (the KL-weight sweep) or "control" (the positive control);
    the last two run on `sweep_seeds`."""
    data: str = "train"
    """"train": the easy-vqa train split; "augmented": the same with half the images blurred or
    noised (see `Lab.train_data`)."""


MAIN_ARMS = (
    Arm("baseline", "tiny-easyvqa-baseline", "Baseline", "fine-tuned from the base without a bottleneck"),
    Arm("vittle-f", "tiny-easyvqa-vittle-f", "Vittle (F)", "Vittle with the fixed N(0, I) prior"),
    Arm("vittle-l", "tiny-easyvqa-vittle-l", "Vittle (L)", "Vittle with a learnable prior"),
    Arm("noise", "tiny-easyvqa-noise", "Noise only", "control: (1 - alpha) h + alpha eps, no posterior MLP, no KL"),
)
SWEEP_ARMS = tuple(
    Arm(f"vittle-f-kl{factor:g}x", "tiny-easyvqa-vittle-f", f"Vittle (F), KL x{factor:g}",
        f"Vittle (F) with {factor:g} x the default KL weight", (f"bottleneck.kl_weight={DEFAULT_KL * factor:g}",), "sweep")
    for factor in (0.1, 10)
) + (
    Arm("vittle-f-alpha1", "tiny-easyvqa-vittle-f", "Vittle (F), alpha 1",
        "Vittle (F) with alpha_max 1: no direct path, everything after the layer passes through the posterior",
        ("bottleneck.alpha_max=1.0",), "sweep"),
    Arm("vittle-f-unscaled", "tiny-easyvqa-vittle-f", "Vittle (F), base's own scale",
        "Vittle (F) on the base's residual stream as trained, not rescaled to RMS 1", ("model.residual_rms=0",), "sweep"),
)
"""Vittle (F) variants on `sweep_seeds`: the KL weight at 0.1x and 10x the paper's, the bottleneck
without its direct path (alpha_max 1: a classic variational information bottleneck), and the
regime choice undone (the base's own residual scale)."""
CONTROL_ARMS = (
    Arm("augmented", "tiny-easyvqa-baseline", "Baseline + augmentation",
        "positive control: the baseline fine-tuned with half its images blurred or noised at a random severity",
        group="control", data="augmented"),
)
"""Training on the label-keeping visual shifts themselves must raise accuracy under them: if the
lab could not resolve that, it could not resolve anything smaller either."""
ARMS = MAIN_ARMS + SWEEP_ARMS + CONTROL_ARMS
GROUPS = ("main", "sweep", "control")
EXPORTED = {"baseline": "tiny-baseline", "vittle-f": "tiny-vittle-f", "vittle-l": "tiny-vittle-l"}
"""Arms copied into assets/models (the app's defaults), from the seed declared in `LabConfig.export_seed`."""

def shift_groups() -> dict[str, tuple[str, ...]]:
    """The lab's groups of shifts, from the registry's facts (`Perturbation.keeps_label`, its
    modality and category): blur, noise, typos and word-level edits keep the answer; brightness,
    contrast, fog and frost change the very colour that is asked about (no method can help
    there); the offline translations are word glosses in a script the models never saw."""
    groups: dict[str, list[str]] = {name: [] for name in GROUP_NAMES}
    for p in list_perturbations():
        if p.modality is Modality.VISUAL:
            groups["visual, label-keeping" if p.keeps_label else "visual, colour-altering"].append(p.name)
        elif p.category is Category.SENTENCE:
            groups["text, translation"].append(p.name)
        else:
            groups["text, label-keeping" if p.keeps_label else "text, translation"].append(p.name)
    return {name: tuple(names) for name, names in groups.items()}


GROUP_NAMES = ("visual, label-keeping", "visual, colour-altering", "text, label-keeping", "text, translation")
SHIFT_GROUPS: dict[str, tuple[str, ...]] = shift_groups()
"""`shift_groups()` of the registry as it is at import."""
LABEL_KEEPING = ("visual, label-keeping", "text, label-keeping")
"""The groups of the main comparison."""


def spec_group(spec: str) -> str | None:
    """The shift group of a spec ("frost:3" -> "visual, colour-altering"); None for clean or joint specs."""
    if "+" in spec or spec == "clean":
        return None
    name = spec.split(":")[0]
    return next((group for group, names in SHIFT_GROUPS.items() if name in names), None)


def lab_specs(severities: tuple[int, ...], text_level: int = 3) -> list[str]:
    """clean, every visual corruption at `severities`, every text shift (at `text_level`)."""

    visual = [f"{p.name}:{s}" for p in list_perturbations(Modality.VISUAL) for s in severities]
    text = [f"{p.name}:{text_level}" if p.has_levels else p.name for p in list_perturbations(Modality.TEXT)]
    return ["clean", *visual, *text]


@dataclass
class LabConfig:
    """What the lab runs and where it writes (`vittle lab`'s options are generated from it)."""

    out: Path = Path("runs/lab")
    """Output folder: runs, lab.json, lab.md and figures."""
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Seeds of the bases; every main arm is fine-tuned from each."""
    sweep_seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of the KL-weight sweep and the positive control (each also runs the baseline)."""
    groups: tuple[str, ...] = GROUPS
    """Arm groups to run: main, sweep, control."""
    export_seed: int = 0
    """The seed whose baseline, Vittle (F) and Vittle (L) become the app's models, declared
    here before any result is seen (no picking the seed that looks best)."""
    severities: tuple[int, ...] = (1, 3, 5)
    """Visual corruption severities evaluated (the paper's severity study uses three)."""
    specs: tuple[str, ...] = ()
    """Evaluate exactly these specs ("clean" is always added); default: every visual corruption
    at `severities` and every text shift."""
    slice_images: int = 300
    """Test images whose questions are evaluated: all questions clean, the colour and shape
    questions under every shift."""
    diagnostic_queries: int = 256
    """Queries of the posterior and embedding diagnostics per run."""
    train_images: int | None = None
    """Train on the questions of the first N train images only (quick mode)."""
    overrides: tuple[str, ...] = field(default=(), metadata={"positional": True, "metavar": "[base:|arm:]key=value"})
    """Recipe overrides: "base:key=value" for the bases, "arm:key=value" for the arms, plain
    "key=value" for both."""
    device: str = "auto"
    """"auto", "cpu", "cuda", "cuda:1", "mps"."""
    workers: int = 1
    """Processes that share the plan (each takes the next run whose base is ready); on a
    2-core CPU two one-thread workers train the small models about 1.5x faster than one."""
    assets: Path | None = None
    """Copy the export seed's baseline, Vittle (F) and Vittle (L) here with model cards."""
    card_images: int | None = None
    """Test images of the cards' clean accuracy (None: all 1,000, 9,673 questions)."""
    archive: Path | None = None
    """A folder kept under version control (`make lab`: docs/robustness-lab/runs) that gets a
    copy of every finished run's result (`<run>.json`, one line: the answers and per-question
    hits the statistics are computed from). A run found there counts as finished, so the lab's
    numbers survive the loss of `out`, `--report-only` recomputes every interval from the
    record alone, and a lab run elsewhere (another machine, a GPU) adds seeds to the same
    record. Models are not archived: a base found only there is trained again when one of its
    arms still has to run."""
    png: bool = True
    """Write PNG figures too (needs Chromium)."""
    train_only: bool = False
    """Train the planned runs, evaluate nothing."""
    only: tuple[str, ...] = ()
    """Run only these arms (and the bases they need), e.g. vittle-f,noise."""
    arms: tuple[Arm, ...] = field(default=ARMS, metadata={"cli": False})

    @classmethod
    def quick(cls, **kwargs: Any) -> LabConfig:
        """Under 10 minutes on 2 CPU cores: one seed, short training on 300 images, a small
        slice, severity 3 only; the same pipeline end to end."""
        values: dict[str, Any] = {
            "seeds": (0,), "sweep_seeds": (), "groups": ("main",), "severities": (3,), "slice_images": 40,
            "diagnostic_queries": 32, "train_images": 300,
            "overrides": ("base:train.max_steps=300", "arm:train.max_steps=60", "train.logging_steps=20"),
        }
        values.update(kwargs)
        return cls(**values)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.groups) - set(GROUPS))
        if unknown or not self.groups:
            raise ValueError(f"groups: unknown {unknown or list(self.groups)}; choose from {', '.join(GROUPS)}")
        names = {arm.name for arm in self.arms}
        if self.only and not set(self.only) <= names:
            raise ValueError(f"unknown arm names {sorted(set(self.only) - names)}; known: {', '.join(sorted(names))}")
        if "main" in self.groups and self.export_seed not in self.seeds and self.assets is not None:
            raise ValueError(f"export_seed={self.export_seed} is not among the seeds {list(self.seeds)}")
        for item in self.overrides:
            scope, _, rest = item.partition(":") if item.split("=")[0].count(":") else ("", "", item)
            if scope not in ("", "base", "arm") or "=" not in rest:
                raise ValueError(f"override {item!r}: use key=value, base:key=value or arm:key=value")
        if self.workers < 1:
            raise ValueError(f"workers={self.workers} must be at least 1")
        if self.slice_images < 1:
            raise ValueError(f"slice_images={self.slice_images} must be at least 1")

    def overrides_for(self, scope: str) -> list[str]:
        """The overrides for "base" or "arm" runs."""
        picked = []
        for item in self.overrides:
            head = item.split("=")[0]
            if ":" in head:
                prefix, _, rest = item.partition(":")
                if prefix == scope:
                    picked.append(rest)
            else:
                picked.append(item)
        return picked

    def planned(self) -> list[tuple[Arm | None, int]]:
        """(arm, seed) in the order they run; None stands for the seed's base. Seed-major: every
        arm of seed 0 before seed 1, so an interrupted lab has complete, paired seeds. A seed
        with a sweep arm also runs the baseline, its partner in every comparison."""
        plan: list[tuple[Arm | None, int]] = []
        seeds_of = {group: (self.seeds if group == "main" else self.sweep_seeds) if group in self.groups else () for group in GROUPS}
        baseline = next(arm for arm in self.arms if arm.name == "baseline")
        for seed in sorted({s for seeds in seeds_of.values() for s in seeds}):
            arms = [arm for arm in self.arms if (not self.only or arm.name in self.only) and seed in seeds_of[arm.group]]
            if arms and baseline not in arms:
                arms.insert(0, baseline)
            if arms:
                plan.append((None, seed))
                plan.extend((arm, seed) for arm in arms)
        return plan
