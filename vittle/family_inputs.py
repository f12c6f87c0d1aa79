"""How each model family turns one image into model inputs and prompt text: the image layouts
that `vittle.families` picks one of per family.

A layout answers, for the family's processor and one image:

    layout.encode(processor, image)      # its tensors: {"pixel_values": ..., and any per-image extras}
    layout.count(processor, encoded)     # how many feature tokens (the model's `image_token_id`) it takes
    layout.text(processor, encoded)      # the text the processor writes in place of its image marker
    layout.feature_token(processor)      # the token the model's image features replace
    layout.count_text(processor, count)  # the text from the count alone (layouts where it suffices)
    layout.grid(processor, encoded, size)  # the run of its tokens that rasters the image (`vittle.token_grid`)

Batching (`collate_images`) follows one rule for every family, so the collator needs no family:
a fixed-size family's pixels (3, H, W) are stacked; every other tensor of an encoded image has a
leading dimension along which a batch is concatenated (one row per image, or its patches or
tiles), after padding its other dimensions with zeros to the batch's largest.

Also here: the processors of families whose video half needs torchvision (not installed), for
images and text only.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import InternVLProcessor, LlavaOnevisionProcessor, Qwen2_5_VLProcessor, Qwen3VLProcessor

from vittle.token_grid import TokenGrid, crop_box, square

IMAGE_KEYS_STACKED = ("pixel_values",)
"""Keys whose (C, H, W) tensors are one image each (a fixed-size family's pixels): stacked."""
LAYOUT_KEYS = ("tile_grid",)
"""Keys a layout keeps with an encoded image for its own count and text, not model inputs:
`collate_images` leaves them out."""


class FixedLayout:
    """LLaVA-1.5: one (3, H, W) image, a fixed count from the vision tower's patch grid, the
    processor's image token repeated that many times."""

    variable_count = False
    """Whether the image's size sets its token count (else every image takes the same)."""

    def encode(self, processor: Any, image: Any) -> dict[str, torch.Tensor]:
        return {"pixel_values": processor.image_processor(images=[image], return_tensors="pt")["pixel_values"][0]}

    def count(self, processor: Any, encoded: dict[str, torch.Tensor]) -> int:
        height, width = encoded["pixel_values"].shape[-2:]
        count = (height // processor.patch_size) * (width // processor.patch_size) + processor.num_additional_image_tokens
        return count - 1 if processor.vision_feature_select_strategy == "default" else count

    def feature_token(self, processor: Any) -> str:
        return processor.image_token

    def text(self, processor: Any, encoded: dict[str, torch.Tensor]) -> str:
        return self.count_text(processor, self.count(processor, encoded))

    def count_text(self, processor: Any, count: int) -> str:
        """The image's text given only its token count (what the prefix cache rebuilds prompts from)."""
        return self.feature_token(processor) * count

    def grid(self, processor: Any, encoded: dict[str, torch.Tensor], size: tuple[int, int]) -> TokenGrid | None:
        """The tokens that raster the image (`size`: width, height of the image the processor
        got), over the part of it the processor keeps: the patch grid, after a CLS token if kept."""
        height, width = encoded["pixel_values"].shape[-2:]
        rows, cols = height // processor.patch_size, width // processor.patch_size
        start = self.count(processor, encoded) - rows * cols
        return TokenGrid(rows, cols, start, crop_box(processor.image_processor, *size)) if start >= 0 else None


class GridLayout(FixedLayout):
    """Qwen-VL (dynamic resolution): flattened patches with `image_grid_thw`, t*h*w / merge^2
    tokens."""

    variable_count = True

    def encode(self, processor: Any, image: Any) -> dict[str, torch.Tensor]:
        out = processor.image_processor(images=[image], return_tensors="pt")
        return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}

    def count(self, processor: Any, encoded: dict[str, torch.Tensor]) -> int:
        return int(encoded["image_grid_thw"].prod()) // processor.image_processor.merge_size ** 2

    def grid(self, processor: Any, encoded: dict[str, torch.Tensor], size: tuple[int, int]) -> TokenGrid | None:
        """The merged patches of the first frame, over the whole image (resized to keep its aspect ratio)."""
        _, height, width = (int(n) for n in encoded["image_grid_thw"].reshape(-1)[:3])
        merge = processor.image_processor.merge_size
        return TokenGrid(height // merge, width // merge)


class AnyresLayout(FixedLayout):
    """LLaVA-NeXT and LLaVA-OneVision (anyres tiling): (1, patches, 3, H, W) pixels, the base image and the tiles of the
    grid resolution that fits it best, with `image_sizes` (1, 2); the count (the processor's rule:
    the base image's features plus the tiles' with the padding cut off and a newline per row)
    depends on the image's size. A batch pads the patches dimension (the model reads
    `image_sizes` to drop the padding)."""

    variable_count = True

    def encode(self, processor: Any, image: Any) -> dict[str, torch.Tensor]:
        out = processor.image_processor(images=[image], return_tensors="pt")
        return {"pixel_values": out["pixel_values"], "image_sizes": out["image_sizes"]}

    def count(self, processor: Any, encoded: dict[str, torch.Tensor]) -> int:
        height, width = encoded["pixel_values"].shape[-2:]
        original_height, original_width = (int(n) for n in encoded["image_sizes"].reshape(-1)[:2])
        count = processor._get_number_of_features(original_height, original_width, height, width)
        return count - 1 if processor.vision_feature_select_strategy == "default" else count

    def grid(self, processor: Any, encoded: dict[str, torch.Tensor], size: tuple[int, int]) -> TokenGrid | None:
        """The base image's tokens, first: the whole image resized to the tower's square."""
        if getattr(processor, "num_image_tokens", None):  # LLaVA-OneVision's processor counts the base image's tokens
            return square(processor.num_image_tokens, part="base image")
        height, width = encoded["pixel_values"].shape[-2:]
        return TokenGrid(height // processor.patch_size, width // processor.patch_size, part="base image")


class WrappedLayout(FixedLayout):
    """Gemma 3: a fixed number of soft tokens per image (`processor.image_seq_length`) between
    begin- and end-of-image tokens, blank lines around them (`processor.full_image_sequence`).
    Its processor calls the begin-of-image marker its `image_token`; the features go at the
    tokenizer's image token."""

    def count(self, processor: Any, encoded: dict[str, torch.Tensor]) -> int:
        return processor.image_seq_length

    def feature_token(self, processor: Any) -> str:
        return processor.tokenizer.image_token

    def count_text(self, processor: Any, count: int) -> str:
        return processor.full_image_sequence

    def grid(self, processor: Any, encoded: dict[str, torch.Tensor], size: tuple[int, int]) -> TokenGrid | None:
        """The pooled soft tokens, a square over the whole image (resized to the tower's square)."""
        return square(self.count(processor, encoded))



class TiledTextLayout(FixedLayout):
    """Idefics3 (image splitting): (1, tiles, 3, H, W) pixels, the tiles of the resized image
    row by row and the whole image last, with `pixel_attention_mask` (1, tiles, H, W); the text
    is the processor's (per tile "<fake_token_around_image><row_i_col_j>" and
    `image_seq_len` image tokens, a newline after each row, then the global image between
    "<fake_token_around_image><global-img>" and "<fake_token_around_image>"), so the image
    tokens are no one run. The tile grid (rows, cols; 0, 0 for an unsplit image) sets the count
    and is kept as `tile_grid`, a layout key the model does not see. A batch pads the tiles
    dimension (the model drops all-zero tiles)."""

    variable_count = True

    def encode(self, processor: Any, image: Any) -> dict[str, torch.Tensor]:
        out = processor.image_processor(images=[[image]], return_tensors="pt", return_row_col_info=True)
        return {"pixel_values": out["pixel_values"], "pixel_attention_mask": out["pixel_attention_mask"],
                "tile_grid": torch.tensor([[out["rows"][0][0], out["cols"][0][0]]])}

    def count(self, processor: Any, encoded: dict[str, torch.Tensor]) -> int:
        rows, cols = (int(n) for n in encoded["tile_grid"].reshape(-1)[:2])
        return (rows * cols + 1) * processor.image_seq_len

    def text(self, processor: Any, encoded: dict[str, torch.Tensor]) -> str:
        rows, cols = (int(n) for n in encoded["tile_grid"].reshape(-1)[:2])
        return processor.replace_image_token({"rows": [[rows]], "cols": [[cols]]}, 0)

    def count_text(self, processor: Any, count: int) -> str:
        raise NotImplementedError("an image's text in the tiled layout depends on its tile grid, not on its token count alone")

    def grid(self, processor: Any, encoded: dict[str, torch.Tensor], size: tuple[int, int]) -> TokenGrid | None:
        """The global image's tokens, last: the whole image resized to one tile."""
        start = self.count(processor, encoded) - processor.image_seq_len
        return square(processor.image_seq_len, start, "global image" if start else "")



class TilesLayout(FixedLayout):
    """InternVL (dynamic tiling): (tiles, 3, H, W) pixels, the tiles of the aspect ratio that fits
    the image best and a thumbnail, concatenated over a batch; `image_seq_length` context tokens
    (the feature token) per tile, between the start- and end-of-image tokens."""

    variable_count = True

    def encode(self, processor: Any, image: Any) -> dict[str, torch.Tensor]:
        return {"pixel_values": processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]}

    def count(self, processor: Any, encoded: dict[str, torch.Tensor]) -> int:
        return encoded["pixel_values"].shape[0] * processor.image_seq_length

    def count_text(self, processor: Any, count: int) -> str:
        return processor.start_image_token + processor.image_token * count + processor.end_image_token

    def grid(self, processor: Any, encoded: dict[str, torch.Tensor], size: tuple[int, int]) -> TokenGrid | None:
        """The thumbnail's tokens, last (or the one tile of a small image): the whole image resized to one tile."""
        start = self.count(processor, encoded) - processor.image_seq_length
        return square(processor.image_seq_length, start, "thumbnail" if start else "")


class Qwen2_5_VLImageProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor without its video processor: transformers' video processors need
    torchvision, which this project does not install. Images and text behave as in the original."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None, **kwargs: Any):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class Qwen3VLImageProcessor(Qwen3VLProcessor):
    """Qwen3-VL's processor without its video processor (as `Qwen2_5_VLImageProcessor`)."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None, **kwargs: Any):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)



class LlavaOnevisionImageOnlyProcessor(LlavaOnevisionProcessor):
    """LLaVA-OneVision's processor without its video processor (as `Qwen2_5_VLImageProcessor`; not
    named `...ImageProcessor`, which transformers' image processor of the family is called). Its
    settings are named in the signature: a processor saves the `__init__` arguments it declares."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, num_image_tokens: int | None = None,
                 vision_feature_select_strategy: str | None = None, chat_template: str | None = None, image_token: str = "<image>",
                 video_token: str = "<video>", vision_aspect_ratio: str = "anyres_max_9", **kwargs: Any):
        super().__init__(image_processor, tokenizer, None, num_image_tokens=num_image_tokens,
                         vision_feature_select_strategy=vision_feature_select_strategy, chat_template=chat_template,
                         image_token=image_token, video_token=video_token, vision_aspect_ratio=vision_aspect_ratio, **kwargs)



class InternVLImageProcessor(InternVLProcessor):
    """InternVL's processor without its video processor (as `LlavaOnevisionImageOnlyProcessor`)."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, image_seq_length: int = 256,
                 chat_template: str | None = None, **kwargs: Any):
        super().__init__(image_processor, tokenizer, None, image_seq_length=image_seq_length, chat_template=chat_template, **kwargs)


# Per image, by the family's layout (re-exported by `vittle.families`)


def encode_image(family: Any, processor: Any, image: Any) -> dict[str, torch.Tensor]:
    """One image through the processor's image processor (`Family.layout`): {"pixel_values":
    (3, H, W)} for a fixed-size family; {"pixel_values": (patches, dim), "image_grid_thw":
    (1, 3)} for a dynamic-resolution one."""
    return family.layout.encode(processor, image)


def image_token_count(family: Any, processor: Any, encoded: dict[str, torch.Tensor]) -> int:
    """How many image (feature) tokens the prompt needs for one encoded image."""
    return family.layout.count(processor, encoded)


def image_text(family: Any, processor: Any, encoded: dict[str, torch.Tensor]) -> str:
    """The text the family's processor writes in place of its image marker for one encoded image
    (the image tokens, with whatever the family puts around them)."""
    return family.layout.text(processor, encoded)


def image_text_for_count(family: Any, processor: Any, count: int) -> str:
    """`image_text` of an image known only by its token count (families whose text it determines)."""
    return family.layout.count_text(processor, count)


def feature_token_id(family: Any, processor: Any) -> int:
    """The id of the token the model's image features replace (its config's `image_token_id`)."""
    return processor.tokenizer.convert_tokens_to_ids(family.layout.feature_token(processor))


def _pad_to(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if tuple(tensor.shape[1:]) == shape:
        return tensor
    out = tensor.new_zeros((tensor.shape[0], *shape))
    out[(slice(None), *(slice(0, n) for n in tensor.shape[1:]))] = tensor
    return out


def collate_images(encoded: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A batch's image tensors from each image's (`FixedLayout.encode` and the others), in order:
    (3, H, W) pixels stacked; any other tensor padded with zeros to the batch's largest in all
    but its first dimension, then concatenated along it; `LAYOUT_KEYS` left out."""
    out: dict[str, torch.Tensor] = {}
    for key in encoded[0]:
        if key in LAYOUT_KEYS:
            continue
        tensors = [item[key] for item in encoded]
        if key in IMAGE_KEYS_STACKED and tensors[0].dim() == 3:
            out[key] = torch.stack(tensors)
            continue
        shape = tuple(max(t.shape[d] for t in tensors) for d in range(1, tensors[0].dim()))
        out[key] = torch.cat([_pad_to(t, shape) for t in tensors])
    return out
