"""Throughput of the benchmark runner (`vittle eval pope` and friends): questions per second,
batched against one question at a time, in one process on the same questions.

The questions are POPE-style ("Is there a <shape> in the image?" with LLaVA's answer-format
instruction) on easy-vqa test images, three per image; answers go to LLaVA answer files in a
temporary folder, as the commands write them (appended and fsynced per batch). Each batch
size runs clean and under one visual shift (the shift's corruption is part of the cost).
Repeats alternate the batch sizes so machine noise hits both alike; the median is reported.

    python benchmarks/eval_throughput.py                       # tiny-vittle-f on CPU -> benchmarks/results/eval_throughput_cpu.json
    python benchmarks/eval_throughput.py --device cuda --model PATH --out benchmarks/results/eval_throughput_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ("circle", "rectangle", "triangle")


def questions_on_easyvqa(images: int):
    """(questions, image folder): three existence questions per easy-vqa test image."""
    from vittle.analysis.evaluate.llava_files import Question
    from vittle.toy.easyvqa import load_split

    picked, folder = [], None
    for row in load_split("test"):
        name = Path(row["image_path"]).name
        if name not in picked:
            picked.append(name)
            folder = Path(row["image_path"]).parent
        if len(picked) == images:
            break
    questions = [Question(f"{name}-{shape}", name, f"Is there a {shape} in the image?\nAnswer the question using a single word or phrase.",
                          "random") for name in picked for shape in SHAPES]
    return questions, folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "assets" / "models" / "tiny-vittle-f"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=40, help="easy-vqa images (3 questions each)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spec", default="gaussian_noise:3", help="the shifted run's spec")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "eval_throughput_cpu.json")
    args = parser.parse_args(argv)
    import torch

    from vittle.analysis.evaluate.benchmark import answer_questions
    from vittle.analysis.evaluate.llava_files import AnswerFile
    from vittle.inference import Assistant

    assistant = Assistant.load(args.model, device=args.device)
    questions, folder = questions_on_easyvqa(args.images)
    timings: dict[str, list[float]] = {}
    answers: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="vittle-eval-bench-") as scratch:
        answer_questions(assistant, questions[:6], folder, AnswerFile(Path(scratch) / "warm.jsonl", "m"), progress=False)  # warm-up
        for repeat in range(args.repeats):
            for spec in ("clean", args.spec):
                for batch in (1, args.batch_size):
                    key = f"{spec}, batch {batch}"
                    file = AnswerFile(Path(scratch) / f"{repeat}-{spec}-{batch}.jsonl", "m", spec)
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    started = time.perf_counter()
                    answer_questions(assistant, questions, folder, file, spec=spec, batch_size=batch, max_new_tokens=args.max_new_tokens,
                                     progress=False)
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    timings.setdefault(key, []).append(time.perf_counter() - started)
                    answers[key] = [row["text"] for row in file.rows()]
    same = {spec: answers[f"{spec}, batch 1"] == answers[f"{spec}, batch {args.batch_size}"] for spec in ("clean", args.spec)}
    rates = {key: len(questions) / statistics.median(values) for key, values in timings.items()}
    result = {
        "benchmark": "eval_throughput",
        "device": f"{args.device} ({os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()})",
        "model": Path(args.model).name, "questions": len(questions), "max_new_tokens": args.max_new_tokens, "repeats": args.repeats,
        "questions_per_s": {key: round(rate, 2) for key, rate in rates.items()},
        "batched_over_single": {spec: round(rates[f"{spec}, batch {args.batch_size}"] / rates[f"{spec}, batch 1"], 2)
                                for spec in ("clean", args.spec)},
        "same_answers_batched_and_single": same,
        "python": platform.python_version(), "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
