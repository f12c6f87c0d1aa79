"""Vittle's training and inference overhead at LLaVA-1.5-7B shape, on one GPU, in bf16.

A Llama-7B-shaped language model (4096 x 32 layers, FFN 11008, 32 heads; random weights, built
on the device) behind a small CLIP tower at 336 px / patch 14, so each sample carries 576
image tokens like LLaVA-1.5. One set of weights is timed with the bottleneck attached and
detached, interleaved, so both sides share every kernel, allocator state and clock:

- train step: forward, CE (+ KL with the bottleneck), backward, AdamW step;
- answer: greedy generation of 32 new tokens for one query.

    python benchmarks/overhead_7b.py --out benchmarks/results/overhead_7b.json
    python benchmarks/overhead_7b.py --hidden 256 --layers 2 --device cpu --dtype float32   # smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from overhead import (
    time_call as timed,  # benchmarks/ is on sys.path when run as a script
)
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
)

from vittle.config import BottleneckConfig
from vittle.model import attach_bottleneck, detach_bottleneck, get_bottleneck


def build(hidden: int, layers: int, ffn: int, heads: int, device: str, dtype: torch.dtype) -> LlavaForConditionalGeneration:
    vision = CLIPVisionConfig(image_size=336, patch_size=14, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=2, projection_dim=64)
    text = LlamaConfig(vocab_size=32064, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=4096)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=32000, vision_feature_layer=-2,
                         vision_feature_select_strategy="default")
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--ffn", type=int, default=11008)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--text-tokens", type=int, default=96, help="text tokens after the 576 image tokens")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--out", default="benchmarks/results/overhead_7b.json")
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    tic = time.perf_counter()
    model = build(args.hidden, args.layers, args.ffn, args.heads, args.device, dtype)
    print(f"built {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters in {time.perf_counter() - tic:.0f} s", file=sys.stderr)
    model.model.vision_tower.requires_grad_(False)
    generator = torch.Generator(device="cpu").manual_seed(0)
    image_tokens = 576
    ids = torch.randint(3, 31000, (args.batch_size, 1 + image_tokens + args.text_tokens), generator=generator)
    ids[:, 0] = 1
    ids[:, 1 : 1 + image_tokens] = model.config.image_token_id
    batch = {
        "input_ids": ids.to(args.device),
        "attention_mask": torch.ones_like(ids).to(args.device),
        "pixel_values": torch.randn(args.batch_size, 3, 336, 336, generator=generator).to(args.device, dtype),
    }
    labels = batch["input_ids"].clone()
    labels[:, : 1 + image_tokens + args.text_tokens // 2] = -100  # answers: the second half of the text
    batch["labels"] = labels
    lm_params = [p for p in model.parameters() if p.requires_grad]
    lm_optimizer = torch.optim.AdamW(lm_params, lr=1e-6, foreach=True)
    config = BottleneckConfig()
    attach_bottleneck(model, config)
    bottleneck = get_bottleneck(model)
    bottleneck.to(device=args.device, dtype=dtype)
    bottleneck_optimizer = torch.optim.AdamW(bottleneck.parameters(), lr=1e-6, foreach=True)
    state = bottleneck.state_dict()
    detach_bottleneck(model)

    def set_vittle(on: bool) -> None:
        if on and get_bottleneck(model) is None:
            attach_bottleneck(model, config).train(model.training)
            module = get_bottleneck(model)
            module.load_state_dict(state)
            module.to(device=args.device, dtype=dtype)
            module.train_alpha = 0.5
        elif not on and get_bottleneck(model) is not None:
            state.update({k: v.detach().clone() for k, v in get_bottleneck(model).state_dict().items()})
            detach_bottleneck(model)

    def train_step(vittle: bool) -> float:
        model.train()
        out = model(**batch)
        loss = out.loss
        module = get_bottleneck(model)
        if vittle:
            kl_v, kl_t = module.kl_terms()
            loss = loss + config.kl_weight * (kl_v + kl_t)
        loss.backward()
        lm_optimizer.step()
        lm_optimizer.zero_grad(set_to_none=True)
        if vittle:
            bottleneck_optimizer.step()
            bottleneck_optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    query = {k: v[:1, :-args.text_tokens // 2] for k, v in batch.items() if k != "labels"}
    query["pixel_values"] = batch["pixel_values"][:1]

    @torch.no_grad()
    def answer() -> None:
        model.eval()
        model.generate(**query, max_new_tokens=32, min_new_tokens=32, do_sample=False, pad_token_id=0)

    # bottleneck params must be the optimizer's tensors: re-point after each attach
    def run(vittle: bool, kind: str) -> float:
        set_vittle(vittle)
        if vittle:
            bottleneck_optimizer.param_groups[0]["params"] = list(get_bottleneck(model).parameters())
        return timed((lambda: train_step(vittle)) if kind == "train" else answer, args.device)

    losses = []
    for vittle in (False, True):  # warm-up, and a finite-loss check in both modes
        set_vittle(vittle)
        if vittle:
            bottleneck_optimizer.param_groups[0]["params"] = list(get_bottleneck(model).parameters())
        losses.append(train_step(vittle))
        answer()
    timings: dict[str, list[float]] = {"train_plain": [], "train_vittle": [], "answer_plain": [], "answer_vittle": []}
    for _ in range(args.repeats):
        for vittle in (False, True):
            name = "vittle" if vittle else "plain"
            timings[f"train_{name}"].append(run(vittle, "train"))
            timings[f"answer_{name}"].append(run(vittle, "answer"))
    medians = {k: statistics.median(v) for k, v in timings.items()}
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    report = {
        "benchmark": "overhead_7b", "device": device, "dtype": args.dtype, "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "shape": {"hidden": args.hidden, "layers": args.layers, "ffn": args.ffn, "heads": args.heads,
                  "bottleneck_layer": config.resolve_layer(args.layers)},
        "batch_size": args.batch_size, "sequence_length": int(batch["input_ids"].shape[1]), "repeats": args.repeats,
        "warmup_losses": losses, "median_s": medians,
        "train_overhead": medians["train_vittle"] / medians["train_plain"] - 1,
        "answer_overhead": medians["answer_vittle"] / medians["answer_plain"] - 1,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None,
    }
    print(json.dumps(report, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
