"""The family adapter: the one place that knows how a model family lays out a vision-language
model. Everything else asks it where the decoder layers, the image tokens, the projector, the
LM head, the chat format and the positions are.

    family = family_of(model)           # a model (peft-wrapped too), its config or its processor
    decoder_layers(model)               # the text decoder's layers (transformers' get_decoder())
    visual_mask(model, input_ids)       # (batch, seq) image (and video) placeholder tokens
    family.chat.build_prompt(question, has_image=True)

The families and what each one keeps where: `vittle.family_table` (`Family`, `FAMILIES`,
`TOKEN_TYPE_KEYS`). `Family.layout` (`vittle.family_inputs`) turns an image into tensors, a token
count and prompt text (`encode_image`, `image_text`, `feature_token_id`); `Family.token_types`
names the per-token input; `vittle.family_inputs.collate_images` batches for every family.

Adding a family: one `Family` entry in `vittle.family_table.FAMILIES` and one builder in `BUILDERS` of tests/vittle/conftest.py.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypeAlias, cast

import torch
import transformers
from torch import nn

from vittle.config import default_layer
from vittle.family_table import FAMILIES, Family

logger = logging.getLogger(__name__)


class UnsupportedFamilyError(TypeError):
    """A model, config or processor of a family vittle does not know, naming those it knows."""




def supported() -> str:
    return ", ".join(f"{f.name} ({f.model_class})" for f in FAMILIES.values())


VisionLanguageModel: TypeAlias = nn.Module
"""What the adapter's functions take: a model of one of the families (a transformers
`PreTrainedModel`), or that model under peft adapters; `_base` gives the model inside."""


def _base(model: VisionLanguageModel) -> transformers.PreTrainedModel:
    """The transformers model under a peft wrapper."""
    get_base = getattr(model, "get_base_model", None)
    return cast(transformers.PreTrainedModel, get_base() if get_base is not None else model)


def family_of(obj: Any) -> Family:
    """The family of a model, a model config or a processor."""
    if isinstance(obj, transformers.ProcessorMixin):
        for family in FAMILIES.values():
            if isinstance(obj, getattr(transformers, family.processor_class)):
                return family
        raise UnsupportedFamilyError(f"vittle does not support {type(obj).__name__} processors; supported families: {supported()}")
    config = obj if isinstance(obj, transformers.PretrainedConfig) else getattr(obj, "config", None)
    found = FAMILIES.get(str(getattr(config, "model_type", "")))
    if found is None or config is None:
        kind = type(obj).__name__ if config is None else f"{type(obj).__name__} (model_type {config.model_type!r})"
        raise UnsupportedFamilyError(f"vittle does not support {kind}; supported families: {supported()}")
    return found


def submodule(model: VisionLanguageModel, path: str) -> nn.Module:
    return _base(model).get_submodule(path)


def backbone(model: VisionLanguageModel) -> nn.Module:
    """The model without its LM head (`model.model`: vision tower, projector, text decoder)."""
    family_of(model)
    return _base(model).base_model


def decoder_layers(model: VisionLanguageModel) -> nn.ModuleList:
    """The text decoder's layers (transformers' `get_decoder()`)."""
    family_of(model)
    return _base(model).get_decoder().layers


def language_model(model: VisionLanguageModel) -> nn.Module:
    family = family_of(model)
    return submodule(model, family.language_model)


def projector(model: VisionLanguageModel) -> nn.Module:
    return submodule(model, family_of(model).projector)


def projector_paths(model: VisionLanguageModel) -> tuple[str, ...]:
    """Paths of what is trained with the projector: the projector and the family's
    `projector_extras` (modules or single parameters)."""
    family = family_of(model)
    return (family.projector, *family.projector_extras)


def in_projector(name: str, paths: tuple[str, ...]) -> bool:
    """Whether parameter `name` (as the base model names it) belongs to one of `paths`."""
    return any(name == path or name.startswith(path + ".") for path in paths)


def train_projector(model: VisionLanguageModel) -> list[str]:
    """Unfreeze the projector and its extras; returns the names of their parameters."""
    paths = projector_paths(model)
    names = [name for name, param in _base(model).named_parameters() if in_projector(name, paths)]
    for name, param in _base(model).named_parameters():
        if name in names:
            param.requires_grad_(True)
    return names


def projector_output(model: VisionLanguageModel) -> nn.Module:
    return submodule(model, family_of(model).projector_output)


def lm_head(model: VisionLanguageModel) -> nn.Module:
    return _base(model).get_output_embeddings()


def text_config(model: VisionLanguageModel) -> Any:
    return _base(model).config.get_text_config()


def default_bottleneck_layer(model: VisionLanguageModel) -> int:
    """3/4 of the depth, never the last layer (`vittle.config.default_layer`)."""
    return default_layer(len(decoder_layers(model)))


def image_token_id(model: VisionLanguageModel) -> int:
    return _base(model).config.image_token_id


def visual_token_ids(model: VisionLanguageModel) -> list[int]:
    """The placeholder ids the bottleneck treats as visual: the image token, and the video token
    where the family has one."""
    config = _base(model).config
    return [config.image_token_id, *([config.video_token_id] if family_of(model).video else [])]


def visual_mask(model: VisionLanguageModel, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, seq) True at image (and video) placeholder positions: the rule of transformers'
    `get_placeholder_mask` (the token id, or, given only embeddings, the placeholder's embedding).
    That method cannot be called here: LLaVA's checks the image features, which do not exist
    yet when the mask is needed (before the backbone's forward)."""
    ids = visual_token_ids(model)
    if input_ids is not None:
        return torch.isin(input_ids, torch.tensor(ids, device=input_ids.device))
    if inputs_embeds is None:
        raise ValueError("the model was called without input_ids or inputs_embeds")
    embedding = _base(model).get_input_embeddings()  # through the module: Gemma scales its embeddings
    table = embedding(torch.tensor(ids, device=next(embedding.parameters()).device)).to(inputs_embeds.device, inputs_embeds.dtype)
    mask = torch.zeros(inputs_embeds.shape[:2], dtype=torch.bool, device=inputs_embeds.device)
    for row in table:
        mask |= (inputs_embeds == row).all(dim=-1)
    return mask


def token_inputs(family: Family, input_ids: torch.Tensor, image_token: int) -> dict[str, torch.Tensor]:
    """Per-token model inputs besides the ids, 1 at the image (feature) tokens `image_token`:
    Qwen-VL's `mm_token_type_ids` (its 3-D positions), Gemma 3's `token_type_ids` (bidirectional
    attention within an image)."""
    if family.token_types is None:
        return {}
    return {family.token_types: (input_ids == image_token).to(torch.int)}


def require_1d_positions(model: VisionLanguageModel, what: str) -> None:
    """Refuse `what` for a family whose positions vittle cannot build by hand."""
    family = family_of(model)
    if not family.positions_1d:
        raise NotImplementedError(f"{what} is not supported yet for {family.name} models: it builds positions by hand, "
                                  "and their 3-D rotary positions (M-RoPE) come from the model's own position code")


def require_prefix_cache(model: VisionLanguageModel) -> None:
    """Refuse the prefix cache for a family it cannot serve (`Family.prefix_cache`)."""
    require_1d_positions(model, "the prefix cache")
    family = family_of(model)
    if family.prefix_cache:
        raise NotImplementedError(f"the prefix cache is not supported for {family.name} models: {family.prefix_cache}")


# Loading


def model_class(config: Any) -> type[transformers.PreTrainedModel]:
    return getattr(transformers, family_of(config).model_class)


def load_processor(folder: str | Path, config: Any) -> Any:
    """The processor saved with a checkpoint of `config`'s family. A processor whose video half
    cannot be built here (no torchvision), or one saved without it, is loaded for images and
    text (the family's `image_only_processor`, e.g. `Qwen2_5_VLImageProcessor`)."""
    family = family_of(config)
    image_only = family.image_only_processor
    try:
        processor = transformers.AutoProcessor.from_pretrained(folder)
    except (AttributeError, ImportError, ValueError) as err:
        if image_only is None:
            raise
        logger.info("%s: loading the processor without video support (%s)", folder, err)
    else:
        if image_only is None or isinstance(processor, getattr(transformers, family.processor_class)):
            return processor
    return image_only.from_pretrained(folder)
