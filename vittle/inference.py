"""The narrow inference API that the command line, the analysis and the app use.

    assistant = Assistant.load("assets/models/tiny-vittle-f")
    assistant.answer(image, "What colour is the shape?")
    assistant.probe(image, "What colour is the shape?")      # layer-l state, posterior variance
    assistant.probe_batch(images, questions)                # the same for many queries, one forward (vittle.probe)
    assistant.embed(images, questions, batch_size=16)       # (N, d), no layer after l runs
    assistant.model_inputs(images, questions)               # the batch the model sees: model(**inputs)
    assistant.answer_distribution(images, questions, ["red", "blue"])  # probabilities over candidates (vittle.distribution)

Long file: `Assistant` is the one narrow API over a loaded model (answer, batched and shared-image
answers, streaming, log-likelihood, answer distributions, probe, embed); its parts that stand
alone live in `vittle.probe`, `vittle.scoring` and `vittle.prefix_cache`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers import AutoConfig, DynamicCache, TextIteratorStreamer

from vittle.bottleneck import record_states
from vittle.checkpoint import CheckpointError, load_pretrained, quantization_config, resolve_checkpoint
from vittle.data import ConversationCollator, ImageEncoder, as_image, encode_query
from vittle.distribution import AnswerDistribution, unique_answers
from vittle.families import (
    family_of,
    image_token_id,
    load_processor,
    require_1d_positions,
    require_prefix_cache,
    text_config,
    token_inputs,
    visual_token_ids,
)
from vittle.family_inputs import collate_images
from vittle.family_table import TOKEN_TYPE_KEYS
from vittle.memo import Memo
from vittle.model import bottleneck_layer, get_bottleneck, image_latents, run_to_layer
from vittle.prefix_cache import PrefixCache
from vittle.probe import ProbeResult, probe_batch
from vittle.scoring import answer_distributions, answer_end, answer_ids, prompt_pass, score
from vittle.template import system_prompt_of

logger = logging.getLogger(__name__)

ImageInput = Image.Image | str | Path | None


def pick_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


PIXEL_MEMO_SIZE = 32
"""Encoded images an assistant keeps by default (about 19 MB at 224 x 224): a query's image is
answered, scored and probed by several calls."""


class Assistant:
    """A loaded model (baseline or Vittle) with its processor, ready to answer and probe."""

    def __init__(self, model: Any, processor: Any, device: torch.device | None = None, pixel_memo: Memo | None = None):
        """`pixel_memo`: where encoded images are kept (a `Memo` several assistants may share,
        as the app's models do); None: a memo of this assistant's own, of `PIXEL_MEMO_SIZE`."""
        self.model = model.eval()
        self.processor = processor
        self.device = device or next(model.parameters()).device
        self.images = ImageEncoder(processor, pixel_memo if pixel_memo is not None else Memo(PIXEL_MEMO_SIZE))
        self.pad_token_id = processor.tokenizer.pad_token_id
        self.prefix_cache: PrefixCache | None = None
        """Off by default; `enable_prefix_cache()` turns it on (embedding many questions per image)."""
        self.family = family_of(model)
        self.layer = bottleneck_layer(model)
        self.system = system_prompt_of(model.config, self.family.chat.system)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", dtype: str = "auto", device_map: str | dict[str, Any] | None = None,
             quantize: str | None = None, pixel_memo: Memo | None = None) -> Assistant:
        """Load a checkpoint folder (or hub id) saved with model + processor. On CUDA the
        default dtype is bfloat16 (float16 where the GPU lacks bf16), on CPU float32.

        `device_map` ("auto", "balanced", a dict) spreads a big model over the GPUs (accelerate);
        `quantize` "8bit" or "4bit" loads the language model's linear layers with bitsandbytes
        (CUDA; `pip install bitsandbytes`) so that a 7B pair fits one 24 GB GPU. The
        bottleneck itself stays in the compute dtype either way. `pixel_memo`: as in `Assistant`."""
        if quantize not in (None, "8bit", "4bit"):
            raise ValueError(f"quantize={quantize!r}; choose 8bit, 4bit or leave it out")
        target = pick_device(device)
        if dtype == "auto":
            dtype = "float32" if target.type != "cuda" else "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        folder = resolve_checkpoint(path)
        try:
            processor = load_processor(folder, AutoConfig.from_pretrained(folder))
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{folder} has no usable processor (tokenizer + image processor): {err}") from err
        extra: dict[str, Any] = {}
        if quantize is not None:
            compute = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype, torch.float16)
            extra["quantization_config"] = quantization_config(quantize, compute)
            extra["device_map"] = device_map or "auto"
        elif device_map is not None:
            extra["device_map"] = device_map
        if extra.get("device_map") is not None:
            model = load_pretrained(folder, device=None, dtype=dtype, **extra)  # placed by accelerate: no .to()
            return cls(model, processor, next(model.get_input_embeddings().parameters()).device, pixel_memo)
        model = load_pretrained(folder, device=target, dtype=dtype)
        return cls(model, processor, target, pixel_memo)

    @property
    def has_bottleneck(self) -> bool:
        return get_bottleneck(self.model) is not None

    @property
    def context_length(self) -> int | None:
        """The language model's maximum number of positions (None if the config has none)."""
        return getattr(text_config(self.model), "max_position_embeddings", None)

    def prompt_length(self, image: ImageInput, question: str) -> int:
        """How many input tokens the query takes: template, image tokens and question."""
        return int(self.model_inputs([image], [question])["input_ids"].shape[1])

    def model_inputs(self, images: Sequence[ImageInput], questions: Sequence[str], padding_side: str = "right") -> dict[str, torch.Tensor]:
        """The model's inputs for a batch of queries, on its device and dtype: the prompts in the
        family's chat format with their image tokens, padded on `padding_side` ("left" for
        generation), with the images' tensors (`model(**assistant.model_inputs(images, questions))`).
        An image may be None (a text-only query); an image object asked several questions is
        processed once."""
        # the dict holds the image too, so no id is reused by a new object while the batch is built
        pixels: dict[int, tuple[Image.Image, dict[str, torch.Tensor]]] = {}
        items = []
        for img, question in zip(images, questions, strict=True):
            image = _as_image(img)
            if image is not None and id(image) not in pixels:
                pixels[id(image)] = (image, self.images.encode(image))
            items.append(encode_query(self.processor, self.images, image, question, self.system,
                                      pixel_values=pixels[id(image)][1] if image is not None else None))
        batch = ConversationCollator(self.pad_token_id, padding_side)(items)
        dtype = next(self.model.parameters()).dtype
        return {k: v.to(self.device, dtype=dtype if v.is_floating_point() else None) for k, v in batch.items()}

    def _greedy(self, max_new_tokens: int) -> dict[str, Any]:
        """Generation settings shared by `answer` and `answer_batch`."""
        return {"max_new_tokens": max_new_tokens, "do_sample": False, "pad_token_id": self.pad_token_id,
                "suppress_tokens": visual_token_ids(self.model)}  # an image token without an image is invalid

    @torch.no_grad()
    def answer(self, image: ImageInput, question: str, max_new_tokens: int = 64, stream: bool = False) -> str | Iterator[str]:
        """Greedy answer to one question. With stream=True, a generator of text pieces."""
        inputs = self.model_inputs([image], [question])
        settings = self._greedy(max_new_tokens)
        if not stream:
            output = self.model.generate(**inputs, **settings)
            return self.processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        return self._stream(inputs, settings)

    @torch.no_grad()
    def loglikelihood(self, image: ImageInput, question: str, continuation: str) -> tuple[float, bool]:
        """Log-probability of `continuation` as the start of the answer to `question` (its
        tokens after the prompt's "ASSISTANT:", without special tokens; write a leading space
        where the answer would have one), and whether greedy decoding would produce exactly
        those tokens."""
        inputs = self.model_inputs([image], [question])
        target = self.processor.tokenizer(continuation, add_special_tokens=False, return_tensors="pt")["input_ids"].to(self.device)
        if target.shape[1] == 0:
            raise ValueError(f"the continuation {continuation!r} has no tokens")
        prompt_length = inputs["input_ids"].shape[1]
        ids = torch.cat([inputs["input_ids"], target], dim=1)
        extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        for key in TOKEN_TYPE_KEYS:  # the continuation's tokens are text
            if key in extra:
                extra[key] = torch.cat([extra[key], torch.zeros_like(target, dtype=extra[key].dtype)], dim=1)
        logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits[0, prompt_length - 1 : -1].float()
        picked = torch.log_softmax(logits, dim=-1).gather(1, target[0][:, None])[:, 0]
        return float(picked.sum()), bool((logits.argmax(-1) == target[0]).all())

    def answer_logprobs(self, images: Sequence[ImageInput], questions: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
        """(N, K) log-probability of each candidate as the whole answer to each query (its end
        token included; candidates stripped, empty ones and repeats dropped, in order). One
        forward over the prompts, one over every candidate of every query."""
        require_1d_positions(self.model, "scoring candidate answers")
        answers = unique_answers(candidates)
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} questions")
        if not answers or not questions:
            return np.zeros((len(questions), len(answers)))
        first, cache, mask, _ = prompt_pass(self, images, questions)
        tokenizer, chat = self.processor.tokenizer, self.family.chat
        return score(self, first, cache, mask, [answer_ids(tokenizer, a, chat.answer_head, answer_end(chat, tokenizer)) for a in answers])

    def answer_distribution(self, images: Sequence[ImageInput], questions: Sequence[str], candidates: Sequence[str] = (),
                            top_k: int = 0, max_new_tokens: int = 8) -> list[AnswerDistribution]:
        """Each query's probabilities over the same candidate answers, renormalised over them
        (`vittle.distribution.AnswerDistribution`). The candidates are `candidates` (e.g. the
        answer vocabulary of a model trained on a closed set, and the answers it gave) plus,
        with top_k > 0, the greedy answers that begin with each query's top_k first tokens
        (for a model without a known vocabulary)."""
        require_1d_positions(self.model, "answer distributions")
        return answer_distributions(self, images, questions, candidates, top_k=top_k, max_new_tokens=max_new_tokens)

    @torch.no_grad()
    def answer_batch(self, images: Sequence[ImageInput], questions: Sequence[str], max_new_tokens: int = 8,
                     batch_size: int = 32, progress: bool = False) -> list[str]:
        """Greedy answers to many questions, batched (left-padded); same answers as `answer`."""
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} questions")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        tokenizer = self.processor.tokenizer
        settings = self._greedy(max_new_tokens)
        # several questions per image: encode each image's prefix once (a loop with hand-built 1-D
        # positions; a family with 3-D positions decodes through generate)
        if _shared_images(images) and self.family.positions_1d:
            return self._answer_shared(images, questions, max_new_tokens, batch_size, progress)
        answers: list[str] = []
        starts = range(0, len(questions), batch_size)
        for start in tqdm(starts, desc="answering", unit="batch", disable=not progress):
            inputs = self.model_inputs(images[start : start + batch_size], questions[start : start + batch_size], "left")
            output = self.model.generate(**inputs, **settings)[:, inputs["input_ids"].shape[1] :]
            answers.extend(text.strip() for text in tokenizer.batch_decode(output, skip_special_tokens=True))
        return answers

    def _answer_shared(self, images: Sequence[ImageInput], questions: Sequence[str], max_new_tokens: int, batch_size: int,
                       progress: bool) -> list[str]:
        """Greedy answers where several questions share an image object: the prompt up to the
        image's last token (system prompt, "USER:", the image tokens) is run once per image and
        its KV cache shared by that image's questions; only the rest of each prompt runs per
        question. The same answers as `generate` (the bottleneck acts per token, so the cached
        prefix holds what it would have computed)."""
        opened = [_as_image(image) for image in images]
        pixels: dict[int, dict[str, torch.Tensor]] = {}
        groups: dict[tuple[int, tuple[int, ...]], list[tuple[int, list[int]]]] = {}
        for index, (image, question) in enumerate(zip(opened, questions, strict=True)):
            if image is None:
                raise ValueError("the shared-prefix path needs an image for every question")
            if id(image) not in pixels:
                pixels[id(image)] = self.images.encode(image)
            ids = encode_query(self.processor, self.images, image, question, self.system, pixel_values=pixels[id(image)])["input_ids"].tolist()
            split = len(ids) - ids[::-1].index(image_token_id(self.model))  # after the last image token
            groups.setdefault((id(image), tuple(ids[:split])), []).append((index, ids[split:]))
        answers: list[str] = [""] * len(questions)
        chunk: list[tuple[tuple[int, tuple[int, ...]], list[tuple[int, list[int]]]]] = []
        bar = tqdm(total=len(questions), desc="answering", unit="question", disable=not progress)
        for key, members in [*groups.items(), (None, [])]:
            size = sum(len(m) for _, m in chunk)
            if chunk and (key is None or size + len(members) > batch_size or len(key[1]) != len(chunk[0][0][1])):
                for index, text in self._greedy_shared(chunk, pixels, max_new_tokens):
                    answers[index] = text
                bar.update(size)
                chunk = []
            if key is not None:
                chunk.append((key, members))
        bar.close()
        return answers

    def _greedy_shared(self, chunk: list[tuple[tuple[int, tuple[int, ...]], list[tuple[int, list[int]]]]], pixels: dict[int, dict[str, torch.Tensor]],
                       max_new_tokens: int) -> list[tuple[int, str]]:
        """One batch of `_answer_shared`: prefixes of equal length, each with its questions."""
        device, dtype = self.device, next(self.model.parameters()).dtype
        prefix = torch.tensor([list(key[1]) for key, _ in chunk], device=device)
        images = collate_images([pixels[key[0]] for key, _ in chunk])
        images = {k: v.to(device, dtype=dtype if v.is_floating_point() else None) for k, v in images.items()}
        out = self.model(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True, **images,
                         **token_inputs(self.family, prefix, image_token_id(self.model)))
        rows = [(row, index, suffix) for row, (_, members) in enumerate(chunk) for index, suffix in members]
        cache = out.cache
        cache.batch_select_indices(torch.tensor([row for row, _, _ in rows], device=device))
        lengths = torch.tensor([len(suffix) for _, _, suffix in rows], device=device)
        width, start = int(lengths.max()), prefix.shape[1]
        suffix = torch.full((len(rows), width), self.pad_token_id, device=device)
        for n, (_, _, ids) in enumerate(rows):
            suffix[n, : len(ids)] = torch.tensor(ids, device=device)
        mask = torch.cat([torch.ones(len(rows), start, dtype=torch.long, device=device),
                          (torch.arange(width, device=device)[None] < lengths[:, None]).long()], dim=1)
        positions = (start + torch.arange(width, device=device)).expand(len(rows), -1)
        logits = self.model(input_ids=suffix, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True).logits
        logits = logits[torch.arange(len(rows), device=device), lengths - 1]
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        tokens: list[list[int]] = [[] for _ in rows]
        done = torch.zeros(len(rows), dtype=torch.bool, device=device)
        for step in range(max_new_tokens):
            logits[:, visual_token_ids(self.model)] = float("-inf")  # as in `_greedy`: no image token without an image
            chosen = logits.float().argmax(-1)
            for n, token in enumerate(chosen.tolist()):
                if not done[n]:
                    tokens[n].append(token)
            done |= torch.tensor([t in eos for t in chosen.tolist()], device=device)
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=torch.long, device=device)], dim=1)
            logits = self.model(input_ids=chosen[:, None], attention_mask=mask, position_ids=(start + lengths + step)[:, None],
                                cache=cache, use_cache=True).logits[:, -1]
        decode = self.processor.tokenizer.decode
        return [(index, decode(ids, skip_special_tokens=True).strip()) for (_, index, _), ids in zip(rows, tokens)]

    def _stream(self, inputs: dict[str, torch.Tensor], settings: dict[str, Any]) -> Iterator[str]:
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with torch.no_grad():
                    self.model.generate(**inputs, **settings, streamer=streamer)
            except BaseException as err:  # re-raised in the caller's thread below
                errors.append(err)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        yield from (piece for piece in streamer if piece)
        thread.join()
        if errors:
            raise errors[0]

    def probe(self, image: ImageInput, question: str) -> ProbeResult:
        """The layer-l state of the last input token and the per-token posterior statistics."""
        return self.probe_batch([image], [question])[0]

    def probe_batch(self, images: Sequence[ImageInput], questions: Sequence[str]) -> list[ProbeResult]:
        """`probe` for several queries in one forward (right-padded: each row's real tokens
        come first, so its states are those of the query alone, up to float rounding)."""
        return probe_batch(self, images, questions)

    def share_vision_cache(self, cache: Any = None) -> Any:
        """Make the vision towers that keep a feature cache of their own (`feature_cache`, e.g.
        the toy models' frozen EfficientNet) use `cache`; None: keep theirs. Returns the cache
        they now use (None without such a tower), to hand to the next assistant: the keys carry
        the tower's weights, so models with the same tower share its features under one bound."""
        for module in self.model.modules():
            if getattr(module, "feature_cache", None) is not None:
                cache = cache if cache is not None else module.feature_cache
                module.feature_cache = cache
        return cache

    def enable_prefix_cache(self, max_bytes: int = 256 * 1024 * 1024) -> PrefixCache:
        """Keep each image's prompt prefix (layers 0..l) so that `embed` of more questions
        about images already embedded runs only the questions' tokens (`PrefixCache`).
        Families with 1-D positions only (not Qwen2.5-VL yet)."""
        require_prefix_cache(self.model)
        self.prefix_cache = PrefixCache(max_bytes)
        return self.prefix_cache

    def clear_prefix_cache(self) -> None:
        if self.prefix_cache is not None:
            self.prefix_cache.clear()

    @torch.no_grad()
    def embed(self, images: Sequence[ImageInput], questions: Sequence[str], batch_size: int = 16, progress: bool = False) -> np.ndarray:
        """Layer-l states of each query's last input token, (N, d) float32, after the
        bottleneck. Runs no decoder layer after l. With `enable_prefix_cache`, queries
        about images already embedded run only their own tokens."""
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} questions")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        rows = []
        starts = range(0, len(questions), batch_size)
        for start in tqdm(starts, desc="embedding", unit="batch", disable=not progress):
            rows.append(self._embed_chunk(images[start : start + batch_size], questions[start : start + batch_size]))
        width = text_config(self.model).hidden_size
        return np.concatenate(rows) if rows else np.zeros((0, width), dtype=np.float32)

    def image_features(self, images: Sequence[ImageInput], batch_size: int = 32) -> np.ndarray:
        """Per image, the mean of its latent tokens as the language model receives them, (N, d)
        float32 (`vittle.model.image_latents`): the question plays no part. The app's domain
        score compares these with the training images' (vittle.analysis.domain)."""
        rows = []
        for start in range(0, len(images), batch_size):
            chunk = [_as_image(image) for image in images[start : start + batch_size]]
            if any(image is None for image in chunk):
                raise ValueError("image_features needs an image for every entry")
            inputs = self.model_inputs(chunk, ["what is in the image?"] * len(chunk))
            with torch.no_grad(), record_states():
                rows.append(image_latents(self.model, **inputs).float().cpu().numpy())
        width = text_config(self.model).hidden_size
        return np.concatenate(rows) if rows else np.zeros((0, width), dtype=np.float32)

    def _embed_chunk(self, images: Sequence[ImageInput], questions: Sequence[str]) -> np.ndarray:
        loaded = [_as_image(image) for image in images]
        prefix, keys = self.prefix_cache, None
        present = [image for image in loaded if image is not None]
        if prefix is not None and len(present) == len(loaded):
            keys = [PrefixCache.key(image) for image in present]
            cached = [prefix.get(key) for key in keys]
            entries = [entry for entry in cached if entry is not None]
            if prefix.shared is not None and len(entries) == len(cached):
                rows = prefix.embed(self, entries, questions)
                if rows is not None:
                    return rows
        inputs = self.model_inputs(loaded, questions)
        cache = None
        if keys is not None:
            cache = DynamicCache()
        with record_states():  # nothing of this forward kept on the module
            hidden = run_to_layer(self.model, self.layer, cache=cache, **inputs)
        if cache is not None and prefix is not None and keys is not None:
            prefix.store(inputs["input_ids"], cache, keys, image_token_id(self.model), self.layer)
        last = inputs["attention_mask"].sum(dim=1) - 1  # right padding: the last real token
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float().cpu().numpy()


def _shared_images(images: Sequence[ImageInput]) -> bool:
    """True when every query has an image and some image object is asked more than once."""
    return all(image is not None for image in images) and len({id(image) for image in images}) < len(images)


def _as_image(image: ImageInput) -> Image.Image | None:
    return as_image(image)
