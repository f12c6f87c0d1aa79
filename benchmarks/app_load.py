"""The demo app under load: N concurrent users for a fixed time, over HTTP like real users.

`python app.py` runs in a fresh process with an empty reference-embedding cache. Each user is
a thread with its own HTTP connection that uploads the image and sends a whole turn over the
app's HTTP API (`/gradio_api/call/run`: perturb, four answers, four probes, map, histograms,
posterior panels), reads the turn's event stream until it is done and sends the next one at once (no think time: the server is saturated, the worst case for N users). Two
phases of `--seconds` each:

- seen settings: the four perturbations of `app_latency.py`, each warmed once before;
- unseen settings: every turn asks for a perturbation no earlier turn used and the server has
  not embedded (a visual corruption combined with a text shift), so every turn needs a new
  reference set (its questions perturbed, 2 x 48 queries embedded) besides its own answers.

Both phases start once the app's background precompute (the reference sets of every visual
corruption at every severity) is done; how long that took after start-up is reported too.

Per turn: the time until all four answers are on the page and until the whole turn is done.
Also errors, turns per second and the server's peak resident memory (sampled every 0.25 s).

    python benchmarks/app_load.py                      # 16 users, 2 x 120 s -> benchmarks/results/app_load_cpu.json
    python benchmarks/app_load.py --users 4 --seconds 20 --out /tmp/load.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_latency import PERTURBATIONS, QUESTIONS, free_port, stats, wait_for_page  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def unseen_settings() -> Iterator[tuple[str, int, str, int]]:
    """Settings in an order where each is new to the server: every visual corruption at every
    severity (all precomputed alone) combined with each text shift at each level (never
    precomputed). Translations are left out: they need a translation backend."""
    from vittle.analysis.perturb import list_perturbations

    visual = [(p.name, s) for s in (1, 2, 3, 4, 5) for p in list_perturbations("visual")]
    texts = [(p.name, lv) for lv in (1, 2, 3, 4, 5) for p in list_perturbations("text") if p.has_levels]
    seen = {(v, s, t, lv) for v, s, t, lv in PERTURBATIONS}
    return (setting for (t, lv) in texts for (v, s) in visual if (setting := (v, s, t, lv)) not in seen)


def wait_for_precompute(url: str, timeout: float = 900) -> str:
    """Poll the status line (the /robustness endpoint returns it) until the background
    precompute is over; the last status."""
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False)
    deadline = time.perf_counter() + timeout
    while True:
        status = client.predict("vittle-f", api_name="/robustness")[2]
        if "(ready)" in status or time.perf_counter() > deadline:
            return status
        time.sleep(1)


class Memory:
    """Peak resident memory of a process, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.25):
        self.pid, self.every, self.peak_mb, self.start_mb = pid, every, 0.0, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.rss_mb())
            self._stop.wait(self.every)

    def __enter__(self) -> Memory:
        self.start_mb = self.rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class User:
    """One user over the app's HTTP API, as its page talks to it: upload the image, start a
    turn (`POST /gradio_api/call/run`), read the turn's event stream until it completes. A
    `gradio_client.Client` per user (its job threads and status polling) took more CPU than
    the server did on 2 cores, where the clients compete with the server; this needs one
    HTTP connection and no thread of its own."""

    def __init__(self, url: str):
        import httpx

        self.http = httpx.Client(base_url=url.rstrip("/") + "/gradio_api", timeout=600)

    def close(self) -> None:
        self.http.close()

    def upload(self, path: str) -> dict:
        with open(path, "rb") as file:
            response = self.http.post("/upload", files=[("files", (Path(path).name, file, "image/png"))])
        response.raise_for_status()
        return {"path": response.json()[0], "meta": {"_type": "gradio.FileData"}}

    def submit(self, data: list, endpoint: str = "run") -> Iterator[tuple[str, Any]]:
        """(event, data) of the call's stream: "generating" with each update's outputs,
        then "complete" (or "error")."""
        response = self.http.post(f"/call/{endpoint}", json={"data": data})
        response.raise_for_status()
        event_id = response.json()["event_id"]
        with self.http.stream("GET", f"/call/{endpoint}/{event_id}") as stream:
            event = None
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("generating", "complete", "error"):
                    yield event, json.loads(line[5:])
                    if event != "generating":
                        return
        raise RuntimeError(f"the event stream of {event_id} ended without a result")


def timed_turn(user: User, index: int, setting: tuple) -> tuple[float, float]:
    """(seconds until the four answers are shown, seconds until the turn is done)."""
    import easy_vqa

    visual, severity, text, level = setting
    image = easy_vqa.get_test_image_paths()[index % 50]
    started = time.perf_counter()
    data = [user.upload(image), QUESTIONS[index % len(QUESTIONS)], visual, severity, text, level, "vittle-f", "pca"]
    answered = result = None
    for event, output in user.submit(data):  # the streamed updates
        if event == "error":
            raise RuntimeError(f"turn {index} ({setting}) failed: {output}")
        if answered is None and all(output[3:7]):
            answered = time.perf_counter() - started
        result = output
    done = time.perf_counter() - started
    if not all(result[3:7]):
        raise RuntimeError(f"turn {index} ({setting}) came back without four answers: {result[3:7]}")
    return (answered if answered is not None else done), done


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(url: str, users: int, seconds: float, settings, server_pid: int) -> dict:
    """`users` closed-loop users for `seconds`; `settings()` gives each turn's setting. Also
    the CPU seconds the server and these clients used (they share the machine's cores)."""
    answers, turns, errors, count = [], [], [], itertools.count()
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def user(number: int) -> None:
        client = User(url)
        while time.perf_counter() < deadline:
            with lock:
                index = next(count)
                setting = settings(index)
            if setting is None:
                return
            try:
                answered, done = timed_turn(client, index, setting)
                with lock:
                    answers.append(answered)
                    turns.append(done)
            except Exception as err:  # counted and reported
                with lock:
                    errors.append(f"user {number}, turn {index} {setting}: {type(err).__name__}: {err}")
        client.close()

    started = time.perf_counter()
    server_cpu, client_cpu = cpu_seconds(server_pid), cpu_seconds(os.getpid())
    threads = [threading.Thread(target=user, args=(n,)) for n in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    server_cpu, client_cpu = cpu_seconds(server_pid) - server_cpu, cpu_seconds(os.getpid()) - client_cpu
    return {"users": users, "seconds": round(wall, 1), "turns": len(turns), "turns_per_s": round(len(turns) / wall, 3),
            "cpu_seconds_per_turn": {"server": round(server_cpu / max(1, len(turns)), 3), "clients": round(client_cpu / max(1, len(turns)), 3)},
            "errors": errors, "answers_shown": stats(answers) if answers else {}, "turn_done": stats(turns) if turns else {}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120, help="length of each phase")
    parser.add_argument("--concurrency", type=int, default=None, help="the app's --concurrency (default: the app's default)")
    parser.add_argument("--seen-only", action="store_true", help="skip the unseen phase and the precompute (a quick check)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "app_load_cpu.json")
    args = parser.parse_args(argv)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cache = tempfile.TemporaryDirectory(prefix="vittle-load-")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VITTLE_CACHE_DIR": cache.name}  # nothing embedded before this run
    command = [sys.executable, str(ROOT / "app.py"), "--port", str(port)]
    if args.concurrency:
        command += ["--concurrency", str(args.concurrency)]
    if args.seen_only:
        command += ["--no-precompute"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = time.perf_counter()
        page_s = wait_for_page(process, url, started)
        with Memory(process.pid) as memory:
            status = wait_for_precompute(url)
            precompute_s = time.perf_counter() - started
            if "(ready)" not in status:
                raise RuntimeError(f"the precompute did not finish: {status}")
            user = User(url)
            for index, setting in enumerate(PERTURBATIONS):  # the seen settings, once each
                timed_turn(user, index, setting)
            user.close()
            idle_mb = memory.rss_mb()
            seen = phase(url, args.users, args.seconds, lambda i: PERTURBATIONS[i % len(PERTURBATIONS)], process.pid)
            fresh = unseen_settings()
            unseen = phase(url, args.users, args.seconds, lambda i: next(fresh, None), process.pid) if not args.seen_only else {}
            after_mb = memory.rss_mb()
    finally:
        process.terminate()
        process.wait(30)
        cache.cleanup()
    result = {
        "benchmark": "app_load",
        "device": f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
        "models": "embedded defaults: tiny-baseline + tiny-vittle-f (tiny-vittle-l loaded)",
        "load": "closed loop: each user sends its next turn as soon as the last one is done (no think time)",
        "app_concurrency": args.concurrency or "app default",
        "start_up": {"page_served_s": round(page_s, 1), "precompute_done_s": round(precompute_s, 1)},
        "seen": seen,
        "unseen": unseen,
        "memory_mb": {"after_warm_up": round(idle_mb, 1), "peak": round(memory.peak_mb, 1), "at_end": round(after_mb, 1)},
        "targets": {"errors": 0, "seen_turn_p95_s": 5, "unseen_turn_p95_s": 15},
        "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0 if not (seen["errors"] or unseen.get("errors")) else 1


if __name__ == "__main__":
    sys.exit(main())
