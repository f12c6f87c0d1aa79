"""The recipe's train section as `transformers.TrainingArguments`, and which checkpoint a
resumed run starts from."""

from __future__ import annotations

import dataclasses
import difflib
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

from vittle.config import TRAIN_ALIASES, RecipeConfig, TrainConfig

logger = logging.getLogger(__name__)


def _deepspeed_config(path: str) -> str | None:
    """The DeepSpeed JSON: as given, or a built-in one (zero2.json, zero3.json) by name."""
    if not path or Path(path).is_file():
        return path or None
    builtin = Path(__file__).parent / "recipes" / Path(path).name
    if builtin.is_file():
        return str(builtin)
    raise ValueError(f"train.deepspeed={path!r}: no such file (built-in: zero2.json, zero3.json)")


def training_arguments(recipe: RecipeConfig) -> TrainingArguments:
    train = recipe.train
    explicit: dict[str, Any] = dict(
        output_dir=train.output_dir,
        max_steps=train.max_steps,
        num_train_epochs=train.epochs,
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        learning_rate=train.lr,
        warmup_steps=train.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=train.weight_decay,
        lr_scheduler_type=train.lr_scheduler,
        bf16=train.bf16,
        activation_checkpointing=train.gradient_checkpointing,
        deepspeed=_deepspeed_config(train.deepspeed),
        logging_steps=train.logging_steps,
        logging_first_step=True,
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        seed=train.seed,
        report_to=train.report_to,
        dataloader_num_workers=train.num_workers,
        remove_unused_columns=False,
        # The KL terms read the bottleneck's posterior after the forward, so DDP's search for
        # unused parameters (which walks back from the forward's outputs) would mark the
        # posterior MLPs and a learnable prior as unused while their gradient is still to come:
        # "marked as ready twice" at the first step, where alpha is 0. Every trainable parameter
        # gets a gradient each step (text-only batches included, vittle.bottleneck), so no search.
        ddp_find_unused_parameters=False,
    )
    if not _has_accelerator():
        # Without it, TrainingArguments on a CPU-only machine sets up no data parallelism under
        # torchrun: every process would train its own copy on the whole data (seen: 2 ranks,
        # same 4 steps each, "parallel_mode != DISTRIBUTED"). With it, DDP over gloo.
        explicit["use_cpu"] = True
    _check_extra(train.extra, explicit)
    try:
        return TrainingArguments(**explicit, **train.extra)
    except (TypeError, ValueError) as err:
        raise ValueError(f"TrainingArguments refused the recipe's train section: {err}") from err


def _has_accelerator() -> bool:
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available()) or bool(xpu and xpu.is_available())


def _check_extra(extra: dict[str, Any], explicit: dict[str, Any]) -> None:
    """`train.extra` may name only TrainingArguments fields that the recipe does not set itself."""
    allowed = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    ours = {**{k: k for k in explicit if k in fields}, **TRAIN_ALIASES, "warmup_steps": "warmup_ratio"}
    for key in sorted(extra):
        if key.startswith("hub_") or key == "push_to_hub":
            raise ValueError(f"train.extra.{key}: Trainer's own upload would push checkpoints without the bottleneck's card "
                             "and with the trainer's pickles; set train.push_to_hub=ORG/NAME instead")
        if key in explicit:
            if key not in ours:
                raise ValueError(f"train.extra.{key} is fixed by vittle's training ({key}={explicit[key]!r}); leave it out")
            raise ValueError(f"train.extra.{key} clashes with the recipe's train.{ours[key]}, which sets it; "
                             f"set train.{ours[key]} instead")
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed - set(explicit)), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"train.extra.{key} is not a transformers.TrainingArguments field{hint}")


def resumable_checkpoint(output_dir: str | Path) -> str | None:
    """The newest intact `checkpoint-N` in output_dir. A damaged newer one (a run killed while
    saving, a truncated file) is skipped with a warning that names the file; if none is
    intact, an error lists why."""
    from vittle.checkpoint import CheckpointError, checkpoint_problem  # heavy

    folder = Path(output_dir)
    found = sorted((p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True) if folder.is_dir() else []
    if not found:
        logger.warning("resume requested but %s has no checkpoint: starting from scratch", folder)
        return None
    problems: list[tuple[Path, str]] = []
    for candidate in found:
        problem = checkpoint_problem(candidate)
        if problem is None:
            for skipped, why in problems:
                logger.warning("skipping %s: %s; resuming from %s instead", skipped, why, candidate)
            return str(candidate)
        problems.append((candidate, problem))
    raise CheckpointError(f"no checkpoint in {folder} can be resumed from: " + "; ".join(f"{p.name}: {why}" for p, why in problems)
                          + ". Delete them, or set train.resume=false to start again.")
