"""The CPU robustness lab: the paper's robustness study at small scale, on easy-vqa.

Per seed, a base model (the stand-in for a pretrained, aligned LLaVA) is trained from scratch;
the baseline, Vittle (F), Vittle (L) and a noise-only control are fine-tuned from it with
the same data, steps and learning rate (and a KL-weight sweep of Vittle (F) on fewer seeds).
Each is evaluated clean and under every shift, with per-question outcomes kept, so each arm
is compared with the baseline of its own base, question by question (paired bootstrap over
seeds and questions). Diagnostics measure whether the answer uses the bottleneck.

    vittle lab --out runs/lab [--quick] [--assets assets/models]

Modules: `plan` (arms, shift groups, LabConfig), `runner` (train and measure; resumable),
`stats` (paired intervals), `results` (typed RunResult and LabSummary), `summary`, `report`
(markdown and figures), `card` (model cards from a template), `cli`.
"""

from vittle.analysis.lab.plan import ARMS, MAIN_ARMS, SHIFT_GROUPS, SWEEP_ARMS, Arm, LabConfig, lab_specs, spec_group
from vittle.analysis.lab.results import ArmSummary, BaseSummary, LabSummary, RunResult, Stat
from vittle.analysis.lab.stats import Interval, paired_bootstrap, seed_interval

__all__ = ["ARMS", "MAIN_ARMS", "SHIFT_GROUPS", "SWEEP_ARMS", "Arm", "ArmSummary", "BaseSummary", "Interval", "LabConfig",
           "LabSummary", "RunResult", "Stat", "lab_specs", "paired_bootstrap", "seed_interval", "spec_group"]
