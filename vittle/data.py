"""LLaVA conversation data: JSON -> tokenized samples with labels only on answers.

The format is LLaVA's: a JSON list of

    {"id": "...", "image": "relative/path.jpg",            # "image" absent: text only
     "conversations": [{"from": "human", "value": "<image>\\nWhat is ...?"},
                       {"from": "gpt", "value": "..."}, ...]}

or, for language-model pretraining, {"id": "...", "text": "..."}: plain text with every
token supervised and no chat template.

Prompts follow the model family's chat format (`vittle.families`: vicuna-v1 for LLaVA-1.5,
ChatML for Qwen2.5-VL). LLaVA-1.5's images are padded to a square with the image processor's
mean colour (its "pad" aspect ratio), then processed; a dynamic-resolution family's keep their
aspect ratio and size, which sets their number of image tokens. Every problem names the sample
id and the path.

Long file: reading, checking, encoding and batching samples stay together, so each error
message can name the sample and the file the reader has to fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from vittle.families import family_of, token_inputs
from vittle.family_inputs import collate_images, encode_image, feature_token_id, image_text, image_token_count
from vittle.family_table import TOKEN_TYPE_KEYS
from vittle.files import write_text_atomic
from vittle.memo import Memo
from vittle.template import IMAGE_PLACEHOLDER
from vittle.token_grid import TokenGrid

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
ROLES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt"}


class DataError(ValueError):
    """A sample or file that cannot be used, with the sample id and path in the message."""


def read_conversations(json_path: str | Path, image_folder: str | Path | None = None) -> list[dict[str, Any]]:
    """Read and validate a LLaVA conversation JSON; returns its samples, each with
    `turns` [(question, answer), ...] and `image_path` (absolute, or None) added."""
    json_path = Path(json_path)
    folder = Path(image_folder) if image_folder else json_path.parent
    try:
        samples = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(f"data file not found: {json_path}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{json_path} is not valid JSON: {err}") from err
    if not isinstance(samples, list):
        raise DataError(f"{json_path} must hold a JSON list of samples, found {type(samples).__name__}")
    if not samples:
        raise DataError(f"{json_path} holds no samples (an empty list)")
    resolved: dict[str, Path | None] = {}  # many samples share an image: resolve and check each path once
    return [_validate(sample, index, json_path, folder, resolved) for index, sample in enumerate(samples)]


def _image_path(folder: Path, relative: str, resolved: dict[str, Path | None]) -> Path | None:
    """The absolute path of an image, or None if it is not a file (memoized in `resolved`)."""
    if relative not in resolved:
        path = (folder / relative).resolve()
        resolved[relative] = path if path.is_file() else None
    return resolved[relative]


def _validate(sample: Any, index: int, json_path: Path, folder: Path, resolved: dict[str, Path | None]) -> dict[str, Any]:
    if not isinstance(sample, dict):
        raise DataError(f"{json_path}: sample #{index} is a {type(sample).__name__}, not an object")
    sample_id = str(sample.get("id", f"#{index}"))
    where = f"{json_path}: sample {sample_id!r}"
    if "text" in sample and "conversations" not in sample:  # plain text (language-model pretraining)
        if not isinstance(sample["text"], str) or not sample["text"].strip() or sample.get("image"):
            raise DataError(f"{where}: a text sample needs a non-empty 'text' string and no image")
        return {**sample, "id": sample_id, "turns": None, "image_path": None}
    conversations = sample.get("conversations")
    if not isinstance(conversations, list) or len(conversations) < 2:
        raise DataError(f"{where} needs a 'conversations' list of at least one human and one gpt turn")
    if len(conversations) % 2:
        raise DataError(f"{where}: the last turn ({len(conversations) - 1}) has no answer after it; "
                        "turns alternate human, gpt and end with a gpt turn")
    turns: list[tuple[str, str]] = []
    for position in range(0, len(conversations) - 1, 2):
        pair = conversations[position : position + 2]
        roles = [ROLES.get(str(turn.get("from"))) if isinstance(turn, dict) else None for turn in pair]
        values = [turn.get("value") if isinstance(turn, dict) else None for turn in pair]
        question, answer = values if len(values) == 2 else (None, None)
        if roles != ["human", "gpt"] or not isinstance(question, str) or not isinstance(answer, str):
            raise DataError(f"{where}: turns {position} and {position + 1} must be a human then a gpt turn with string values")
        if not answer.strip():
            raise DataError(f"{where}: turn {position + 1} (gpt) is empty; every answer needs text to learn from")
        turns.append((question, answer))
    image_path = None
    if sample.get("image"):
        image_path = _image_path(folder, str(sample["image"]), resolved)
        if image_path is None:
            raise DataError(f"{where}: image not found at {(folder / str(sample['image'])).resolve()}")
        if not any(IMAGE_PLACEHOLDER in q for q, _ in turns):  # LLaVA puts the image first
            turns[0] = (f"{IMAGE_PLACEHOLDER}\n{turns[0][0]}", turns[0][1])
    elif any(IMAGE_PLACEHOLDER in q for q, _ in turns):
        raise DataError(f"{where} has an {IMAGE_PLACEHOLDER} placeholder but no 'image'")
    if sum(q.count(IMAGE_PLACEHOLDER) for q, _ in turns) > 1:
        raise DataError(f"{where} has more than one {IMAGE_PLACEHOLDER} placeholder; one image per sample is supported")
    return {**sample, "id": sample_id, "turns": turns, "image_path": image_path}


def expand_to_square(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Pad to a centred square with `background` (LLaVA-1.5's pad-to-square)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), background)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def as_image(image: Image.Image | str | Path | None) -> Image.Image | None:
    """An image object as it is, a path loaded (`load_image`), None as None."""
    if image is None or isinstance(image, Image.Image):
        return image
    return load_image(image)


def load_image(path: str | Path, sample_id: str | None = None) -> Image.Image:
    """The image at `path` as RGB; a DataError naming the file (and the sample, when given) if
    it is missing or cannot be decoded."""
    where = f"sample {sample_id!r}: " if sample_id is not None else ""
    if not Path(path).is_file():
        raise DataError(f"{where}no such image file: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise DataError(f"{where}cannot read image {path}: {err}") from err


def verify_images(samples: list[dict[str, Any]], record: Path | None = None) -> None:
    """Open and decode every distinct image of `samples` once, before training, so that an
    unreadable file is named with its sample id now, not at the step that draws it. Images
    that decoded are listed in `record` (a JSON file, by path, size and mtime), so the check
    costs nothing the next time for files that have not changed."""
    known: dict[str, list[int]] = {}
    if record is not None and record.is_file():
        try:
            known = json.loads(record.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            known = {}
    first: dict[Path, str] = {}
    for sample in samples:
        if sample["image_path"] is not None:
            first.setdefault(sample["image_path"], sample["id"])
    checked: dict[str, list[int]] = {}
    todo = []
    for path, sample_id in first.items():
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        if known.get(str(path)) == stamp:
            checked[str(path)] = stamp
        else:
            todo.append((path, sample_id, stamp))
    for path, sample_id, stamp in tqdm(todo, desc="checking images", unit="image", disable=len(todo) < 1000):
        load_image(path, sample_id)
        checked[str(path)] = stamp
    if record is not None and todo:
        try:
            write_text_atomic(record, json.dumps(checked))
        except OSError as err:
            logger.warning("could not record the checked images in %s (%s); they will be checked again next time", record, err)


def image_digest(image: Image.Image) -> tuple[Any, ...]:
    """An image's identity by content: mode, size and a hash of its pixels."""
    return (image.mode, image.size, hashlib.blake2b(image.tobytes(), digest_size=16).digest())


class ImageEncoder:
    """Runs the processor's image processor the way the model's family expects (LLaVA-1.5 pads
    to a square first; dynamic-resolution families keep the aspect ratio) and counts image
    tokens (`vittle.families`). With a `memo` (a `vittle.memo.Memo` the caller owns, perhaps
    shared by several encoders), encoded images are kept by content and by the image
    processor's settings (a query's image is answered and probed by several calls and several
    models; hashing its bytes costs a fraction of resizing and normalising it)."""

    def __init__(self, processor: Any, memo: Memo | None = None):
        self.processor = processor
        self.family = family_of(processor)
        mean = getattr(processor.image_processor, "image_mean", None) or [0.5, 0.5, 0.5]
        self.background = cast(tuple[int, int, int], tuple(int(round(255 * m)) for m in mean))
        self.memo = memo
        self.feature_token = self.family.layout.feature_token(processor)
        """The token the model's image features replace (`vittle.family_inputs.feature_token_id`)."""
        self.feature_token_id = feature_token_id(self.family, processor)
        settings = processor.image_processor.to_json_string() if hasattr(processor.image_processor, "to_json_string") else repr(processor.image_processor)
        self._settings = hashlib.blake2b(f"{settings}|{self.background}".encode(), digest_size=16).digest()

    def encode(self, image: Image.Image) -> dict[str, torch.Tensor]:
        """The image's model inputs: {"pixel_values": (3, H, W)}, or for a dynamic-resolution
        family its patches and {"image_grid_thw": (1, 3)}. Do not modify them in place (they may
        be shared)."""
        memo = self.memo
        key = (self._settings, *image_digest(image)) if memo is not None else None  # no memo: no hashing
        if memo is not None and (value := memo.get(key)) is not None:
            return value
        image = image.convert("RGB")
        value = encode_image(self.family, self.processor, expand_to_square(image, self.background) if self.family.pad_to_square else image)
        if memo is not None:
            memo.put(key, value)
        return value

    def grid(self, image: Image.Image) -> TokenGrid | None:
        """Which of the image's tokens raster it and over which part of it, in the image's own
        fractions (`vittle.token_grid`); None where the family's tokens form no raster."""
        width, height = image.size
        side = max(width, height) if self.family.pad_to_square else 0
        seen = (side, side) if side else (width, height)
        grid = self.family.layout.grid(self.processor, self.encode(image), seen)
        return grid.in_image(width, height, side) if grid is not None and side and width != height else grid

    def pixel_values(self, image: Image.Image) -> torch.Tensor:
        """The image's `pixel_values` alone (what `encode` gives a fixed-size family)."""
        return self.encode(image)["pixel_values"]

    def num_tokens(self, encoded: torch.Tensor | dict[str, torch.Tensor]) -> int:
        """How many image tokens an encoded image (or a fixed-size family's pixel values) takes."""
        return image_token_count(self.family, self.processor, {"pixel_values": encoded} if isinstance(encoded, torch.Tensor) else encoded)

    def text(self, encoded: torch.Tensor | dict[str, torch.Tensor]) -> str:
        """What the prompt holds for an encoded image: its image tokens, with whatever the family
        writes around them (as the family's processor would expand its image marker)."""
        return image_text(self.family, self.processor, {"pixel_values": encoded} if isinstance(encoded, torch.Tensor) else encoded)


def instruction_spans(text: str, questions: list[str], answer_spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The character spans of the instructions' own content in a formatted conversation `text`
    (Learning to Instruct, Zhou et al. 2025: the loss also covers the instruction, not the
    template). `questions` are as the sample wrote them (with the image placeholder, before the
    family expands it): each piece of a question around the placeholder, stripped of the
    whitespace at its ends, is found between the previous answer and its own answer. The
    template's roles and separators, the system prompt and whatever the family writes for the
    image stay outside every span."""
    spans: list[tuple[int, int]] = []
    for index, question in enumerate(questions):
        low = answer_spans[index - 1][1] if index else 0
        high = answer_spans[index][0] if index < len(answer_spans) else len(text)
        found: list[tuple[int, int]] = []
        for piece in reversed([p.strip() for p in question.split(IMAGE_PLACEHOLDER)]):
            if not piece:
                continue
            start = text.rfind(piece, low, high)
            if start < 0:
                raise DataError(f"instruction {index} ({piece[:40]!r}) was not found in the formatted conversation; "
                                "the chat format rewrote it")
            found.append((start, start + len(piece)))
            high = start
        spans.extend(reversed(found))
    return spans


def encode_text(tokenizer: Any, text: str, answer_spans: list[tuple[int, int]], max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels: a token is supervised if it starts inside an answer span."""
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
    ids, offsets = encoded["input_ids"][:max_length], encoded["offset_mapping"][:max_length]
    labels = [  # zero-width tokens (BOS) are never supervised
        token if begin < stop and any(start <= begin < end for start, end in answer_spans) else IGNORE_INDEX
        for token, (begin, stop) in zip(ids, offsets)
    ]
    return ids, labels


def encode_query(processor: Any, images: ImageEncoder, image: Image.Image | None, question: str, system: str | None = None,
                 pixel_values: torch.Tensor | dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """One inference query in the family's chat format (vicuna-v1: ending in "ASSISTANT:"),
    image tokens expanded; `system` None is the format's default. `pixel_values`, when given,
    are the image's already encoded inputs (`ImageEncoder.encode`, or a tensor of pixels)."""
    if not question or not question.strip():
        raise ValueError("the question is empty")
    count = question.count(IMAGE_PLACEHOLDER)
    if count > (1 if image is not None else 0):
        raise ValueError(f"the question contains {count} {IMAGE_PLACEHOLDER} placeholders; at most one, and only with an image")
    chat = images.family.chat
    prompt = chat.build_prompt(question, has_image=image is not None, system=chat.system if system is None else system)
    item: dict[str, torch.Tensor] = {}
    if image is not None:
        encoded = images.encode(image) if pixel_values is None else pixel_values
        item.update({"pixel_values": encoded} if isinstance(encoded, torch.Tensor) else encoded)
        prompt = chat.expand_image(prompt, images.text(encoded), 1)
    item["input_ids"] = torch.tensor(processor.tokenizer(prompt)["input_ids"])
    item.update(token_inputs(images.family, item["input_ids"], images.feature_token_id))
    return item


class ConversationDataset(Dataset[dict[str, torch.Tensor]]):
    """Tokenized LLaVA conversations for training."""

    def __init__(self, json_path: str | Path, processor: Any, image_folder: str | Path | None = None, max_length: int = 2048,
                 system: str | None = None, cache_images: bool = False, check_images: bool = True,
                 instruction_loss: bool = False, augment: Callable[[Image.Image, int], Image.Image] | None = None):
        self.samples = read_conversations(json_path, image_folder)
        if check_images:
            verify_images(self.samples, Path(json_path).with_name(Path(json_path).name + ".images-ok.json"))
        self._pixels: dict[Path, dict[str, torch.Tensor]] | None = {} if cache_images else None
        self.processor = processor
        self.images = ImageEncoder(processor)
        self.chat = self.images.family.chat
        self.system = self.chat.system if system is None else system
        """The system prompt; None: the family's chat format's default (vicuna-v1's for LLaVA)."""
        self.max_length = max_length
        self.instruction_loss = instruction_loss
        """Also supervise the instructions' content tokens (`instruction_spans`; L2T)."""
        self.augment = augment
        """(image, sample index) -> the image to train on this time (training-time shifts); None: as stored."""

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index]
        if sample["turns"] is None:  # plain text: every token but BOS is supervised, no template
            ids = self.processor.tokenizer(sample["text"] + self.processor.tokenizer.eos_token)["input_ids"][: self.max_length]
            return {"input_ids": torch.tensor(ids), "labels": torch.tensor([IGNORE_INDEX, *ids[1:]])}
        encoded = None
        turns = sample["turns"]
        if sample["image_path"] is not None:
            encoded = self._encoded(sample, index)
            slot = self.images.text(encoded)
            turns = [(self.chat.expand_image(q, slot, 1), a) for q, a in turns]
        text, spans = self.chat.format_conversation(turns, eos=self.processor.tokenizer.eos_token, system=self.system)
        if self.instruction_loss:
            spans = sorted(spans + instruction_spans(text, [q for q, _ in sample["turns"]], spans))
        ids, labels = encode_text(self.processor.tokenizer, text, spans, self.max_length)
        if encoded is not None and ids.count(self.images.feature_token_id) != text.count(self.images.feature_token):
            raise DataError(f"sample {sample['id']!r}: max_length={self.max_length} cuts into its image tokens")
        if all(label == IGNORE_INDEX for label in labels):
            raise DataError(f"sample {sample['id']!r}: no answer token fits in max_length={self.max_length}")
        item = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
        item.update(token_inputs(self.images.family, item["input_ids"], self.images.feature_token_id))
        if encoded is not None:
            item.update(encoded)
        return item

    def _encoded(self, sample: dict[str, Any], index: int) -> dict[str, torch.Tensor]:
        path = sample["image_path"]
        if self.augment is not None:  # a fresh draw each time the sample is read: never cached
            return self.images.encode(self.augment(load_image(path, sample["id"]), index))
        if self._pixels is not None and path in self._pixels:
            return self._pixels[path]
        encoded = self.images.encode(load_image(path, sample["id"]))
        if self._pixels is not None:
            self._pixels[path] = encoded
        return encoded


@dataclass
class ConversationCollator:
    """Pads a batch (labels and a family's per-token inputs too, `mm_token_type_ids` or
    `token_type_ids`, when the items have them) on the right, or on the left for batched
    generation; batches the image tensors of the samples that have an image, in batch order
    (`vittle.family_inputs.collate_images`: fixed-size pixels stacked, patches, tiles and grids
    concatenated, padded where their sizes differ)."""

    pad_token_id: int
    padding_side: str = "right"

    def __call__(self, batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        length = max(len(item["input_ids"]) for item in batch)
        input_ids = torch.full((len(batch), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), length), dtype=torch.long)
        per_token = {key: torch.zeros((len(batch), length), dtype=torch.int) for key in TOKEN_TYPE_KEYS
                     if any(key in item for item in batch)}
        if self.padding_side not in ("right", "left"):
            raise ValueError(f"padding_side={self.padding_side!r}; choose 'right' or 'left'")
        for row, item in enumerate(batch):
            n = len(item["input_ids"])
            span = slice(length - n, length) if self.padding_side == "left" else slice(0, n)
            input_ids[row, span] = item["input_ids"]
            attention_mask[row, span] = 1
            if "labels" in item:
                labels[row, span] = item["labels"]
            for key, values in per_token.items():
                if key in item:
                    values[row, span] = item[key]
        out = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "labels" in batch[0]:
            out["labels"] = labels
        out.update(per_token)
        skip = {"input_ids", "labels", *TOKEN_TYPE_KEYS}
        with_image = [{k: v for k, v in item.items() if k not in skip} for item in batch if "pixel_values" in item]
        if with_image:
            out.update(collate_images(with_image))
        return out
