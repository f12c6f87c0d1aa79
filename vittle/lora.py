"""LoRA and QLoRA for Vittle training (peft, the `train` extra).

The language model's linear layers get low-rank adapters; the projector and the bottleneck
MLPs are trained in full, as in LLaVA-1.5's LoRA recipe (which trains the projector in full).
They are unfrozen directly rather than through peft's `modules_to_save`: that wraps a module
in a copy, while the bottleneck's forward hook holds the original object, so the trained copy
would never run. The price is that peft's adapter files do not hold them, so every checkpoint
gets a second file, `vittle_trained.safetensors`, with their weights; resuming reads both.

At the end the adapters are merged into the weights and the model is saved like any other,
so `Assistant.load` and the app read it unchanged. QLoRA (lora.quantize) cannot merge into
quantized weights: the base is loaded again in the compute dtype and the adapters merged there.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import torch
from safetensors.torch import load_file, save_file

from vittle.checkpoint import CheckpointError
from vittle.config import LoraConfig
from vittle.families import VisionLanguageModel, family_of, in_projector, projector_paths
from vittle.model import BOTTLENECK_ATTR

if TYPE_CHECKING:
    from peft import PeftModel  # a family's model with adapters (peft is optional)
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

ADAPTER_FILE = "adapter_model.safetensors"
TRAINED_FILE = "vittle_trained.safetensors"
"""The fully trained (non-adapter) weights of a LoRA checkpoint: projector and bottleneck."""


def _fully_trained(model: VisionLanguageModel) -> tuple[str, ...]:
    """Paths (in the base model) of what is trained in full: the projector, its extras and the bottleneck."""
    return (*projector_paths(model), BOTTLENECK_ATTR)


def _peft() -> Any:
    try:
        import peft  # optional
    except ImportError as err:
        raise ImportError("lora.r needs peft: pip install 'vittle[train]'") from err
    return peft


def is_lora(model: VisionLanguageModel) -> TypeGuard[PeftModel]:
    """Whether `model` is a peft model (LoRA adapters injected)."""
    try:
        from peft import PeftModel  # optional
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def apply_lora(model: VisionLanguageModel, config: LoraConfig) -> torch.nn.Module:
    """Inject adapters into the language model's `config.modules` linear layers; freeze
    everything else but the projector and the bottleneck. Returns the peft model."""
    peft = _peft()
    if config.quantize:
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    names = "|".join(config.modules)
    # only inside the language model: the vision tower and the projector have linear layers too
    inside = family_of(model).language_model
    target = rf"(.*\.)?{re.escape(inside)}\..*\.({names})$"
    found = [n for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and n.startswith(inside + ".") and n.split(".")[-1] in config.modules]
    if not found:
        raise ValueError(f"lora.target_modules={config.target_modules!r}: no linear layer of the language model has these names")
    lora = peft.LoraConfig(r=config.r, lora_alpha=config.scale_numerator, lora_dropout=config.dropout, target_modules=target,
                           bias="none", task_type=None)
    wrapped = peft.get_peft_model(model, lora)
    fully_trained = _fully_trained(model)
    for name, param in wrapped.get_base_model().named_parameters():
        if in_projector(name, fully_trained):
            param.requires_grad_(True)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for p in wrapped.parameters())
    logger.info("LoRA r=%d on %d layers: %.2fM of %.2fM parameters trainable", config.r, len(found), trainable / 1e6, total / 1e6)
    return wrapped


def fully_trained_state(model: PeftModel) -> dict[str, torch.Tensor]:
    """The trainable weights that are not adapters, named as in the base model."""
    return {name: param.detach().contiguous().cpu() for name, param in model.get_base_model().named_parameters()
            if param.requires_grad and "lora_" not in name}


def save_trained(model: PeftModel, folder: str | Path) -> None:
    """Write `vittle_trained.safetensors` (projector and bottleneck) next to peft's adapter."""
    save_file(fully_trained_state(model), str(Path(folder) / TRAINED_FILE))


def load_adapter_checkpoint(model: PeftModel, folder: str | Path) -> None:
    """Restore a LoRA checkpoint into the peft `model`: adapters and fully trained weights."""
    peft = _peft()
    folder = Path(folder)
    for name in (ADAPTER_FILE, TRAINED_FILE):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder} is not a LoRA checkpoint of this run: {name} is missing")
    adapters = load_file(str(folder / ADAPTER_FILE))
    result = peft.set_peft_model_state_dict(model, adapters)
    missing_adapters = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing_adapters:
        raise CheckpointError(f"{folder}/{ADAPTER_FILE} lacks adapters of this model, e.g. {missing_adapters[:3]}")
    trained = load_file(str(folder / TRAINED_FILE))
    expected = set(fully_trained_state(model))
    if set(trained) != expected:
        raise CheckpointError(f"{folder}/{TRAINED_FILE} does not match the model's fully trained weights "
                              f"(missing {sorted(expected - set(trained))[:3]}, unexpected {sorted(set(trained) - expected)[:3]})")
    base = model.get_base_model()
    params = dict(base.named_parameters())
    with torch.no_grad():
        for name, value in trained.items():
            params[name].copy_(value.to(params[name].dtype))
    logger.info("restored LoRA adapters and %d fully trained tensors from %s", len(trained), folder)


def merged(model: PeftModel) -> PreTrainedModel:
    """The base model with the adapters merged into its weights (peft removed)."""
    return model.merge_and_unload()


def copy_trained(trained: PeftModel, fresh: PeftModel) -> PeftModel:
    """Copy a trained peft model's adapters and fully trained weights onto `fresh`, a peft
    model of the same recipe built again (unquantized, for QLoRA's final merge); returns it."""
    peft = _peft()
    peft.set_peft_model_state_dict(fresh, peft.get_peft_model_state_dict(trained))
    params = dict(fresh.get_base_model().named_parameters())
    with torch.no_grad():
        for name, value in fully_trained_state(trained).items():
            params[name].copy_(value.to(params[name].dtype))
    return fresh.eval()
