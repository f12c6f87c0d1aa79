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

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {  # loaded on first use: `vittle lab --help` reads the plan only (no numpy)
    **dict.fromkeys(["ARMS", "MAIN_ARMS", "SHIFT_GROUPS", "SWEEP_ARMS", "Arm", "LabConfig", "lab_specs", "spec_group"], "plan"),
    **dict.fromkeys(["ArmSummary", "BaseSummary", "LabSummary", "RunResult", "Stat"], "results"),
    **dict.fromkeys(["Interval", "paired_bootstrap", "seed_interval"], "stats"),
}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
