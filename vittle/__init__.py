"""Vittle: Visual Instruction Bottleneck Tuning for LLaVA-style multimodal LLMs.

    import vittle
    model = vittle.attach_bottleneck(llava_model, vittle.BottleneckConfig(prior="fixed"))
    model = vittle.load_pretrained("path/to/checkpoint")
    assistant = vittle.Assistant.load("path/to/checkpoint")

Heavy modules (transformers, the trainer) load on first use of the names that need them.
"""

from __future__ import annotations

import importlib
from typing import Any

from vittle.config import (
    BottleneckConfig,
    DataConfig,
    ModelConfig,
    RecipeConfig,
    TrainConfig,
)

__version__ = "0.1.0"

_LAZY = {
    "attach_bottleneck": "vittle.model",
    "detach_bottleneck": "vittle.model",
    "get_bottleneck": "vittle.model",
    "bottleneck_alpha": "vittle.model",
    "load_pretrained": "vittle.checkpoint",
    "CheckpointError": "vittle.checkpoint",
    "Assistant": "vittle.inference",
    "ProbeResult": "vittle.inference",
    "build_tiny_llava": "vittle.tiny",
    "gaussian_kl": "vittle.bottleneck",
    "VittleBottleneck": "vittle.bottleneck",
    "DataError": "vittle.data",
    "load_recipe": "vittle.settings",
    "train": "vittle.trainer",
    "VittleTrainer": "vittle.trainer",
    "schedule_alpha": "vittle.objective",
    "vittle_loss": "vittle.objective",
    "alpha_at": "vittle.objective",
}

__all__ = ["BottleneckConfig", "DataConfig", "ModelConfig", "RecipeConfig", "TrainConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vittle' has no attribute {name!r}")
