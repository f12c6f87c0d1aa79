"""Per-GPU memory and step time, estimated from parameter counts: the tables of docs/scaling.md.

    python benchmarks/scaling_memory.py [--gpus 8] [--out benchmarks/results/scaling_estimates.json]

Parameter counts come from the models' shapes (the bottleneck's from vittle itself, built on
the meta device, so nothing is allocated). Memory per parameter, mixed-precision AdamW: bf16
weight 2 B, bf16 gradient 2 B, fp32 master weight + two Adam moments 12 B. Activations with
gradient checkpointing: each decoder layer's input kept (batch x seq x d x 2 B), one layer's
intermediates at a time while it is recomputed, and the fp32 logits. Estimates, not
measurements: allocator slack, DeepSpeed's buckets and CUDA context (1-3 GB) come on top.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SHAPES = {  # Vicuna v1.5 (Llama 2) and the CLIP ViT-L/14-336 tower of LLaVA-1.5
    "7B": {"hidden": 4096, "layers": 32, "ffn": 11008, "vocab": 32000},
    "13B": {"hidden": 5120, "layers": 40, "ffn": 13824, "vocab": 32000},
}
VISION_PARAMS = 303.5e6  # CLIP ViT-L/14 vision tower
VISION_HIDDEN = 1024
GIB = 1024 ** 3


def llm_params(shape: dict) -> float:
    d, f, layers, vocab = shape["hidden"], shape["ffn"], shape["layers"], shape["vocab"]
    per_layer = 4 * d * d + 3 * d * f + 2 * d  # attention, SwiGLU MLP, two RMSNorms
    return layers * per_layer + 2 * vocab * d + d  # untied embeddings and LM head, final norm


def projector_params(shape: dict) -> float:
    d = shape["hidden"]
    return VISION_HIDDEN * d + d + d * d + d


def bottleneck_params(shape: dict) -> float:
    import torch

    from vittle.bottleneck import VittleBottleneck
    from vittle.config import BottleneckConfig

    with torch.device("meta"):
        module = VittleBottleneck(BottleneckConfig(), shape["hidden"])
    return float(sum(p.numel() for p in module.parameters()))


def lora_params(shape: dict, rank: int) -> float:
    d, f = shape["hidden"], shape["ffn"]
    per_layer = 4 * rank * (d + d) + 2 * rank * (d + f) + rank * (f + d)  # q k v o, gate up, down
    return shape["layers"] * per_layer


def activations_gib(shape: dict, batch: int, seq: int) -> float:
    d, f, layers, vocab = shape["hidden"], shape["ffn"], shape["layers"], shape["vocab"]
    kept = layers * batch * seq * d * 2  # checkpointed layer inputs, bf16
    one_layer = batch * seq * (10 * d + 4 * f) * 2  # one layer's intermediates while recomputed (sdpa/flash: no seq^2)
    logits = batch * seq * vocab * (2 + 4 + 4)  # bf16 logits, fp32 upcast and its gradient
    bottleneck = batch * seq * d * 4 * 4  # mu, logvar, sample, KL in fp32 at one layer
    return (kept + one_layer + logits + bottleneck) / GIB


NF4_BYTES = 0.53
"""Bytes per 4-bit (NF4) weight: 0.5 B + ~0.03 B of double-quantized block constants."""


def one_gpu_states_gib(llm: float, embeddings: float, frozen: float, full_trained: float, lora: float) -> dict[str, float]:
    """Weights, gradients and optimizer states on one GPU (GiB) for full fine-tuning, LoRA and
    QLoRA 4-bit, from parameter counts: `llm` the language model (its `embeddings`: input
    embeddings and LM head, counted once when tied, stay in bf16 under QLoRA), `frozen` the
    vision tower and whatever else is never trained, `full_trained` what LoRA trains in full
    (projector and bottleneck), `lora` the adapters. Trained: 16 B per parameter (bf16 weight
    and gradient, fp32 master and two Adam moments); frozen: 2 B (bf16) or NF4."""
    full = (2 * (llm + frozen + full_trained) + 14 * (llm + full_trained)) / GIB
    trained = lora + full_trained
    lora_run = (2 * (llm + frozen + trained) + 14 * trained) / GIB
    linear = llm - embeddings
    qlora = (NF4_BYTES * linear + 2 * (embeddings + frozen + trained) + 14 * trained) / GIB
    return {"full": full, "lora": lora_run, "qlora": qlora}


def estimate(size: str, gpus: int, batch: int, seq: int, lora_rank: int) -> dict:
    shape = SHAPES[size]
    llm, proj, bott = llm_params(shape), projector_params(shape), bottleneck_params(shape)
    frozen_vision = VISION_PARAMS
    full_trainable = llm + proj + bott
    everything = full_trainable + frozen_vision
    act = activations_gib(shape, batch, seq)
    rows = {}
    # ZeRO-2: weights replicated, gradients and optimizer states partitioned
    rows["full, ZeRO-2"] = (2 * everything + (2 + 12) * full_trainable / gpus) / GIB
    # ZeRO-3: everything partitioned; live gathered parameters (stage3_max_live_parameters 1e9) in bf16
    rows["full, ZeRO-3"] = ((2 + 2 + 12) * full_trainable / gpus + 2 * frozen_vision / gpus + 2 * 1e9) / GIB
    one = one_gpu_states_gib(llm, 2 * shape["vocab"] * shape["hidden"], frozen_vision, proj + bott, lora_params(shape, lora_rank))
    rows["full, plain DDP"] = one["full"]
    lora = lora_params(shape, lora_rank) + proj + bott
    rows[f"LoRA r={lora_rank}, ZeRO-2"] = (2 * (everything + lora_params(shape, lora_rank)) + 14 * lora / gpus) / GIB
    rows[f"LoRA r={lora_rank}, one GPU"] = one["lora"]
    # QLoRA: NF4 weights for the LLM's linear layers, the rest in bf16
    rows[f"QLoRA 4-bit r={lora_rank}, one GPU"] = one["qlora"]
    return {
        "params": {"llm": llm, "projector": proj, "bottleneck": bott, "vision_frozen": frozen_vision,
                   f"lora_r{lora_rank}": lora_params(shape, lora_rank)},
        "bottleneck_share_of_llm_flops_per_token": (bott / 2) / llm,  # each token passes one of the two MLPs
        "activations_gib": act,
        "states_gib": rows,
        "total_gib": {k: v + act for k, v in rows.items()},
    }


def step_time(size: str, gpus: int, tokens_per_step: float, peak_tflops: float, mfu: float) -> float:
    """Seconds per optimizer step: 8 N FLOPs per token (forward 2, backward 4, recompute 2) for
    the trained LLM, 2 N for the frozen vision tower on 577 tokens per image."""
    shape = SHAPES[size]
    flops = 8 * llm_params(shape) * tokens_per_step + 2 * VISION_PARAMS * 577 * tokens_per_step / 700
    return flops / (gpus * peak_tflops * 1e12 * mfu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16, help="per-GPU batch (the recipes' 16)")
    parser.add_argument("--seq", type=int, default=1024, help="padded sequence length of a batch (576 image tokens + text)")
    parser.add_argument("--lora-rank", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scaling_estimates.json")
    args = parser.parse_args(argv)
    result = {"assumptions": {"gpus": args.gpus, "per_gpu_batch": args.batch, "seq": args.seq, "bytes_per_trained_param": 16,
                              "bytes_per_frozen_param": 2, "gradient_checkpointing": True},
              "models": {size: estimate(size, args.gpus, args.batch, args.seq, args.lora_rank) for size in SHAPES}}
    # LLaVA-665K at batch 128 and ~700 tokens per sample (576 image tokens + text), A100 bf16 peak 312 TFLOP/s
    tokens = 128 * 700
    paper_baseline = 7.363
    implied_mfu = step_time("7B", 8, tokens, 312, 1.0) / paper_baseline
    result["step_time_7b_8xA100"] = {"tokens_per_step": tokens, "ideal_s": step_time("7B", 8, tokens, 312, 1.0),
                                     "paper_baseline_s": paper_baseline, "paper_vittle_s": 9.482, "implied_mfu_of_paper_baseline": implied_mfu}
    overhead = Path(__file__).parent / "results" / "overhead_7b_h200.json"
    if overhead.is_file():
        measured = json.loads(overhead.read_text())["train_overhead"]
        result["step_time_7b_8xA100"]["measured_overhead_7b_h200"] = measured
        result["step_time_7b_8xA100"]["expected_vittle_s"] = paper_baseline * (1 + measured)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for size, model in result["models"].items():
        print(size, {k: round(v, 1) for k, v in model["total_gib"].items()})
    print(json.dumps(result["step_time_7b_8xA100"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
