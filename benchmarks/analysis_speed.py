"""Speed of the representation analysis.

Measures, in one run:
- extraction throughput (samples/s): `Assistant.embed`, which stops after the bottleneck
  layer l, against a full forward `model(**batch)` of the same model on the same batches
  (batch building included in both; the frozen vision tower's feature cache is warm for
  both, as in any run after the first spec), interleaved, median of repeats;
- 2-D maps: UMAP fit of n points and transform of 1,000 new points, for n = 2,000 and
  10,000 (after `warm_umap()`, so numba's JIT is not counted), PCA for comparison;
- `vittle analyze` end to end on the given models: cold (empty embedding cache) and warm.
  Both run in this process, so the vision tower's process-wide feature cache may already
  hold some images in the cold run; each run loads its own MiniLM (~3 s on CPU).

    python benchmarks/analysis_speed.py [--model baseline=PATH --model vittle=PATH] [--device cuda]
    python benchmarks/analysis_speed.py --samples 16 --repeats 2 --umap-sizes 300 --umap-dim 64 \
        --analyze-specs contrast:2 --analyze-limit-images 2 --out /tmp/smoke.json        # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ["baseline=assets/models/tiny-baseline", "vittle=assets/models/tiny-vittle-f"]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads of {os.cpu_count()} cores, {platform.machine()})"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_extraction(assistant, samples: list[dict], batch_size: int, repeats: int) -> dict:
    """Early-exit `embed` vs a full forward on the same batches, samples/s (median)."""
    from vittle.analysis.evaluate import Variants

    images, questions = Variants(samples).get("clean")
    model, device = assistant.model, assistant.device

    def early_exit() -> None:
        assistant.embed(images, questions, batch_size=batch_size)

    @torch.no_grad()
    def full_forward() -> None:
        for start in range(0, len(questions), batch_size):
            model(**assistant.model_inputs(images[start : start + batch_size], questions[start : start + batch_size]))

    timings: dict[str, list[float]] = {"embed": [], "full_forward": []}
    for _ in range(2):  # warm-up: vision-feature cache, kernels, allocator
        early_exit()
        full_forward()
    for _ in range(repeats):
        for name, run in (("embed", early_exit), ("full_forward", full_forward)):
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            timings[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    text = model.config.text_config
    return {
        "samples": len(questions), "batch_size": batch_size, "repeats": repeats,
        "layer": assistant.layer, "decoder_layers": text.num_hidden_layers, "hidden_size": text.hidden_size,
        "median_s": medians,
        "samples_per_s": {name: len(questions) / seconds for name, seconds in medians.items()},
        "speedup": medians["full_forward"] / medians["embed"],
    }


def time_maps(sizes: list[int], dim: int, repeats: int, seed: int = 0) -> dict:
    """Projection fit (n points) and transform (1,000 new points) times for UMAP and PCA."""
    from vittle.analysis.projection import Projection, warm_umap

    started = time.perf_counter()
    warm_umap(seed)
    warm_s = time.perf_counter() - started
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((10, dim)) * 3
    results = {}
    for n in sizes:
        points = centres[rng.integers(0, 10, n + 1000)] + rng.standard_normal((n + 1000, dim))
        fit_set, new = points[:n], points[n:]
        entry = {}
        for method in ("pca", "umap"):
            fits, transforms = [], []
            for _ in range(1 if method == "umap" else repeats):  # UMAP at 10,000 points takes seconds per fit
                start = time.perf_counter()
                projection = Projection().fit({"points": fit_set}, method=method, seed=seed)
                fits.append(time.perf_counter() - start)
                start = time.perf_counter()
                projection.transform(None, new)
                transforms.append(time.perf_counter() - start)
            entry[method] = {"fit_s": statistics.median(fits), "transform_1000_s": statistics.median(transforms)}
        results[str(n)] = entry
    return {"dim": dim, "warm_umap_s": warm_s, "data": "mixture of 10 Gaussians", "by_points": results}


def time_analyze(models: list[str], specs: str, limit_images: int, device: str, club_steps: int, batch_size: int) -> dict:
    """`vittle analyze` wall time, cold (new cache) and warm (same cache)."""
    from vittle.analysis.report.cli import main as analyze

    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in ("cold", "warm"):
            argv = [*(arg for model in models for arg in ("--model", model)), "--specs", specs, "--limit-images", str(limit_images),
                    "--out", f"{tmp}/{run}",
                    "--cache-dir", f"{tmp}/cache", "--device", device, "--club-steps", str(club_steps),
                    "--batch-size", str(batch_size), "--no-progress"]
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the report's summary lines
                code = analyze(argv)
            if code != 0:
                raise RuntimeError(f"vittle analyze failed: {' '.join(argv)}")
            seconds[f"{run}_s"] = time.perf_counter() - start
            report = json.loads(Path(f"{tmp}/{run}/report.json").read_text())
        steps = report["timings"]
    return {"specs": specs, "limit_images": limit_images, "n_questions": report["n_questions"],
            "n_specs": len(report["specs"]), "club_steps": club_steps, **seconds, "steps_warm": steps}


def check_models(items: list[str]) -> dict[str, Path]:
    models = {}
    for item in items:
        name, sep, path = item.partition("=")
        folder = Path(path if sep else item)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"model folder not found (no config.json): {folder}. Train the tiny models with "
                                    "`vittle lab --out runs/lab --assets assets/models`, or pass --model NAME=PATH ...")
        models[name if sep else folder.name] = folder
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", dest="models", metavar="[NAME=]PATH",
                        help="a model to time; repeat for several (default: the embedded baseline and Vittle (F))")
    parser.add_argument("--extract-model", default=None, metavar="NAME", help="model of the extraction timing (default: the last)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--samples", type=int, default=256, help="easy-vqa questions for the extraction timing")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--umap-sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--umap-dim", type=int, default=4096, help="feature width of the map benchmark (4096: LLaVA-7B)")
    parser.add_argument("--analyze-specs", default="paper")
    parser.add_argument("--analyze-limit-images", type=int, default=20)
    parser.add_argument("--club-steps", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "analysis_speed.json")
    args = parser.parse_args(argv)
    try:
        models = check_models(args.models or DEFAULT_MODELS)
    except FileNotFoundError as err:
        print(f"analysis_speed: error: {err}", file=sys.stderr)
        return 2
    from vittle.analysis.evaluate import load_samples
    from vittle.inference import Assistant, pick_device

    device = pick_device(args.device)
    name = args.extract_model or list(models)[-1]
    if name not in models:
        print(f"analysis_speed: error: --extract-model {name!r} is not among the models {list(models)}", file=sys.stderr)
        return 2
    assistant = Assistant.load(models[name], device=str(device))
    samples = load_samples("easyvqa")[: args.samples]
    extraction = {"model": name, **time_extraction(assistant, samples, args.batch_size, args.repeats)}
    del assistant
    print(f"extraction: embed {extraction['samples_per_s']['embed']:.1f} samples/s, full forward "
          f"{extraction['samples_per_s']['full_forward']:.1f} samples/s (x{extraction['speedup']:.2f})", file=sys.stderr)
    maps = time_maps(args.umap_sizes, args.umap_dim, args.repeats)
    print(f"maps: {json.dumps(maps['by_points'])}", file=sys.stderr)
    analyze = time_analyze([f"{n}={f}" for n, f in models.items()], args.analyze_specs, args.analyze_limit_images,
                           str(device), args.club_steps, args.batch_size)
    print(f"vittle analyze: cold {analyze['cold_s']:.1f} s, warm {analyze['warm_s']:.1f} s", file=sys.stderr)
    report = {"benchmark": "analysis_speed", "device": device_name(device), "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d"), "models": {n: str(f) for n, f in models.items()},
              "extraction": extraction, "maps": maps, "analyze": analyze}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
