"""Latency of the demo app, measured over HTTP with gradio_client like any user.

In one run:
- cold start: `python app.py` in a fresh process until the page is served (HTTP 200 on /),
  then a first turn: when its four answers are on the page (they wait for the models only;
  target 3 s after the page) and when the whole turn is back (its panels wait for the
  reference sets the warm-up embeds); then the first UMAP map (`/embeddings`; target 3 s: the app
  pays numba's JIT once its warm-up is done and no user is asking);
- one full side-by-side turn (`/run`: perturb, four answers, their answer distributions, four
  probes, map, histograms, posterior panels, the download): p50 / p95 over `--turns` turns after a
  warm-up turn per perturbation;
- the severity sweep (`/sweep`: severities 1-5 of the turn's shift, both models; target under
  10 s): p50 / p95 over `--sweeps` sweeps;
- `--users` concurrent gradio_client users, `--user-turns` turns each: errors, p50 / p95.

    python benchmarks/app_latency.py                       # writes benchmarks/results/app_latency_cpu.json
    python benchmarks/app_latency.py --turns 4 --users 2 --user-turns 1 --out /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
# (visual, severity, text, level): the perturbations the timed turns cycle through
PERTURBATIONS = [("frost", 3, "none", 3), ("gaussian_noise", 4, "char_typo", 2), ("zoom_blur", 2, "none", 3),
                 ("none", 3, "word_swap", 3)]
SWEEPS = [("frost", 3, "none", 3), ("gaussian_noise", 4, "char_typo", 2), ("zoom_blur", 2, "none", 3),
          ("contrast", 3, "word_swap", 3)]
QUESTIONS = ["what color is the shape?", "what shape is this?", "is there a red shape?", "is there not a circle?"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_busy(seconds: float = 3.0) -> float | None:
    """Fraction of all cores busy over `seconds` before the app starts (from /proc/stat; None where
    it does not exist): 0 on an idle machine, 1 when other work holds every core."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round(1 - (idle1 - idle0) / max(1, total1 - total0), 3)


def wait_for_page(process: subprocess.Popen, url: str, started: float, timeout: float = 300) -> float:
    """Seconds from `started` until `url` answers 200; an error if the app exits or is too slow."""
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with code {process.returncode} before serving")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"the app did not serve its page within {timeout:g} s")
        time.sleep(0.1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def stats(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_s": round(statistics.median(values), 3), "p95_s": round(percentile(values, 95), 3),
            "mean_s": round(statistics.fmean(values), 3), "max_s": round(max(values), 3)}


def turn(client, index: int) -> float:
    import easy_vqa
    from gradio_client import handle_file

    visual, severity, text, level = PERTURBATIONS[index % len(PERTURBATIONS)]
    image = easy_vqa.get_test_image_paths()[index % 50]
    started = time.perf_counter()
    result = client.predict(handle_file(image), QUESTIONS[index % len(QUESTIONS)], visual, severity, text, level, "vittle-f",
                            "pca", api_name="/run")
    elapsed = time.perf_counter() - started
    if not all(result[3:7]):
        raise RuntimeError(f"turn {index} came back without four answers: {result[3:7]}")
    return elapsed


def sweep(client, index: int) -> float:
    import easy_vqa
    from gradio_client import handle_file

    visual, severity, text, level = SWEEPS[index % len(SWEEPS)]
    started = time.perf_counter()
    result = client.predict(handle_file(easy_vqa.get_test_image_paths()[index % 50]), QUESTIONS[index % len(QUESTIONS)], visual,
                            severity, text, level, "vittle-f", "pca", api_name="/sweep")
    elapsed = time.perf_counter() - started
    if not result[0] or "Sweep" not in result[1]:
        raise RuntimeError(f"sweep {index} came back without its figure: {result[1][:200]}")
    return elapsed


def umap_map(client, index: int) -> float:
    """Seconds for the embedding map of a query by UMAP (`/embeddings`)."""
    import easy_vqa
    from gradio_client import handle_file

    visual, severity, text, level = PERTURBATIONS[index % len(PERTURBATIONS)]
    started = time.perf_counter()
    figure, summary = client.predict(handle_file(easy_vqa.get_test_image_paths()[index % 50]), QUESTIONS[index % len(QUESTIONS)],
                                     visual, severity, text, level, "vittle-f", "umap", api_name="/embeddings")
    elapsed = time.perf_counter() - started
    if not figure:
        raise RuntimeError(f"the UMAP map came back empty: {summary[:200]}")
    return elapsed


def first_answers(client, index: int, since: float | None = None) -> tuple[float, float]:
    """A turn through `submit`: (seconds from `since` (default: the submit) until its four answers
    are on the page, seconds until the whole turn is back). The answers are the turn's second
    update; the panels follow."""
    import easy_vqa
    from gradio_client import handle_file

    visual, severity, text, level = PERTURBATIONS[index % len(PERTURBATIONS)]
    started = time.perf_counter()
    job = client.submit(handle_file(easy_vqa.get_test_image_paths()[index % 50]), QUESTIONS[index % len(QUESTIONS)], visual,
                        severity, text, level, "vittle-f", "pca", api_name="/run")
    answered, origin = None, started if since is None else since
    while not job.done():
        if answered is None and any(all(update[3:7]) for update in job.outputs()):
            answered = time.perf_counter() - origin
        time.sleep(0.02)
    result = job.result()
    total = time.perf_counter() - started
    if not all(result[3:7]):
        raise RuntimeError(f"turn {index} came back without four answers: {result[3:7]}")
    return (answered if answered is not None else time.perf_counter() - origin), total


COLD_START_TARGETS = {"first_answers_after_run_s": 2, "first_umap_map_s": 3}
"""From a cold start: the first turn is sent as soon as the page is served (so "after Run" is
"after the page"), the first UMAP map asked as soon as that turn is done."""


def cold_start(app_args: str, first_start: bool) -> tuple[subprocess.Popen, str, Any, Any, dict[str, float]]:
    """`python app.py` in a fresh process (`first_start`: with empty caches, in a temporary
    folder), then its first turn as soon as the page is served and its first UMAP map right
    after: (process, url, client, the temporary folder or None, the timings)."""
    import shlex
    import tempfile

    from gradio_client import Client

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    empty = tempfile.TemporaryDirectory(prefix="vittle-first-start-") if first_start else None
    if empty is not None:
        env.update(VITTLE_CACHE_DIR=empty.name, NUMBA_CACHE_DIR=str(Path(empty.name) / "numba"))
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), *shlex.split(app_args)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page_s = wait_for_page(process, url, started)
        client = Client(url, verbose=False)
        answers_s, first_turn_s = first_answers(client, 0, since=started + page_s)
        first_result_s = time.perf_counter() - started
        first_umap_s = umap_map(client, 0)  # the first UMAP map, right after the first turn
        first_umap_after_start_s = time.perf_counter() - started
    except BaseException:
        stop(process, empty)
        raise
    return process, url, client, empty, {
        "page_served_s": round(page_s, 2), "first_answers_after_page_s": round(answers_s, 2), "first_turn_s": round(first_turn_s, 2),
        "first_turn_done_after_start_s": round(first_result_s, 2), "first_umap_map_s": round(first_umap_s, 2),
        "first_umap_done_after_start_s": round(first_umap_after_start_s, 2)}


def stop(process: subprocess.Popen, folder: Any) -> None:
    process.terminate()
    process.wait(30)
    if folder is not None:
        folder.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--user-turns", type=int, default=3)
    parser.add_argument("--sweeps", type=int, default=8)
    parser.add_argument("--app-args", default="", help="extra app.py options, e.g. '--no-precompute --threads 2'")
    parser.add_argument("--first-start", action="store_true",
                        help="start the app with empty caches (a new temporary VITTLE_CACHE_DIR and NUMBA_CACHE_DIR), as on a "
                             "machine's first start: every new Space container")
    parser.add_argument("--cold-starts", type=int, default=1, help="cold starts measured (the median is reported; the last "
                                                                     "one goes on to the rest of the benchmark)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "app_latency_cpu.json")
    args = parser.parse_args(argv)
    if args.cold_starts < 1:
        parser.error("--cold-starts must be at least 1")
    from gradio_client import Client

    busy_at_start = cpu_busy()
    runs = []
    for _ in range(args.cold_starts - 1):  # cold starts alone; the last one goes on to the rest
        process, url, client, empty, cold = cold_start(args.app_args, args.first_start)
        stop(process, empty)
        runs.append(cold)
    process, url, client, empty, cold = cold_start(args.app_args, args.first_start)
    runs.append(cold)
    try:
        for index in range(1, len(PERTURBATIONS)):  # warm-up: each perturbation's reference embeddings once
            turn(client, index)
        timings = [turn(client, index) for index in range(args.turns)]
        if args.sweeps:
            sweep(client, 0)  # warm-up: the sweep's path through the workers once
        sweeps = [sweep(client, index) for index in range(args.sweeps)]

        concurrent: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def user(number: int) -> None:
            try:
                own = Client(url, verbose=False)
                for k in range(args.user_turns):
                    elapsed = turn(own, number * args.user_turns + k)
                    with lock:
                        concurrent.append(elapsed)
            except Exception as err:  # counted, reported
                with lock:
                    errors.append(f"user {number}: {type(err).__name__}: {err}")

        wall = time.perf_counter()
        threads = [threading.Thread(target=user, args=(n,)) for n in range(args.users)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - wall
    finally:
        stop(process, empty)
    medians = {key: round(statistics.median(run[key] for run in runs), 2) for key in runs[0]}
    result = {
        "benchmark": "app_latency",
        "device": f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
        "models": "embedded defaults: tiny-baseline + tiny-vittle-f (tiny-vittle-l loaded)",
        "app_args": args.app_args,
        "start_kind": "a machine's first start: empty caches (reference embeddings, domain calibration, numba's compiled UMAP code)"
                      if args.first_start else "caches as this machine's earlier starts left them",
        "cpu_busy_before_start": busy_at_start,
        "cold_start": medians if len(runs) > 1 else runs[0],
        **({"cold_start_runs": runs} if len(runs) > 1 else {}),
        "turn": {**stats(timings), "includes": "four answers, their answer distributions, four probes, map, histograms, posterior "
                                               "panels, the download (JSON and perturbed image)"},
        "sweep": {**(stats(sweeps) if sweeps else {}), "includes": "severities 1-5 of the shift (with text levels 1-5), both models: clean answer, "
                                               "answer distributions and layer-l states of six queries per model"},
        "concurrency": {"users": args.users, "turns_each": args.user_turns, "errors": errors, "wall_s": round(wall, 2),
                        **(stats(concurrent) if concurrent else {})},
        "targets": {"first_answers_after_page_s": 3, "turn_p95_s": 1.5, "concurrent_errors": 0, "sweep_s": 10},
        "cold_start_targets": COLD_START_TARGETS,
        "python": platform.python_version(),
    }
    result["cold_start_met"] = {"first_answers_after_run_s": medians["first_answers_after_page_s"] <= COLD_START_TARGETS["first_answers_after_run_s"],
                                "first_umap_map_s": medians["first_umap_map_s"] <= COLD_START_TARGETS["first_umap_map_s"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
