"""Keys and values of the layers up to the bottleneck's, kept per image (`PrefixCache`).

Turned on by `Assistant.enable_prefix_cache()`; `Assistant.embed` stores and reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import DynamicCache

from vittle.bottleneck import record_states
from vittle.data import image_digest
from vittle.families import image_token_id
from vittle.family_inputs import image_text_for_count
from vittle.memo import Memo
from vittle.model import run_to_layer


class PrefixCache:
    """Keys and values of decoder layers 0..l for each image's prompt prefix, kept by image
    content, so that more questions about an image already seen need only their own tokens.

    The prompt is "{system} USER: <image tokens>\\n{question} ASSISTANT:". Attention is causal,
    so the states of every position up to the last image token do not depend on the question,
    and layers 0..l do not depend on the bottleneck (it acts on layer l's output): an embedding
    (`Assistant.embed`, which stops at layer l) computed from the cached prefix plus the
    question's tokens equals the full computation up to float rounding. The positions before
    the image (system prompt, "USER: ") are the same for every image and stored once. Bounded
    by `max_bytes`, least recently used first out. Assumes the model's weights do not change
    while it is on (`Assistant.clear_prefix_cache()` after an edit)."""

    def __init__(self, max_bytes: int):
        if max_bytes <= 0:
            raise ValueError(f"max_bytes={max_bytes} must be positive")
        self.max_bytes = max_bytes
        self.shared: tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]] | None = None
        self._entries = Memo(max_bytes, weigh=self._size)

    @property
    def bytes(self) -> int:
        return self._entries.total

    @property
    def hits(self) -> int:
        return self._entries.hits

    @property
    def misses(self) -> int:
        return self._entries.misses

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(image: Image.Image) -> tuple[Any, ...]:
        return image_digest(image)

    def get(self, key: tuple[Any, ...]) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        return self._entries.get(key)

    @staticmethod
    def _size(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)

    def put(self, key: tuple[Any, ...], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self._entries.put(key, layers)

    def clear(self) -> None:
        self._entries.clear()
        self.shared = None

    def store(self, input_ids: torch.Tensor, cache: Any, keys: list[tuple[Any, ...]], image_token: int, layer: int) -> None:
        """Keep the batch's per-image prefixes from a full forward's cache (layers 0..`layer`)."""
        is_image = input_ids == image_token
        if not bool(is_image.any(dim=1).all()):
            return
        first = is_image.int().argmax(dim=1)
        end = input_ids.shape[1] - is_image.flip(1).int().argmax(dim=1)  # one past the last image token
        if bool((first != first[0]).any()) or bool((end != end[0]).any()):
            return  # prefixes of different shapes (a question with its own placeholder): nothing to share
        start, stop = int(first[0]), int(end[0])
        if not bool(is_image[:, start:stop].all()):
            return
        layers = [(entry.keys, entry.values) for entry in cache.layers[: layer + 1]]
        if self.shared is None:
            self.shared = (input_ids[0, :start].clone(), [(k[:1, :, :start].clone(), v[:1, :, :start].clone()) for k, v in layers])
        for row, key in enumerate(keys):
            self.put(key, [(k[row : row + 1, :, start:stop].clone(), v[row : row + 1, :, start:stop].clone()) for k, v in layers])

    def embed(self, assistant: Any, entries: list[list[tuple[torch.Tensor, torch.Tensor]]], questions: Sequence[str]) -> np.ndarray | None:
        """`assistant`'s layer-l rows for queries whose image prefixes are all cached (`entries`,
        in query order); None when a question's tokens do not continue the shared prefix (then
        the full path runs)."""
        if self.shared is None:
            return None
        shared_ids, shared_layers = self.shared
        start, count = shared_ids.shape[0], entries[0][0][0].shape[2]
        if any(entry[0][0].shape[2] != count for entry in entries):
            return None  # images of different token counts (the count follows the image's size): the full path
        image, image_id, chat = image_text_for_count(assistant.family, assistant.processor, count), image_token_id(assistant.model), assistant.family.chat
        suffixes = []
        for question in questions:
            prompt = chat.expand_image(chat.build_prompt(question, has_image=True, system=assistant.system), image, 1)
            ids = torch.tensor(assistant.processor.tokenizer(prompt)["input_ids"])
            if ids.shape[0] <= start + count or not torch.equal(ids[:start], shared_ids.to(ids.device)) \
                    or not bool((ids[start : start + count] == image_id).all()):
                return None
            suffixes.append(ids[start + count :])
        lengths = torch.tensor([s.shape[0] for s in suffixes])
        width = int(lengths.max())
        suffix_ids = torch.full((len(suffixes), width), assistant.pad_token_id, dtype=torch.long)
        suffix_mask = torch.zeros((len(suffixes), width), dtype=torch.long)
        for row, ids in enumerate(suffixes):
            suffix_ids[row, : ids.shape[0]] = ids
            suffix_mask[row, : ids.shape[0]] = 1
        mask = torch.cat([torch.ones((len(suffixes), start + count), dtype=torch.long), suffix_mask], dim=1)
        cache = DynamicCache()
        for index, (shared_k, shared_v) in enumerate(shared_layers):
            keys = torch.cat([torch.cat([shared_k, entry[index][0]], dim=2) for entry in entries])
            values = torch.cat([torch.cat([shared_v, entry[index][1]], dim=2) for entry in entries])
            cache.update(keys, values, index)
        with record_states():  # nothing of this forward kept on the module
            hidden = run_to_layer(assistant.model, assistant.layer, cache=cache, input_ids=suffix_ids.to(assistant.device),
                                  attention_mask=mask.to(assistant.device))
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), (lengths - 1).to(hidden.device)].float().cpu().numpy()
