"""The model families, one fixture each: a tiny random model built from the family's own
config class and a processor built here (a tokenizer trained with `tokenizers`, the family's
image processor at small sizes). Nothing is downloaded. Adding a family to the tests is one
builder in `BUILDERS` (and its `vittle.family_table.FAMILIES` entry)."""

from __future__ import annotations

import pytest
import torch
from tokenizers import processors
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    GotOcr2ImageProcessorPil,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessorPil,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)

from vittle.family_inputs import InternVLImageProcessor, LlavaOnevisionImageOnlyProcessor, Qwen2_5_VLImageProcessor, Qwen3VLImageProcessor
from vittle.template import ChatML, Gemma, Idefics, InternVLChat
from vittle.toy.byte_bpe import byte_bpe, chatml_tokenizer
from vittle.toy.tiny import build_tiny_llava, build_tiny_tokenizer


def build_tiny_qwen2_5_vl(seed: int = 0, hidden_size: int = 64, num_layers: int = 4):
    """Qwen2.5-VL at 4 decoder layers x 64, a 2-block vision tower with 4 px patches merged 2 x 2,
    images resized (aspect kept) to 64..1024 pixels: 1 to 16 image tokens by size."""
    tokenizer = chatml_tokenizer()
    image_processor = Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2,
                                               size={"shortest_edge": 8 * 8, "longest_edge": 32 * 32})
    processor = Qwen2_5_VLImageProcessor(image_processor, tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size,
                     "num_hidden_layers": num_layers, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 2048, "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3],
                                                                          "rope_theta": 10000.0},
                     "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 4,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 16, "out_hidden_size": hidden_size,
                       "fullatt_block_indexes": [1]},
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    return _generation_ids(model, tokenizer), processor


def _generation_ids(model, tokenizer, bos: int | None = None):
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = bos
    return model


def build_tiny_qwen3_vl(seed: int = 0, hidden_size: int = 64, num_layers: int = 4):
    """Qwen3-VL at 4 decoder layers x 64, a 2-block vision tower (4 px patches merged 2 x 2, one
    deepstack merger after block 0), the same image sizes and tokenizer as Qwen2.5-VL's."""
    tokenizer = chatml_tokenizer()
    image_processor = Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2,
                                               size={"shortest_edge": 8 * 8, "longest_edge": 32 * 32})
    processor = Qwen3VLImageProcessor(image_processor, tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen3VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size,
                     "num_hidden_layers": num_layers, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                     "max_position_embeddings": 2048,
                     "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True,
                                         "rope_theta": 10000.0},
                     "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 4,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": hidden_size,
                       "num_position_embeddings": 64, "deepstack_visual_indexes": [0]},
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen3VLForConditionalGeneration(config)
    return _generation_ids(model, tokenizer), processor


GEMMA_SPECIAL = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]


def build_tiny_gemma3(seed: int = 0, hidden_size: int = 64, num_layers: int = 4):
    """Gemma 3 at 4 decoder layers x 64 (sliding and full attention layers), a 1-block SigLIP
    tower on 16 px images (4 px patches pooled to 2 x 2 = 4 soft tokens per image), a tokenizer
    that adds "<bos>" as Gemma's does, `<end_of_turn>` ending answers."""
    tokenizer = byte_bpe(GEMMA_SPECIAL, [Gemma.answer_head])
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<end_of_turn>", pad_token="<pad>",
                                        extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                                              "image_token": "<image_soft_token>"},
                                        padding_side="right", model_max_length=2048)
    image_processor = Gemma3ImageProcessorPil(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = Gemma3Processor(image_processor, tokenizer, image_seq_length=4)
    ids = tokenizer.convert_tokens_to_ids
    config = Gemma3Config(
        text_config={"vocab_size": len(tokenizer), "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size,
                     "num_hidden_layers": num_layers, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                     "query_pre_attn_scalar": 16, "sliding_window": 512, "sliding_window_pattern": 2,
                     "max_position_embeddings": 2048, "bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id},
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 16, "patch_size": 4},
        mm_tokens_per_image=4, boi_token_index=ids("<start_of_image>"), eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Gemma3ForConditionalGeneration(config)
        with torch.no_grad():  # transformers starts it at zero: image features would all be zero
            model.model.multi_modal_projector.mm_input_projection_weight.normal_(0, 0.02)
    return _generation_ids(model, tokenizer, tokenizer.bos_token_id), processor


CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
_LLAMA = {"num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 2048, "model_type": "llama"}


def _llama_text(tokenizer, hidden_size: int, num_layers: int) -> dict:
    return {**_LLAMA, "vocab_size": len(tokenizer), "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": num_layers, "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}


def build_tiny_llava_next(seed: int = 0, hidden_size: int = 64, num_layers: int = 4):
    """LLaVA-NeXT at 4 decoder layers x 64, a 2-block CLIP tower on 16 px tiles (4 px patches, a
    CLS token dropped by the "default" strategy), grid resolutions 16 x 32, 32 x 16 and 32 x 32:
    each image a base tile and 2 or 4 grid tiles, its size setting the count."""
    tokenizer = build_tiny_tokenizer()
    pinpoints = [[16, 32], [32, 16], [32, 32]]
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16},
                                                 image_grid_pinpoints=pinpoints, image_mean=CLIP_MEAN, image_std=CLIP_STD)
    processor = LlavaNextProcessor(image_processor, tokenizer, patch_size=4, vision_feature_select_strategy="default",
                                   num_additional_image_tokens=1)
    config = LlavaNextConfig(
        vision_config={"model_type": "clip_vision_model", "image_size": 16, "patch_size": 4, "hidden_size": 32,
                       "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "projection_dim": 32},
        text_config=_llama_text(tokenizer, hidden_size, num_layers), image_grid_pinpoints=pinpoints,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlavaNextForConditionalGeneration(config)
    return _generation_ids(model, tokenizer, tokenizer.bos_token_id), processor


ONEVISION_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]


def build_tiny_llava_onevision(seed: int = 0, hidden_size: int = 64, num_layers: int = 4):
    """LLaVA-OneVision at 4 decoder layers x 64 (Qwen2), a 2-block SigLIP tower on 16 px tiles
    (4 px patches: 16 features per tile, no CLS token, the "full" strategy), grid resolutions
    16 x 32, 32 x 16 and 32 x 32 as LLaVA-NeXT's; a ChatML tokenizer with "<image>" and "<video>"."""
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=byte_bpe(ONEVISION_SPECIAL, [ChatML.system]), eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
                                        padding_side="right", model_max_length=2048)
    pinpoints = [[16, 32], [32, 16], [32, 32]]
    image_processor = LlavaOnevisionImageProcessorPil(size={"height": 16, "width": 16}, image_grid_pinpoints=pinpoints)
    processor = LlavaOnevisionImageOnlyProcessor(image_processor, tokenizer, num_image_tokens=16, vision_feature_select_strategy="full")
    ids = tokenizer.convert_tokens_to_ids
    config = LlavaOnevisionConfig(
        vision_config={"model_type": "siglip_vision_model", "image_size": 16, "patch_size": 4, "hidden_size": 32,
                       "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
        text_config={"model_type": "qwen2", "vocab_size": len(tokenizer), "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size,
                     "num_hidden_layers": num_layers, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
                     "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id},
        image_grid_pinpoints=pinpoints, image_token_index=ids("<image>"), video_token_index=ids("<video>"),
        vision_feature_select_strategy="full", vision_feature_layer=-1,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlavaOnevisionForConditionalGeneration(config)
    return _generation_ids(model, tokenizer), processor


IDEFICS_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<pad>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                   "<global-img>", *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))]


def build_tiny_idefics3(seed: int = 0, hidden_size: int = 64, num_layers: int = 4):
    """Idefics3 at 4 decoder layers x 64 (Llama), a 1-block vision tower on 16 px tiles (4 px
    patches, pixel shuffle by 2: 4 image tokens per tile), images resized to a longest edge of
    32 px and split into 16 px tiles (1 x 2 to 2 x 2, plus the global image); a tokenizer that
    adds "<|begin_of_text|>", the row/col tokens special, `<end_of_utterance>` ending answers."""
    tokenizer = byte_bpe(IDEFICS_SPECIAL, ["User: Assistant: System:", Idefics.end])
    tokenizer.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B",
                                                             special_tokens=[("<|begin_of_text|>", 0)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|begin_of_text|>", eos_token="<end_of_utterance>",
                                        pad_token="<pad>", padding_side="right", model_max_length=2048)
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 32}, max_image_size={"longest_edge": 16})
    processor = Idefics3Processor(image_processor, tokenizer, image_seq_len=4)
    config = Idefics3Config(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 16, "patch_size": 4},
        text_config=_llama_text(tokenizer, hidden_size, num_layers), scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Idefics3ForConditionalGeneration(config)
    return _generation_ids(model, tokenizer, tokenizer.bos_token_id), processor


INTERNVL_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]


def build_tiny_internvl(seed: int = 0, hidden_size: int = 64, num_layers: int = 4):
    """InternVL at 4 decoder layers x 64 (Qwen2), a 1-block vision tower on 16 px tiles (4 px
    patches, pixel shuffle by 2: 4 context tokens per tile), 1 to 4 tiles by aspect ratio plus a
    thumbnail; a ChatML tokenizer with InternVL's image tokens and system prompt."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=byte_bpe(INTERNVL_SPECIAL, [InternVLChat.system]), eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                              "video_token": "<video>"},
        padding_side="right", model_max_length=2048)
    image_processor = GotOcr2ImageProcessorPil(size={"height": 16, "width": 16}, crop_to_patches=True, min_patches=1, max_patches=4)
    processor = InternVLImageProcessor(image_processor, tokenizer, image_seq_length=4)
    config = InternVLConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": [16, 16], "patch_size": [4, 4]},
        text_config={"model_type": "qwen2", "vocab_size": len(tokenizer), "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size,
                     "num_hidden_layers": num_layers, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
                     "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
                     "tie_word_embeddings": False},
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=4, tie_word_embeddings=False,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = InternVLForConditionalGeneration(config)
    return _generation_ids(model, tokenizer), processor


BUILDERS = {"llava": build_tiny_llava, "qwen2_5_vl": build_tiny_qwen2_5_vl, "qwen3_vl": build_tiny_qwen3_vl, "gemma3": build_tiny_gemma3,
            "llava_next": build_tiny_llava_next, "llava_onevision": build_tiny_llava_onevision,
            "idefics3": build_tiny_idefics3, "internvl": build_tiny_internvl}
"""One builder per family (keyed by config.model_type): (model, processor), same seed same weights."""


@pytest.fixture(params=sorted(BUILDERS))
def family_builder(request):
    """Each family's builder in turn: `family_builder(seed=0)` -> (model, processor)."""
    return BUILDERS[request.param]


@pytest.fixture
def family_pair(family_builder):
    """(model in eval mode, processor) of each family in turn."""
    model, processor = family_builder(seed=0)
    return model.eval(), processor
