"""The plugin registry: names that a recipe, a checkpoint or the command line resolves to code
the core does not import itself.

Each group maps a name to "module:attr" (or "module"), declared as entry points in a
package's metadata (pyproject.toml) and, for vittle's own plugins, also in `BUILT_IN` here:
a source tree that was never installed (the Hugging Face Space runs app.py from a plain copy of
the repository) has no metadata, and still knows them.

- `vittle.model_inits`: a `model.init` name -> `init(model: ModelConfig) -> (model, processor)`
  ("tiny", "tiny-efficientnet": vittle.toy.tiny).
- `vittle.datasets`: a `data.synthetic` name -> `make(data: DataConfig, seed: int)`, which
  writes `data.path` when it is missing ("shapes", "easyvqa*", "easyvqa-captions": vittle.toy;
  "wordnet": vittle.corpus).
- `vittle.model_types`: a transformers `model_type` -> the module that registers it with
  AutoConfig / AutoModel when imported ("vittle_efficientnet_lite": vittle.toy.efficientnet);
  `register_model_types` imports it before a checkpoint that names it is read.
- `vittle.augmenters`: a `data.augmenter` name -> `make(specs: str, probability: float, seed: int)`,
  which returns `(image, sample index) -> image` for training-time augmentation ("shifts": the
  project's visual shifts, vittle.analysis.perturb.training).
- `vittle.commands`, `vittle.command_settings`: the analysis and app commands (vittle.cli).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MODEL_INITS, DATASETS, MODEL_TYPES = "vittle.model_inits", "vittle.datasets", "vittle.model_types"
AUGMENTERS = "vittle.augmenters"

BUILT_IN: dict[str, dict[str, str]] = {
    MODEL_INITS: {"tiny": "vittle.toy.tiny:init_tiny", "tiny-efficientnet": "vittle.toy.tiny:init_efficientnet"},
    DATASETS: {
        "shapes": "vittle.toy.shapes:synthesize",
        "easyvqa": "vittle.toy.easyvqa:synthesize",
        "easyvqa-balanced": "vittle.toy.easyvqa:synthesize",
        "easyvqa-test": "vittle.toy.easyvqa:synthesize",
        "easyvqa-captions": "vittle.toy.captions:synthesize",
        "wordnet": "vittle.corpus:synthesize",
    },
    MODEL_TYPES: {"vittle_efficientnet_lite": "vittle.toy.efficientnet"},
    AUGMENTERS: {"shifts": "vittle.analysis.perturb.training:training_shifts"},
}
"""vittle's own plugins, known without package metadata (pyproject.toml declares the same)."""

WHAT = {MODEL_INITS: "model.init", DATASETS: "data.synthetic", MODEL_TYPES: "model type", AUGMENTERS: "data.augmenter"}


class PluginError(ValueError):
    """A name no plugin of its group registers, with the names that are registered."""


def entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The entry points of `group` in the installed packages' metadata, name -> entry point."""
    return {point.name: point for point in importlib.metadata.entry_points(group=group)}


def registered(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The built-in plugins of `group` and those the installed packages declare; a declared one
    named like a built-in but pointing elsewhere is ignored with a warning."""
    found = {name: importlib.metadata.EntryPoint(name, value, group) for name, value in BUILT_IN.get(group, {}).items()}
    for name, point in entry_points(group).items():
        if name not in found:
            found[name] = point
        elif point.value != found[name].value:
            _ignored(group, name, point.value, found[name].value)
    return found


@functools.cache
def _ignored(group: str, name: str, value: str, built_in: str) -> None:
    logger.warning("ignoring the %s entry point %r (%s): vittle has a built-in one (%s)", group, name, value, built_in)  # once


def names(group: str) -> tuple[str, ...]:
    return tuple(sorted(registered(group)))


def load(group: str, name: str) -> Any:
    """The object (or module) that `name` stands for in `group`; a PluginError listing the
    registered names when none has it."""
    points = registered(group)
    if name not in points:
        raise PluginError(f"{WHAT.get(group, group)} {name!r} is not registered; registered: {', '.join(sorted(points)) or 'none'} "
                          f"(entry point group {group!r})")
    return points[name].load()


def _known_to_transformers(model_type: str) -> bool:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING  # heavy

    return model_type in CONFIG_MAPPING


def register_model_type(model_type: str) -> None:
    """Make transformers know `model_type`: nothing if it does, else import the module that
    registers it (`vittle.model_types`); a PluginError naming the type if none does."""
    if _known_to_transformers(model_type):
        return
    points = registered(MODEL_TYPES)
    if model_type not in points:
        import transformers  # heavy

        raise PluginError(f"model type {model_type!r} is not known to transformers {transformers.__version__}, and no {MODEL_TYPES} "
                          f"plugin registers it (registered: {', '.join(sorted(points)) or 'none'})")
    points[model_type].load()
    if not _known_to_transformers(model_type):
        raise PluginError(f"{points[model_type].value} was imported for model type {model_type!r} but did not register it")


def model_types(config: dict[str, Any]) -> list[str]:
    """The model types a config.json names: its own and its sub-configs' (vision_config, text_config, ...)."""
    found = [config["model_type"]] if isinstance(config.get("model_type"), str) else []
    for value in config.values():
        if isinstance(value, dict):
            found += [kind for kind in model_types(value) if kind not in found]
    return found


def register_model_types(folder: str | Path) -> list[str]:
    """Register with transformers every model type that `folder`/config.json names (see
    `register_model_type`); returns them. A folder without a readable config.json is left alone
    (loading it reports that)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    kinds = model_types(config) if isinstance(config, dict) else []
    for kind in kinds:
        register_model_type(kind)
    return kinds
