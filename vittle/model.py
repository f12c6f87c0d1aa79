"""Attach a Vittle bottleneck to a Hugging Face vision-language model, save it and load it back.

The bottleneck runs in a forward hook on decoder layer l: the hook's return value replaces
the layer's output, so transformers' own layer loop, KV cache, gradient checkpointing and
generation stay untouched. A pre-hook on the backbone (`families.backbone`) records which tokens are
image tokens (`vittle.families.visual_mask`) for the forward that follows; during cached
generation each new token is a text token. Both hooks keep their per-forward data per thread,
and `run_to_layer` stops only its own thread's forward, so several threads may call one model
at once (each reads its own posterior through `vittle.bottleneck.record_states`).

Each forward of the model returns the bottleneck's record of that forward with its output:
`outputs.vittle` (a `BottleneckState`: posterior mean, log-variance, mask, alpha). Paths that do
not call the model itself (`run_to_layer`, `generate`'s steps) hand it to `record_states()`.

The bottleneck is a submodule named `vittle_bottleneck` and its config is stored as
`config.vittle`, so `model.save_pretrained` writes both into the ordinary checkpoint
(config.json + safetensors). Loading that folder with plain transformers gives the model
without the bottleneck; `vittle.load_pretrained` gives it with.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from vittle.bottleneck import VittleBottleneck
from vittle.config import BottleneckConfig
from vittle.families import VisionLanguageModel, _base, backbone, decoder_layers, text_config, visual_mask

__all__ = ["BOTTLENECK_ATTR", "CONFIG_KEY", "attach_bottleneck", "bottleneck_alpha", "bottleneck_layer", "decoder_layers",
           "detach_bottleneck", "get_bottleneck", "image_latents", "run_to_layer"]

logger = logging.getLogger(__name__)

BOTTLENECK_ATTR = "vittle_bottleneck"
CONFIG_KEY = "vittle"


def get_bottleneck(model: VisionLanguageModel) -> VittleBottleneck | None:
    """The attached bottleneck, or None for a plain (baseline) model."""
    return getattr(model, BOTTLENECK_ATTR, None)


def bottleneck_layer(model: VisionLanguageModel) -> int:
    """The layer the bottleneck sits after; for a plain model the default placement (where a
    bottleneck would go), so baseline and Vittle are probed at the same depth."""
    settings = getattr(model.config, CONFIG_KEY, None)
    config = BottleneckConfig.from_dict(settings) if settings else BottleneckConfig()
    return config.resolve_layer(len(decoder_layers(model)), allow_last=True)


def _visual_mask(model: VisionLanguageModel, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    input_ids = kwargs.get("input_ids", args[0] if args else None)
    return visual_mask(model, input_ids=input_ids, inputs_embeds=kwargs.get("inputs_embeds"))


def attach_bottleneck(model: VisionLanguageModel, config: BottleneckConfig | None = None, *, allow_last_layer: bool = False) -> nn.Module:
    """Add a Vittle bottleneck after decoder layer `config.layer` of a model of a supported family
    (`vittle.families`), in place.

    Returns the model. The bottleneck takes the dtype and device of that layer, and its MLPs
    start from the language model's own initialisation (normal with the config's
    `initializer_range`, zero bias), as they would if they were built inside the model, unless
    `config.init_std` says otherwise.
    Raises ValueError if one is attached already, the layer does not exist, or it is the last
    layer (`allow_last_layer` permits that only to load checkpoints trained that way).
    """
    config = config or BottleneckConfig()
    if get_bottleneck(model) is not None:
        raise ValueError("this model already has a Vittle bottleneck attached")
    layers = decoder_layers(model)
    layer = config.resolve_layer(len(layers), allow_last=allow_last_layer)
    if layer == len(layers) - 1:
        logger.warning("the bottleneck sits after the last decoder layer (%d): its image-token posterior gets no "
                       "gradient from the answer loss", layer)
    config = dataclasses.replace(config, layer=layer)
    # a floating-point weight of the layer (under 8-/4-bit loading its linear weights are integers; its norms are not)
    reference = next((p for p in layers[layer].parameters() if p.is_floating_point()), None)
    reference = reference if reference is not None else next(layers[layer].parameters())
    text = text_config(model)
    init_std = config.init_std if config.init_std is not None else getattr(text, "initializer_range", 0.02)
    bottleneck = VittleBottleneck(config, text.hidden_size, init_std=init_std)
    bottleneck = bottleneck.to(device=reference.device, dtype=reference.dtype)
    bottleneck.train(model.training)  # a new module starts in training mode; follow the model
    model.add_module(BOTTLENECK_ATTR, bottleneck)
    setattr(model.config, CONFIG_KEY, config.to_dict())
    pending = threading.local()  # each thread's backbone forward hands its mask to its own layer-l call

    def record_tokens(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        pending.visual_mask = _visual_mask(model, args, kwargs)

    def apply(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        hidden = output[0] if isinstance(output, tuple) else output
        mask = getattr(pending, "visual_mask", None)
        pending.visual_mask = None  # one backbone forward, one use
        if mask is None or mask.shape != hidden.shape[:2]:
            raise RuntimeError("the bottleneck's layer ran without the backbone's forward; call the model itself")
        new_hidden = bottleneck(hidden, mask.to(hidden.device))
        return (new_hidden, *output[1:]) if isinstance(output, tuple) else new_hidden

    def open_forward(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        bottleneck.open_forward()

    def close_forward(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        state = bottleneck.close_forward()
        if state is not None and output is not None and not isinstance(output, (tuple, torch.Tensor)):
            output.vittle = state  # transformers' output object: the forward's typed record rides with it

    bottleneck._hook_handles = [
        backbone(model).register_forward_pre_hook(record_tokens, with_kwargs=True),
        layers[layer].register_forward_hook(apply, prepend=True),  # before any other hook reads the layer's output
        model.register_forward_pre_hook(open_forward, with_kwargs=True),
        model.register_forward_hook(close_forward, with_kwargs=True, always_call=True),  # also when the forward raises
    ]
    return model


def detach_bottleneck(model: VisionLanguageModel) -> VittleBottleneck:
    """Remove the bottleneck (hooks, submodule and config entry); returns it."""
    bottleneck = get_bottleneck(model)
    if bottleneck is None:
        raise ValueError("this model has no Vittle bottleneck")
    for handle in bottleneck._hook_handles:
        handle.remove()
    delattr(model, BOTTLENECK_ATTR)
    delattr(model.config, CONFIG_KEY)
    return bottleneck


class _StopForward(Exception):
    def __init__(self, hidden: torch.Tensor):
        super().__init__("stopped after the bottleneck layer")
        self.hidden = hidden


_STOP = threading.local()
"""`_STOP.layer`: the decoder layer after which this thread's `run_to_layer` stops."""
_STOP_HOOKS_LOCK = threading.Lock()


def _stop_here(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
    if getattr(_STOP, "layer", None) is module:
        raise _StopForward(output[0] if isinstance(output, tuple) else output)


def _install_stop_hook(layer: nn.Module) -> None:
    """One permanent hook per layer that stops only the thread that asked: adding and removing
    a hook per call would change the layer's hook table while other threads run through it."""
    with _STOP_HOOKS_LOCK:
        if not getattr(layer, "_vittle_stop_hook", False):
            layer.register_forward_hook(_stop_here)  # after the bottleneck's hook, which is prepended
            layer._vittle_stop_hook = True  # type: ignore[assignment]  # a plain flag on the module


def run_to_layer(model: VisionLanguageModel, layer: int | None = None, cache: Any = None, **inputs: Any) -> torch.Tensor:
    """Run the model up to decoder layer `layer` (default: the bottleneck layer) and return
    that layer's output as it flows on (after the bottleneck, if one is attached). No later
    decoder layer, final norm or LM head runs. `cache` (a transformers Cache) is read as the
    past of `inputs` and filled with layers 0..layer's keys and values. Safe to call from
    several threads at once."""
    layers = decoder_layers(model)
    layer = bottleneck_layer(model) if layer is None else layer
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer={layer} is beyond the model's depth ({len(layers)} decoder layers)")
    _install_stop_hook(layers[layer])
    previous, _STOP.layer = getattr(_STOP, "layer", None), layers[layer]
    try:
        if cache is None:
            backbone(model)(**inputs, use_cache=False)
        else:
            backbone(model)(**inputs, use_cache=True, cache=cache)
    except _StopForward as stopped:
        return stopped.hidden
    finally:
        _STOP.layer = previous
    raise RuntimeError(f"decoder layer {layer} did not run")


_LATENTS = threading.local()
"""`_LATENTS.wanted`: this thread's `image_latents` asks the decoder's pre-hook for its inputs."""


def _record_latents(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if getattr(_LATENTS, "wanted", False):
        _LATENTS.embeds = kwargs.get("inputs_embeds")


def image_latents(model: VisionLanguageModel, **inputs: Any) -> torch.Tensor:
    """Per query, the mean of the image's latent tokens as the language model receives them (the
    decoder's input embeddings at the image positions, after the vision tower and the projector),
    (batch, d): what the model has of the image before any question is read. Runs decoder layer 0
    and no later one. Safe to call from several threads at once (one permanent hook per model)."""
    decoder = _base(model).get_decoder()
    with _STOP_HOOKS_LOCK:
        if not getattr(decoder, "_vittle_latents_hook", False):
            decoder.register_forward_pre_hook(_record_latents, with_kwargs=True)
            decoder._vittle_latents_hook = True
    mask = visual_mask(model, input_ids=inputs["input_ids"])
    _LATENTS.wanted, _LATENTS.embeds = True, None
    try:
        run_to_layer(model, 0, **inputs)
        embeds = _LATENTS.embeds
    finally:
        _LATENTS.wanted, _LATENTS.embeds = False, None
    if embeds is None:
        raise RuntimeError("the decoder was called without inputs_embeds; image latents need the family's merged inputs")
    weights = mask.to(embeds.device, embeds.dtype).unsqueeze(-1)
    return (embeds * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


@contextlib.contextmanager
def bottleneck_alpha(model: VisionLanguageModel, alpha: float) -> Iterator[None]:
    """Evaluate with a different inference alpha (0.0 switches the bottleneck off)."""
    bottleneck = get_bottleneck(model)
    if bottleneck is None:
        yield
        return
    previous = bottleneck.inference_alpha
    bottleneck.inference_alpha = alpha
    try:
        yield
    finally:
        bottleneck.inference_alpha = previous
