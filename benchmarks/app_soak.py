"""The demo app over a long run: does its memory level off? Resident memory over time while
clients keep asking for settings the server has not seen.

`python app.py` runs in a fresh process with its defaults (as a Space runs it: background
precompute on, empty caches) on 127.0.0.1. `--clients` closed-loop clients call the HTTP API
without a session (`POST /gradio_api/call/<endpoint>` with no session hash: each call is a new
session to Gradio, the worst case for its per-session state). Every call uploads an easy-vqa
test image and asks for the next setting of a shuffled list of every visual corruption x
severity combined with every text perturbation x level (about 2,000 distinct settings, so the
per-setting caches fill and must evict); one call in 20 asks for a UMAP map (`/embeddings`) and
one in 20 for a severity sweep (`/sweep`). The server's resident memory is sampled every 5 s.

Driving starts once the app's start-up work is done (models, reference sets, the background
precompute of every visual setting). Reported: the series (every 30 s), start, peak and end, and the growth rate (least-squares slope,
MB per 10 minutes) over each third of the run. Targets: the peak below 3 GB and less than 5 MB
per 10 minutes of growth in the last third.

    python benchmarks/app_soak.py                       # 2 clients, 35 minutes -> benchmarks/results/app_soak_cpu.json
    python benchmarks/app_soak.py --minutes 1 --out /tmp/soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_latency import QUESTIONS, free_port, wait_for_page  # noqa: E402
from app_load import Memory, User, cpu_seconds, wait_for_precompute  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"peak_mb": 3072, "last_third_mb_per_10_min": 5.0}


def all_settings(seed: int = 0) -> list[tuple[str, int, str, int]]:
    """Every visual corruption x severity with every text perturbation x level (and with none),
    shuffled. Translations are left out: they need a translation backend."""
    from vittle.analysis.perturb import list_perturbations

    visual = [(p.name, s) for p in list_perturbations("visual") for s in (1, 2, 3, 4, 5)]
    texts = [("none", 3)] + [(p.name, lv) for p in list_perturbations("text") if p.has_levels for lv in (1, 2, 3, 4, 5)]
    settings = [(v, s, t, lv) for v, s in visual for t, lv in texts]
    random.Random(seed).shuffle(settings)
    return settings


RSS_KINDS = ("RssAnon", "RssFile", "RssShmem")


def rss_by_kind_mb(pid: int) -> dict[str, float]:
    """Resident memory by kind (/proc/<pid>/status): anonymous (the heaps), file-backed (mapped
    libraries, weights, files) and shared memory; a growth shows which kind holds it."""
    found = dict.fromkeys(RSS_KINDS, 0.0)
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in found:
                found[key] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return found


def slope_mb_per_10_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) in MB per 10 minutes."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_m = sum(m for _, m in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return round(sum((t - mean_t) * (m - mean_m) for t, m in points) / var * 600, 2) if var else None


def slope_interval(points: list[tuple[float, float]]) -> list[float] | None:
    """The least-squares slope's 95% interval (normal approximation, MB per 10 minutes). The
    samples are autocorrelated (a UMAP fit or a sweep lifts several in a row), so the interval is
    if anything too narrow."""
    import math

    n = len(points)
    if n < 3:
        return None
    mean_t = sum(t for t, _ in points) / n
    mean_m = sum(m for _, m in points) / n
    sxx = sum((t - mean_t) ** 2 for t, _ in points)
    if not sxx:
        return None
    slope = sum((t - mean_t) * (m - mean_m) for t, m in points) / sxx
    residual = sum((m - mean_m - slope * (t - mean_t)) ** 2 for t, m in points) / (n - 2)
    half = 1.96 * math.sqrt(residual / sxx)
    return [round((slope - half) * 600, 2), round((slope + half) * 600, 2)]


def call(user: User, index: int, setting: tuple[str, int, str, int], images: list[str]) -> str:
    """One sessionless call; its endpoint. Raises on an error event."""
    visual, severity, text, level = setting
    data = [user.upload(images[index % len(images)]), QUESTIONS[index % len(QUESTIONS)], visual, severity, text, level, "vittle-f"]
    endpoint, data = ("embeddings", [*data, "umap"]) if index % 20 == 7 else ("sweep", [*data, "pca", 0.25]) if index % 20 == 13 \
        else ("run", [*data, "pca"])
    for event, output in user.submit(data, endpoint):
        if event == "error":
            raise RuntimeError(f"{endpoint} {setting}: {output}")
    return endpoint


def main(argv: list[str] | None = None) -> int:
    import easy_vqa

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=35, help="length of the driven run (after the start-up)")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--no-precompute", action="store_true", help="the app's --no-precompute (a quick check)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "app_soak_cpu.json")
    args = parser.parse_args(argv)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cache, uploads = tempfile.TemporaryDirectory(prefix="vittle-soak-"), tempfile.TemporaryDirectory(prefix="vittle-soak-gradio-")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VITTLE_CACHE_DIR": cache.name, "GRADIO_TEMP_DIR": uploads.name}
    settings, images = all_settings(), [easy_vqa.get_test_image_paths()[i] for i in range(50)]
    flags = ["--no-precompute"] if args.no_precompute else []
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), *flags], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counts: dict[str, int] = {}
    errors: list[str] = []
    lock = threading.Lock()
    next_index = iter(range(10**9))
    samples: list[tuple[float, float]] = []
    by_kind: dict[str, list[tuple[float, float]]] = {kind: [] for kind in RSS_KINDS}
    try:
        started = time.perf_counter()
        page_s = wait_for_page(process, url, started)
        status = wait_for_precompute(url)  # the models, the reference sets and the background precompute, as a visitor finds them
        if "(ready)" not in status:
            raise RuntimeError(f"the precompute did not finish: {status}")
        ready_s = time.perf_counter() - started
        memory = Memory(process.pid)
        begin, cpu_before = time.perf_counter(), cpu_seconds(process.pid)
        deadline = begin + args.minutes * 60

        def client() -> None:
            user = User(url)
            while time.perf_counter() < deadline:
                with lock:
                    index = next(next_index)
                try:
                    endpoint = call(user, index, settings[index % len(settings)], images)
                    with lock:
                        counts[endpoint] = counts.get(endpoint, 0) + 1
                except Exception as err:  # counted and reported
                    with lock:
                        errors.append(f"call {index}: {type(err).__name__}: {str(err)[:300]}")
            user.close()

        threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        while time.perf_counter() < deadline:
            samples.append((round(time.perf_counter() - begin, 1), round(memory.rss_mb(), 1)))
            for kind, mb_now in rss_by_kind_mb(process.pid).items():
                by_kind[kind].append((samples[-1][0], mb_now))
            if process.poll() is not None:
                raise RuntimeError(f"the app exited with code {process.returncode} during the run")
            time.sleep(args.every)
        for thread in threads:
            thread.join(300)
        samples.append((round(time.perf_counter() - begin, 1), round(memory.rss_mb(), 1)))
        cpu_used = cpu_seconds(process.pid) - cpu_before
        own = [p for p in Path(uploads.name).glob("vittle-app-*")]
        files = sum(1 for folder in own for p in folder.rglob("*") if p.is_file())
    finally:
        process.terminate()
        process.wait(60)
        cache.cleanup()
    left_after_stop = sorted(str(p.relative_to(uploads.name)) for p in Path(uploads.name).glob("vittle-app-*"))
    uploads.cleanup()
    third = samples[-1][0] / 3
    parts = [[p for p in samples if lo <= p[0] <= hi] for lo, hi in ((0, third), (third, 2 * third), (2 * third, samples[-1][0] + 1))]
    mb = [m for _, m in samples]
    calls = sum(counts.values())
    result = {
        "benchmark": "app_soak",
        "device": f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
        "models": "embedded defaults: tiny-baseline + tiny-vittle-f (tiny-vittle-l loaded)",
        "load": f"{args.clients} closed-loop clients, sessionless HTTP API calls, each a new setting of {len(settings)} "
                "(visual x severity x text x level), 1 in 20 a UMAP map, 1 in 20 a severity sweep",
        "minutes": round(samples[-1][0] / 60, 1),
        "start_up_s": {"page_served": round(page_s, 1), "precompute_done": round(ready_s, 1)},
        "calls": calls, "calls_by_endpoint": counts, "distinct_settings_asked": min(calls, len(settings)),
        "server_cpu_seconds_per_call": round(cpu_used / max(1, calls), 3),
        "errors": errors[:20], "error_count": len(errors),
        "rss_mb": {"at_start": mb[0], "peak": max(mb), "at_end": mb[-1]},
        "growth_mb_per_10_min": {"first_third": slope_mb_per_10_min(parts[0]), "second_third": slope_mb_per_10_min(parts[1]),
                                 "last_third": slope_mb_per_10_min(parts[2])},
        "growth_ci95_mb_per_10_min": {"first_third": slope_interval(parts[0]), "second_third": slope_interval(parts[1]),
                                      "last_third": slope_interval(parts[2])},
        "growth_last_third_by_kind_mb_per_10_min": {
            kind: slope_mb_per_10_min([p for p in points if p[0] >= third * 2]) for kind, points in by_kind.items()},
        "rss_by_kind_mb_at_start_and_end": {kind: [points[0][1], points[-1][1]] for kind, points in by_kind.items() if points},
        "rss_range_mb_last_third": [min(m for _, m in parts[2]), max(m for _, m in parts[2])] if parts[2] else None,
        "app_files_at_end": files, "app_folders_left_after_stop": left_after_stop,
        "targets": TARGETS,
        "series_every_30_s": [p for i, p in enumerate(samples) if i % max(1, round(30 / args.every)) == 0],
        "python": platform.python_version(),
    }
    result["met"] = {"peak": max(mb) < TARGETS["peak_mb"],
                     "last_third": (result["growth_mb_per_10_min"]["last_third"] or 0) < TARGETS["last_third_mb_per_10_min"],
                     "no_errors": not errors}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "series_every_30_s"}, indent=1))
    return 0 if all(result["met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
