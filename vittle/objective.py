"""The Vittle objective for any training loop: alpha's schedule and the loss.

    vittle.schedule_alpha(model, step / total_steps)      # each optimizer step
    loss, terms = vittle.vittle_loss(model, outputs, batch["labels"], batch["attention_mask"])

With a `transformers.Trainer` (or TRL's `SFTTrainer`), `AlphaSchedule()` in its callbacks sets
alpha at the start of every optimizer step; `VittleTrainer` adds it itself.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers import TrainerCallback

from vittle.bottleneck import BottleneckState
from vittle.config import BottleneckConfig
from vittle.data import IGNORE_INDEX
from vittle.model import get_bottleneck


def alpha_at(config: BottleneckConfig, progress: float) -> float:
    """alpha for training progress in [0, 1] (optimizer steps done / total)."""
    progress = min(max(progress, 0.0), 1.0)
    if config.schedule == "constant":
        return config.alpha_max
    if config.schedule == "cosine":  # 0 -> alpha_max along half a cosine
        return config.alpha_max * 0.5 * (1.0 - math.cos(math.pi * progress))
    return config.alpha_max / (1.0 + math.exp(-10.0 * (progress - 0.5)))  # "sigmoid"


def schedule_alpha(model: torch.nn.Module, progress: float) -> float:
    """Set the attached bottleneck's training alpha for `progress` (optimizer steps done /
    total, in [0, 1]) from its config's schedule; returns it (0.0 without a bottleneck).
    Call it every step when training with your own loop or another trainer (TRL's
    SFTTrainer, LLaVA's train.py); `VittleTrainer` does it for you."""
    bottleneck = get_bottleneck(model)
    if bottleneck is None:
        return 0.0
    bottleneck.train_alpha = alpha_at(bottleneck.config, progress)
    return bottleneck.train_alpha


class AlphaSchedule(TrainerCallback):
    """Sets the bottleneck's training alpha from its schedule at the start of each optimizer
    step (`schedule_alpha` with progress = steps done / max_steps), for any `transformers.Trainer`:
    `Trainer(..., callbacks=[AlphaSchedule()])`. A model without a bottleneck is left alone."""

    def on_step_begin(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None, **kwargs: Any) -> None:
        if model is not None:
            schedule_alpha(model, state.global_step / max(1, state.max_steps))


def vittle_loss(model: torch.nn.Module, outputs: Any, labels: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, state: BottleneckState | None = None,
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The Vittle objective after a forward pass: (loss, terms) with loss = CE (`outputs.loss`)
    + kl_weight * (KL_v + KL_t) and terms {"ce", "kl_v", "kl_t"} (only "ce" without a
    bottleneck). With text_kl_scope "prompt", `labels` and `attention_mask` of the batch pick
    the text tokens whose KL counts (the prompt's, not the answer's). `state`: that forward's
    bottleneck state (default: `outputs.vittle`, which `model(**inputs)` returns; one of
    `vittle.bottleneck.record_states()` where the output object is not the model's own)."""
    bottleneck = get_bottleneck(model)
    loss, terms = outputs.loss, {"ce": outputs.loss}
    if bottleneck is None:
        return loss, terms
    scope = None
    if bottleneck.config.text_kl_scope == "prompt":
        if labels is None or attention_mask is None:
            raise ValueError("text_kl_scope='prompt' needs the batch's labels and attention_mask to find the prompt tokens")
        scope = (labels == IGNORE_INDEX) & attention_mask.bool()
    terms["kl_v"], terms["kl_t"] = bottleneck.kl_terms(scope, state if state is not None else getattr(outputs, "vittle", None))
    return loss + bottleneck.config.kl_weight * (terms["kl_v"] + terms["kl_t"]), terms
