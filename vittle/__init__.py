"""Vittle: Visual Instruction Bottleneck Tuning for LLaVA-style multimodal LLMs.

    import vittle
    model = vittle.attach_bottleneck(llava_model, vittle.BottleneckConfig(prior="fixed"))
    model = vittle.load_pretrained("path/to/checkpoint")
    assistant = vittle.Assistant.load("path/to/checkpoint")

Heavy modules (transformers, the trainer) load on first use of the names that need them.
"""

from __future__ import annotations

import importlib
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

from vittle.config import (
    BottleneckConfig,
    DataConfig,
    ModelConfig,
    RecipeConfig,
    TrainConfig,
)


def _version() -> str:
    """The installed distribution's version (pyproject.toml is the one place it is written);
    from a source tree that is not installed (a Space runs app.py from a copy of the
    repository), pyproject.toml's itself."""
    try:
        return metadata.version("vittle")
    except metadata.PackageNotFoundError:
        try:
            pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
            return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]
        except (OSError, KeyError, ValueError):
            return "0+unknown"


__version__ = _version()

# The analysis tools and the app live in the repository's top-level folders analysis/ and app/
# and are installed as vittle.analysis and vittle.app (pyproject.toml maps them), so a user's own
# `analysis` or `app` package cannot shadow them. From a source tree the two folders sit beside
# this package's folder: let `vittle.analysis` and `vittle.app` find them there.
_SOURCE_ROOT = Path(__file__).resolve().parent.parent
if not (Path(__file__).resolve().parent / "analysis").is_dir() and (_SOURCE_ROOT / "analysis" / "__init__.py").is_file() \
        and (_SOURCE_ROOT / "app" / "__init__.py").is_file() and (_SOURCE_ROOT / "pyproject.toml").is_file():
    __path__.append(str(_SOURCE_ROOT))  # noqa: F821 (the package's own __path__)

_LAZY = {
    "attach_bottleneck": "vittle.model",
    "detach_bottleneck": "vittle.model",
    "get_bottleneck": "vittle.model",
    "bottleneck_alpha": "vittle.model",
    "load_pretrained": "vittle.checkpoint",
    "CheckpointError": "vittle.checkpoint",
    "Assistant": "vittle.inference",
    "ProbeResult": "vittle.inference",
    "build_tiny_llava": "vittle.toy.tiny",
    "gaussian_kl": "vittle.bottleneck",
    "VittleBottleneck": "vittle.bottleneck",
    "DataError": "vittle.data",
    "load_recipe": "vittle.settings",
    "train": "vittle.trainer",
    "VittleTrainer": "vittle.trainer",
    "schedule_alpha": "vittle.objective",
    "AlphaSchedule": "vittle.objective",
    "vittle_loss": "vittle.objective",
    "alpha_at": "vittle.objective",
}

__all__ = ["BottleneckConfig", "DataConfig", "ModelConfig", "RecipeConfig", "TrainConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vittle' has no attribute {name!r}")
