"""Batched answers when questions share images: one prefix per image vs one prompt per question.

`Assistant.answer_batch` runs the prompt up to an image's last token once per image and shares
its KV cache between that image's questions. This measures both paths on the same model, the
same easy-vqa questions and warm vision features, interleaved, median of repeats, and checks
that they give the same answers.

    python benchmarks/answer_sharing.py --model runs/lab/runs/baseline-s0/model [--images 60]
    python benchmarks/answer_sharing.py            # a freshly built 6 x 128 easy-vqa model (random weights)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch


def load(model: str | None):
    from vittle.inference import Assistant

    if model:
        return Assistant.load(model, device="cpu")
    from vittle.toy.tiny import build_efficientnet_llava

    built, processor = build_efficientnet_llava(seed=0, hidden_size=128, num_layers=6)
    return Assistant(built, processor)


def measure(assistant, images: list, questions: list[str], repeats: int, batch_size: int) -> dict:
    copies = [image.copy() for image in images]  # distinct objects: the one-prompt-per-question path
    shared = assistant.answer_batch(images, questions, max_new_tokens=4, batch_size=batch_size)
    plain = assistant.answer_batch(copies, questions, max_new_tokens=4, batch_size=batch_size)  # also warms the features
    times: dict[str, list[float]] = {"shared": [], "plain": []}
    for _ in range(repeats):
        for name, inputs in (("shared", images), ("plain", copies)):
            start = time.perf_counter()
            assistant.answer_batch(inputs, questions, max_new_tokens=4, batch_size=batch_size)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "questions": len(questions), "images": len({id(i) for i in images}),
        "questions_per_second": {name: round(len(questions) / t, 1) for name, t in medians.items()},
        "speedup": round(medians["plain"] / medians["shared"], 2),
        "same_answers": sum(a == b for a, b in zip(shared, plain)), "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint folder (default: a freshly built 6 x 128 easy-vqa model)")
    parser.add_argument("--images", type=int, default=60, help="easy-vqa test images (all their questions)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/answer_sharing.json"))
    args = parser.parse_args(argv)
    from vittle.analysis.evaluate import Variants, load_samples
    from vittle.analysis.evaluate.scoring import GROUNDED_KINDS

    assistant = load(args.model)
    samples = load_samples("easyvqa", args.images)
    grounded = [s for s in samples if s["kind"] in GROUNDED_KINDS]
    results = {"model": args.model or "built 6 x 128 (random weights)", "device": f"CPU ({torch.get_num_threads()} threads)",
               "python": platform.python_version(), "torch": torch.__version__}
    for name, subset in (("all questions", samples), ("colour and shape questions", grounded)):
        images, questions = Variants(subset).get("clean")
        results[name] = measure(assistant, images, questions, args.repeats, args.batch_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
