"""Speed of the perturbation suite on CPU.

Measures:
- all 27 paper variants of one 336x336 image and question, through `apply` (the joint
  variants reuse the visual result, as the library does), and the same with every variant
  computed from scratch; translations use the offline freedict gloss backend (warm cache,
  as in any rerun);
- per-variant time;
- `vittle perturb build` throughput (images/s) with 1 and 2 worker processes on a small
  generated dataset (9 visual specs);
- the import time of `vittle.analysis.perturb`.

    python benchmarks/perturb_speed.py [--out benchmarks/results/perturb_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from vittle.analysis.perturb import all_paper_variants, apply, list_perturbations, visual
from vittle.analysis.perturb.dataset import BuildConfig, build_variants
from vittle.analysis.perturb.translate import TranslationSettings, get_translator

ROOT = Path(__file__).resolve().parents[1]

QUESTION = ("<image>\nWhat is the person in the white suit holding, and what is behind them?\n"
            "Answer the question using a single word or phrase.")


def machine() -> dict:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), "")
    return {"description": f"{os.cpu_count()}-core CPU (shared), no GPU", "cpu_model": model,
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def time_import() -> float:
    code = "import time; t = time.perf_counter(); import vittle.analysis.perturb; print(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout) for _ in range(3)]
    return min(runs)


def time_variants(image: Image.Image, translator, repeats: int) -> dict:
    specs = all_paper_variants()
    start = time.perf_counter()
    for spec in specs:  # cold: imports, dictionaries, WordNet
        apply(spec, image=image, text=QUESTION, seed=0, translator=translator)
    cold = time.perf_counter() - start
    totals, scratch, per_variant = [], [], {spec: [] for spec in specs}
    for rep in range(1, repeats + 1):  # a new seed each time: no visual result is reused across reps
        start = time.perf_counter()
        for spec in specs:
            apply(spec, image=image, text=QUESTION, seed=rep, translator=translator)
        totals.append(time.perf_counter() - start)
        scratch_total = 0.0
        for spec in specs:
            visual._memo.clear()
            t0 = time.perf_counter()
            apply(spec, image=image, text=QUESTION, seed=rep + 1000, translator=translator)
            elapsed = time.perf_counter() - t0
            scratch_total += elapsed
            per_variant[spec].append(elapsed)
        scratch.append(scratch_total)
    return {
        "all_27_first_call_s": round(cold, 3),
        "all_27_total_s": round(statistics.median(totals), 3),
        "all_27_from_scratch_s": round(statistics.median(scratch), 3),
        "per_variant_ms": {spec: round(1000 * statistics.median(v), 1) for spec, v in per_variant.items()},
    }


def make_dataset(folder: Path, count: int, size: int = 336) -> Path:
    rng = np.random.default_rng(0)
    sources = [data.astronaut(), data.chelsea(), data.coffee()]
    (folder / "images").mkdir(parents=True)
    samples = []
    for index in range(count):
        pixels = sources[index % 3]
        top, left = rng.integers(0, 60, size=2)
        crop = Image.fromarray(pixels[top:, left:]).resize((size, size))
        crop.save(folder / "images" / f"{index:03d}.jpg", quality=95)
        samples.append({"id": str(index), "image": f"{index:03d}.jpg", "conversations": [
            {"from": "human", "value": QUESTION}, {"from": "gpt", "value": "flag"}]})
    (folder / "data.json").write_text(json.dumps(samples))
    return folder / "data.json"


def time_build(count: int, workers_list: tuple[int, ...]) -> dict:
    specs = [f"{p.name}:3" for p in list_perturbations("visual")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        json_path = make_dataset(Path(tmp) / "src", count)
        for workers in workers_list:
            out = Path(tmp) / f"out{workers}"
            start = time.perf_counter()
            build_variants(BuildConfig(json_path, json_path.parent / "images", out, specs=specs, workers=workers))
            elapsed = time.perf_counter() - start
            results[f"workers_{workers}"] = {"images": count * len(specs), "seconds": round(elapsed, 2),
                                             "images_per_s": round(count * len(specs) / elapsed, 1)}
    return {"dataset": f"{count} JPEG images 336x336, 9 visual specs at severity 3", **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "perturb_speed.json")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=16)
    args = parser.parse_args()

    image = Image.fromarray(data.astronaut()).resize((336, 336))
    with tempfile.TemporaryDirectory() as cache:
        translator = get_translator(TranslationSettings(backend="gloss", cache_dir=cache))
        variants = time_variants(image, translator, args.repeats)
    result = {
        "benchmark": "perturb_speed",
        "machine": machine(),
        "translation_backend": "freedict word gloss (offline), on-disk cache warm after the first call",
        "target": "all 27 variants of one 336x336 image + question under 0.5 s on 2 cores",
        "import_analysis_perturb_s": round(time_import(), 3),
        "variants_336px": variants,
        "build_throughput": time_build(args.images, (1, 2)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "variants_336px"}, indent=1))
    print({k: v for k, v in variants.items() if k != "per_variant_ms"})


if __name__ == "__main__":
    main()
