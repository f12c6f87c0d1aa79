"""The residual stream's scale, measured and changed without changing what the model computes.

In a pre-norm decoder (Llama) every block reads the residual stream through an RMSNorm and
adds its output back; the final norm feeds the LM head. Multiplying everything written into
the stream (the token embeddings, the projector's output, each attention's `o_proj` and each
MLP's `down_proj`) by a factor c multiplies the whole stream by c and leaves every norm's
output, and so the logits, as they were (up to the norms' epsilon).

Vittle's posterior noise has unit variance, so the bottleneck only constrains anything when
the state at its layer has a per-dimension RMS of order 1, as in a pretrained LLM. A small LM
trained from scratch at a high learning rate ends far above that; `model.residual_rms` in a
recipe brings a checkpoint there before fine-tuning (see docs/method.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import nn
from transformers import PreTrainedModel

from vittle.families import projector_output
from vittle.model import bottleneck_alpha, bottleneck_layer, decoder_layers, run_to_layer

logger = logging.getLogger(__name__)


@torch.no_grad()
def residual_rms(model: PreTrainedModel, batches: Iterable[dict[str, torch.Tensor]], layer: int | None = None) -> float:
    """Per-dimension RMS of the state after decoder layer `layer` (default: the bottleneck
    layer) over every real token of `batches` (model inputs with an attention mask), measured
    with the bottleneck switched off."""
    layer = bottleneck_layer(model) if layer is None else layer
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with bottleneck_alpha(model, 0.0):
            for batch in batches:
                hidden = run_to_layer(model, layer, **batch).float()
                mask = batch["attention_mask"].bool().to(hidden.device)
                total += float(hidden[mask].pow(2).sum())
                count += int(mask.sum()) * hidden.shape[-1]
    finally:
        model.train(was_training)
    if not count:
        raise ValueError("no tokens to measure the residual stream on")
    return (total / count) ** 0.5


def _writers(model: PreTrainedModel) -> list[nn.Module]:
    """The modules whose outputs are added into the language model's residual stream."""
    layers = decoder_layers(model)
    writers: list[nn.Module] = [model.get_input_embeddings(), projector_output(model)]
    for index, layer in enumerate(layers):
        try:
            writers += [layer.get_submodule("self_attn.o_proj"), layer.get_submodule("mlp.down_proj")]
        except AttributeError as err:
            raise TypeError(f"decoder layer {index} ({type(layer).__name__}) has no self_attn.o_proj / mlp.down_proj: "
                            "only Llama-style pre-norm decoders can be rescaled") from err
    return writers


@torch.no_grad()
def rescale_residual_stream(model: PreTrainedModel, factor: float) -> None:
    """Multiply the language model's residual stream by `factor`, in place, without changing
    the logits (pre-norm decoders only; refused with tied input and output embeddings, whose
    scaling would scale the logits too)."""
    if not factor > 0 or factor != factor or factor == float("inf"):
        raise ValueError(f"factor={factor} must be a positive finite number")
    output = model.get_output_embeddings()
    if output is not None and output.weight is model.get_input_embeddings().weight:
        raise ValueError("the model ties its input and output embeddings: scaling the embeddings would scale the logits")
    for module in _writers(model):
        module.get_parameter("weight").mul_(factor)
        if getattr(module, "bias", None) is not None:
            module.get_parameter("bias").mul_(factor)


def set_residual_rms(model: PreTrainedModel, batches: Iterable[dict[str, torch.Tensor]], target: float) -> tuple[float, float]:
    """Rescale so that the state at the bottleneck layer has per-dimension RMS `target` on
    `batches`; returns (before, after)."""
    batches = list(batches)
    before = residual_rms(model, batches)
    rescale_residual_stream(model, target / before)
    after = residual_rms(model, batches)
    logger.info("residual stream rescaled by %.4g: RMS at layer %d %.3g -> %.3g", target / before, bottleneck_layer(model), before, after)
    return before, after
