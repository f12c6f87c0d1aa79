"""Tiny byte-level BPE tokenizers trained here (nothing downloaded): what the tests' family
fixtures and benchmarks/gpu_families.py build their processors from.

    byte_bpe(["<|im_end|>", ...], ["extra text"])   # a `tokenizers.Tokenizer`, 400 tokens
    chatml_tokenizer()                               # Qwen-VL's special tokens, ChatML's end of turn
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from vittle.template import ChatML

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
WORDS = ("what colour color is the shape image picture red green blue yellow circle square triangle yes no "
         "a an this there in of does contain which small large left right answer user assistant system")


def byte_bpe(special: list[str], texts: list[str]) -> Tokenizer:
    """A byte-level BPE of 400 tokens trained on `WORDS` and `texts`, with `special` tokens first."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator([WORDS, *texts, *(WORDS.split())] * 4, trainer=trainer)
    return tokenizer


def chatml_tokenizer() -> PreTrainedTokenizerFast:
    """Qwen-VL's special tokens (image and video pads, vision start and end) in a ChatML tokenizer."""
    return PreTrainedTokenizerFast(tokenizer_object=byte_bpe(QWEN_SPECIAL, [ChatML.system]), eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>",
                                   extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
                                   padding_side="right", model_max_length=2048)
