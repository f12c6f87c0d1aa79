"""Cost of the Vittle bottleneck: training step and per-sample inference, with vs without.

Both variants are the same model and weights (the bottleneck attached or not), timed
interleaved in one process, median of repeats, so machine noise hits both alike. The FLOP
ratio is computed from the shapes: the bottleneck's multiply-adds per token against the
language model's (decoder layers + LM head), as in PAPER.md ("Cost").

    python benchmarks/overhead.py                      # tiny + small presets on this machine
    python benchmarks/overhead.py --preset 7b --device cuda --dtype bfloat16   # 7B-shaped, random weights
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from vittle.config import BottleneckConfig
from vittle.data import ConversationCollator, ConversationDataset
from vittle.inference import Assistant
from vittle.model import attach_bottleneck, get_bottleneck
from vittle.toy.shapes import make_shapes_dataset
from vittle.toy.tiny import build_tiny_llava

PRESETS = {  # hidden size, decoder layers, ffn size, attention heads
    "tiny": (64, 4, 128, 4),
    "small": (512, 8, 1376, 8),
    "7b": (4096, 32, 11008, 32),
}


def flop_ratio(text_config) -> dict[str, float]:
    """Bottleneck multiply-adds per token over the language model's, from the shapes."""
    d, ffn, layers = text_config.hidden_size, text_config.intermediate_size, text_config.num_hidden_layers
    kv = d * text_config.num_key_value_heads // text_config.num_attention_heads
    decoder = layers * (2 * d * d + 2 * d * kv + 3 * d * ffn)
    head = d * text_config.vocab_size
    bottleneck = d * d + d * 2 * d  # one posterior MLP per token (visual or text)
    return {"bottleneck_macs_per_token": bottleneck, "llm_macs_per_token": decoder + head, "ratio": bottleneck / (decoder + head)}


def build(preset: str, device: str, dtype: torch.dtype):
    d, layers, ffn, heads = PRESETS[preset]
    model, processor = build_tiny_llava(seed=0, hidden_size=d, num_layers=layers)
    if (ffn, heads) != (2 * d, 4):  # rebuild the text config at the preset's shape
        from transformers import LlavaForConditionalGeneration

        config = model.config
        config.text_config.intermediate_size, config.text_config.num_attention_heads = ffn, heads
        config.text_config.num_key_value_heads = heads
        torch.manual_seed(0)
        model = LlavaForConditionalGeneration(config)
    return model.to(device=device, dtype=dtype), processor


def time_call(fn, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(preset: str, device: str, dtype: torch.dtype, repeats: int, batch_size: int, data: Path) -> dict:
    plain, processor = build(preset, device, dtype)
    vittle = attach_bottleneck(copy.deepcopy(plain), BottleneckConfig())
    get_bottleneck(vittle).train_alpha = 0.5  # mid-training: the sampling path runs
    dataset = ConversationDataset(data, processor, max_length=256)
    batch = ConversationCollator(processor.tokenizer.pad_token_id)([dataset[i] for i in range(batch_size)])
    batch = {k: v.to(device, dtype=dtype if v.is_floating_point() else None) for k, v in batch.items()}
    optimizers = {id(m): torch.optim.AdamW(m.parameters(), lr=1e-5) for m in (plain, vittle)}

    def train_step(model) -> None:
        model.train()
        out = model(**batch)
        loss = out.loss
        bottleneck = get_bottleneck(model)
        if bottleneck is not None:
            kl_v, kl_t = bottleneck.kl_terms()
            loss = loss + 0.1 * (kl_v + kl_t)
        loss.backward()
        optimizers[id(model)].step()
        optimizers[id(model)].zero_grad(set_to_none=True)

    assistants = {id(m): Assistant(m, processor) for m in (plain, vittle)}
    image = dataset.samples[0]["image_path"]

    def infer(model) -> None:
        assistants[id(model)].model.eval()
        assistants[id(model)].model.generation_config.min_new_tokens = 16
        assistants[id(model)].answer(image, "What colour is the shape?", max_new_tokens=16)

    timings = {"train_plain": [], "train_vittle": [], "infer_plain": [], "infer_vittle": []}
    for _ in range(2):  # warm-up
        for model in (plain, vittle):
            train_step(model)
            infer(model)
    for _ in range(repeats):
        for name, model in (("plain", plain), ("vittle", vittle)):
            timings[f"train_{name}"].append(time_call(lambda: train_step(model), device))
            timings[f"infer_{name}"].append(time_call(lambda: infer(model), device))
    medians = {k: statistics.median(v) for k, v in timings.items()}
    flops = flop_ratio(plain.config.text_config)
    return {
        "preset": preset,
        "shape": dict(zip(("hidden", "layers", "ffn", "heads"), PRESETS[preset])),
        "batch_size": batch_size,
        "sequence_length": int(batch["input_ids"].shape[1]),
        "repeats": repeats,
        "median_s": medians,
        "train_overhead": medians["train_vittle"] / medians["train_plain"] - 1,
        "inference_overhead": medians["infer_vittle"] / medians["infer_plain"] - 1,
        "flops": flops,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", nargs="+", default=["tiny", "small"], choices=sorted(PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/overhead.json")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    data = make_shapes_dataset(Path("runs/bench-shapes/train.json"), 8, seed=0)
    results = []
    for preset in args.preset:
        result = measure(preset, args.device, getattr(torch, args.dtype), args.repeats, args.batch_size, data)
        results.append(result)
        print(f"{preset}: train +{100 * result['train_overhead']:.1f}%, inference +{100 * result['inference_overhead']:.1f}%, "
              f"FLOP ratio {100 * result['flops']['ratio']:.2f}%", file=sys.stderr)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads, {platform.machine()})"
    report = {"benchmark": "overhead", "device": device, "dtype": args.dtype, "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d"), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
