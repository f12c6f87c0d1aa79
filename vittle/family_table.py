"""The supported model families, one `Family` entry each: where a family keeps its decoder,
projector and image tokens, its chat format and image layout (`vittle.families` answers from
these; `FAMILIES` is keyed by `config.model_type`).

Families (docs/models.md):
- LLaVA-1.5, `LlavaForConditionalGeneration`: a fixed number of image tokens per image (the
  image padded to a square), vicuna-v1 prompts, 1-D positions.
- Qwen2.5-VL, `Qwen2_5_VLForConditionalGeneration`: dynamic resolution (the image's size
  sets the number of image tokens; pixels come as flattened patches with `image_grid_thw`),
  ChatML prompts, 3-D rotary positions (M-RoPE) that the model builds from
  `mm_token_type_ids`: vittle never builds positions by hand for it, so decoding goes
  through `generate`, and the paths that would need hand-built positions (the prefix cache,
  candidate scoring, the shared-image decoding loop) are refused or bypassed.
- Qwen3-VL, `Qwen3VLForConditionalGeneration`: as Qwen2.5-VL (M-RoPE from the required
  `mm_token_type_ids`), plus "deepstack" mergers into the first decoder layers' image tokens,
  trained with the main merger (`projector_extras`).
- Gemma 3, `Gemma3ForConditionalGeneration`: a fixed number of soft image tokens between
  begin- and end-of-image tokens (its processor's `image_token` is the begin marker it expands),
  the Gemma chat format, 1-D positions, and `token_type_ids` (1 at image tokens) for attention
  both ways within an image, passed wherever vittle runs a prompt.
- LLaVA-NeXT, `LlavaNextForConditionalGeneration`: anyres tiling (the image's size sets the
  count; patches padded over a batch, `image_sizes`), vicuna-v1 prompts, 1-D positions.
- LLaVA-OneVision, `LlavaOnevisionForConditionalGeneration`: anyres as LLaVA-NeXT (SigLIP, no
  CLS token; single-image inputs: no `batch_num_images`), ChatML with "<image>\n" and no vision
  markers (`ChatMLImage`), 1-D positions, a video token among the visual ids.
- Idefics3, `Idefics3ForConditionalGeneration`: image splitting (tiles and a global image,
  `pixel_attention_mask`; the processor's row/col text around each tile's image tokens), the
  Idefics format ("User:" / "Assistant:", `<end_of_utterance>`), 1-D positions; the prefix cache
  is refused (the image tokens are no one run).
- InternVL, `InternVLForConditionalGeneration`: dynamic tiling (tiles concatenated over a batch,
  `image_seq_length` context tokens per tile between `<img>` and `</img>`), ChatML with the
  image line first (`InternVLChat`, InternVL's system prompt), 1-D positions.

Adding a family: one `Family` entry in `FAMILIES` and one builder in `BUILDERS` of tests/vittle/conftest.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import ProcessorMixin

from vittle.family_inputs import (
    AnyresLayout,
    FixedLayout,
    GridLayout,
    InternVLImageProcessor,
    LlavaOnevisionImageOnlyProcessor,
    Qwen2_5_VLImageProcessor,
    Qwen3VLImageProcessor,
    TiledTextLayout,
    TilesLayout,
    WrappedLayout,
)
from vittle.template import ChatFormat, ChatML, ChatMLImage, Gemma, Idefics, InternVLChat, Vicuna


@dataclass(frozen=True)
class Family:
    """Where one model family keeps what the bottleneck and its tools need."""

    name: str
    model_type: str
    """`config.model_type` of the family's models."""
    model_class: str
    """The transformers class that loads a checkpoint (a name in `transformers`)."""
    processor_class: str
    language_model: str
    """Path of the text decoder module (what `get_decoder()` returns): LoRA goes inside it."""
    projector: str
    """Path of the vision-to-text projector (trained in stage 1, in full under LoRA)."""
    projector_output: str
    """Path of the projector's last linear layer, whose output enters the residual stream."""
    chat: ChatFormat
    projector_extras: tuple[str, ...] = ()
    """Other paths (modules or parameters) of the vision-to-text path, trained with the projector
    (stage 1, and in full under LoRA): Qwen3-VL's deepstack mergers, LLaVA-NeXT's row separator."""
    mrope: bool = False
    """3-D rotary positions built by the model (from `mm_token_type_ids`); vittle uses `generate`."""
    pad_to_square: bool = True
    """LLaVA-1.5 pads images to a square; dynamic-resolution families keep the aspect ratio."""
    image_grid: bool = False
    """Images come as flattened patches with `image_grid_thw` (concatenated over a batch)."""
    video: bool = False
    """The family also has a video placeholder token (`config.video_token_id`)."""
    image_only_processor: type[ProcessorMixin] | None = None
    """The family's processor without its video half (`load_processor`), where that half needs torchvision."""
    layout: FixedLayout = FixedLayout()
    """How one image becomes tensors, a token count and prompt text (`vittle.family_inputs`)."""
    token_types: str | None = None
    """The per-token input (1 at image tokens) the model needs: Qwen-VL's `mm_token_type_ids` (its
    3-D positions), Gemma 3's `token_type_ids` (bidirectional attention among an image's tokens)."""
    prefix_cache: str | None = None
    """Why `Assistant.enable_prefix_cache` is refused for the family (None: it works)."""

    @property
    def positions_1d(self) -> bool:
        """Whether positions are one index per token, so that vittle may build them itself."""
        return not self.mrope


LLAVA = Family(
    name="LLaVA-1.5", model_type="llava", model_class="LlavaForConditionalGeneration", processor_class="LlavaProcessor",
    language_model="model.language_model", projector="model.multi_modal_projector",
    projector_output="model.multi_modal_projector.linear_2", chat=Vicuna,
)
QWEN2_5_VL = Family(
    name="Qwen2.5-VL", model_type="qwen2_5_vl", model_class="Qwen2_5_VLForConditionalGeneration",
    processor_class="Qwen2_5_VLProcessor", language_model="model.language_model", projector="model.visual.merger",
    projector_output="model.visual.merger.mlp.2", chat=ChatML, mrope=True, pad_to_square=False, image_grid=True, video=True,
    image_only_processor=Qwen2_5_VLImageProcessor, layout=GridLayout(), token_types="mm_token_type_ids",
)
QWEN3_VL = Family(
    name="Qwen3-VL", model_type="qwen3_vl", model_class="Qwen3VLForConditionalGeneration",
    processor_class="Qwen3VLProcessor", language_model="model.language_model", projector="model.visual.merger",
    projector_output="model.visual.merger.linear_fc2", projector_extras=("model.visual.deepstack_merger_list",), chat=ChatML,
    mrope=True, pad_to_square=False, image_grid=True, video=True,
    image_only_processor=Qwen3VLImageProcessor, layout=GridLayout(), token_types="mm_token_type_ids",
)
GEMMA3 = Family(
    name="Gemma 3", model_type="gemma3", model_class="Gemma3ForConditionalGeneration", processor_class="Gemma3Processor",
    language_model="model.language_model", projector="model.multi_modal_projector",
    projector_output="model.multi_modal_projector", chat=Gemma, pad_to_square=False, layout=WrappedLayout(),
    token_types="token_type_ids",
)
LLAVA_NEXT = Family(
    name="LLaVA-NeXT", model_type="llava_next", model_class="LlavaNextForConditionalGeneration",
    processor_class="LlavaNextProcessor", language_model="model.language_model", projector="model.multi_modal_projector",
    projector_output="model.multi_modal_projector.linear_2", projector_extras=("model.image_newline",), chat=Vicuna, pad_to_square=False,
    layout=AnyresLayout(),
)
LLAVA_ONEVISION = Family(
    name="LLaVA-OneVision", model_type="llava_onevision", model_class="LlavaOnevisionForConditionalGeneration",
    processor_class="LlavaOnevisionProcessor", language_model="model.language_model", projector="model.multi_modal_projector",
    projector_output="model.multi_modal_projector.linear_2", projector_extras=("model.image_newline",), chat=ChatMLImage,
    pad_to_square=False, video=True,
    image_only_processor=LlavaOnevisionImageOnlyProcessor, layout=AnyresLayout(),
)
IDEFICS3 = Family(
    name="Idefics3", model_type="idefics3", model_class="Idefics3ForConditionalGeneration", processor_class="Idefics3Processor",
    language_model="model.text_model", projector="model.connector", projector_output="model.connector.modality_projection.proj",
    chat=Idefics, pad_to_square=False, layout=TiledTextLayout(),
    prefix_cache="its image tokens are no one run (tile markers and row breaks between the tiles' tokens), and the cache "
                 "rebuilds an image's text from its token count alone",
)
INTERNVL = Family(
    name="InternVL", model_type="internvl", model_class="InternVLForConditionalGeneration", processor_class="InternVLProcessor",
    language_model="model.language_model", projector="model.multi_modal_projector",
    projector_output="model.multi_modal_projector.linear_2", chat=InternVLChat, pad_to_square=False,
    image_only_processor=InternVLImageProcessor, layout=TilesLayout(),
)
FAMILIES: dict[str, Family] = {family.model_type: family for family in
                               (LLAVA, QWEN2_5_VL, QWEN3_VL, GEMMA3, LLAVA_NEXT, LLAVA_ONEVISION, IDEFICS3, INTERNVL)}
TOKEN_TYPE_KEYS = tuple(sorted({f.token_types for f in FAMILIES.values() if f.token_types}))
"""Every family's per-token input name: the collator pads these like the ids."""
