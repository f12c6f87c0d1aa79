"""Compose a LLaVA from a CLIP vision tower and a causal LM: the starting point of stage 1.

LLaVA-1.5 joins CLIP ViT-L/14-336 and Vicuna-7B with a freshly initialized 2-layer MLP
projector, takes the penultimate vision layer without the CLS token, and adds an `<image>`
token to the tokenizer. The result is an ordinary `LlavaForConditionalGeneration` and
`LlavaProcessor`.
"""

from __future__ import annotations

import logging

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPImageProcessorPil,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerBase,
)

from vittle.template import token_id

logger = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"


def _tokenizer(language_model: str) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(language_model)
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    if tokenizer.pad_token is None:  # vicuna-v1 LLaVA pads with <unk>
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def compose_llava(vision_tower: str, language_model: str, dtype: torch.dtype = torch.float32) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A LLaVA-1.5-style model from a CLIP checkpoint and a causal-LM checkpoint (folders or
    hub ids), with a new projector, plus its processor."""
    vision_config = AutoConfig.from_pretrained(vision_tower)
    vision_config = getattr(vision_config, "vision_config", vision_config)  # a full CLIP config holds one
    tokenizer = _tokenizer(language_model)
    language = AutoModelForCausalLM.from_pretrained(language_model, dtype=dtype)
    if len(tokenizer) > language.config.vocab_size:
        language.resize_token_embeddings(len(tokenizer))
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=language.config,
        image_token_index=token_id(tokenizer, IMAGE_TOKEN),  # read back as config.image_token_id
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        tie_word_embeddings=language.config.tie_word_embeddings,
    )
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    # Swap in the pretrained modules whole (buffers included); only the projector is new.
    model.model.vision_tower = type(model.model.vision_tower).from_pretrained(vision_tower, config=vision_config, dtype=dtype)
    model.model.language_model = language.get_decoder()
    model.lm_head = language.get_output_embeddings()
    projector = model.model.multi_modal_projector.to_empty(device="cpu").to(dtype)
    for layer in (projector.linear_1, projector.linear_2):
        layer.reset_parameters()
    left = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if left:
        raise RuntimeError(f"composition left uninitialized tensors: {left[:5]}")
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil.from_pretrained(vision_tower),
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy="default",
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
    )
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    logger.info("composed LLaVA from %s and %s (%.2fB parameters)", vision_tower, language_model,
                sum(p.numel() for p in model.parameters()) / 1e9)
    return model, processor
