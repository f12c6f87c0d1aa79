"""What the staged study measures on its stage-0 and stage-1 models: the residual stream's
scale after pretraining, and the pressure a bottleneck would put on the stage-1 model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from vittle.config import BottleneckConfig
from vittle.template import system_prompt_of

MAX_LENGTH = 96


def _load(model_dir: Path):
    from transformers import AutoProcessor  # heavy

    from vittle.checkpoint import load_pretrained  # heavy

    return load_pretrained(model_dir).eval(), AutoProcessor.from_pretrained(model_dir)


def _without_labels(batches: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    return [{k: v for k, v in b.items() if k != "labels"} for b in batches]


def _mean_loss(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    return float(sum(model(**b).loss for b in batches) / len(batches))


@torch.no_grad()
def text_numbers(model_dir: Path, corpus: Path, samples: int = 64) -> dict[str, float]:
    """Stage 0: per-dimension RMS after every decoder layer (`rms_layer<k>`) and the CE
    (`ce_heldout`) on the last `samples` samples of the shuffled corpus (few of them were
    trained on: the stage sees under half the corpus)."""
    from vittle.data import ConversationCollator, ConversationDataset  # heavy
    from vittle.model import decoder_layers  # heavy
    from vittle.scale import residual_rms  # heavy

    model, processor = _load(model_dir)
    dataset = ConversationDataset(corpus, processor, max_length=MAX_LENGTH, check_images=False)
    collate = ConversationCollator(processor.tokenizer.pad_token_id)
    items = [dataset[i] for i in range(max(0, len(dataset) - samples), len(dataset))]
    batches = [collate(items[i : i + 16]) for i in range(0, len(items), 16)]
    out = {f"rms_layer{k}": residual_rms(model, _without_labels(batches), k) for k in range(len(decoder_layers(model)))}
    out["ce_heldout"] = _mean_loss(model, batches)
    return out


@torch.no_grad()
def pressure(model_dir: Path, vqa: Path, captions: Path, samples: int = 128, alpha: float = 0.5, draws: int = 3) -> dict[str, float]:
    """Stage 1: the stage-1 model's loss on VQA answers (the stage-2 data) and on captions,
    clean (`ce_<data>_clean`) and with (1 - a) h + a eps replacing the state after layer l
    (`ce_<data>_alpha<a>`, a = `alpha`, the arms' alpha_max, and 1: the state replaced by
    noise), averaged over `draws` noise draws; the RMS at layer l on the VQA queries."""
    from vittle.data import ConversationCollator, ConversationDataset  # heavy
    from vittle.model import (
        attach_bottleneck,
        bottleneck_layer,
        detach_bottleneck,
        get_bottleneck,
    )  # heavy
    from vittle.scale import residual_rms  # heavy
    model, processor = _load(model_dir)
    collate = ConversationCollator(processor.tokenizer.pad_token_id)
    layer = bottleneck_layer(model)
    out: dict[str, float] = {"layer": float(layer)}
    for name, path in (("vqa", vqa), ("captions", captions)):
        dataset = ConversationDataset(path, processor, max_length=MAX_LENGTH, system=system_prompt_of(model.config), check_images=False)
        count = min(samples, len(dataset))
        step = max(1, len(dataset) // count)
        items = [dataset[i * step] for i in range(count)]  # spread over the file
        batches = [collate(items[i : i + 32]) for i in range(0, count, 32)]
        if name == "vqa":
            out["rms_layer_l"] = residual_rms(model, _without_labels(batches), layer)
        out[f"ce_{name}_clean"] = _mean_loss(model, batches)
        attach_bottleneck(model, dataclasses.replace(BottleneckConfig(), kind="noise", layer=layer))
        bottleneck = get_bottleneck(model)
        bottleneck.train()  # training mode: eps is drawn
        try:
            for a in (alpha, 1.0):
                bottleneck.train_alpha = a
                losses = []
                for draw in range(draws):
                    torch.manual_seed(draw)
                    losses.append(_mean_loss(model, batches))
                out[f"ce_{name}_alpha{a:g}"] = sum(losses) / len(losses)
        finally:
            detach_bottleneck(model)
    return out
