"""Lighthouse scores of the running app: accessibility, best practices and performance, desktop and
mobile, the median of `--runs` runs each, with the audits that failed.

    npm install lighthouse@12            # in a scratch folder; then pass its bin, or put it on PATH
    python benchmarks/lighthouse.py --lighthouse /path/to/node_modules/.bin/lighthouse

Starts app.py (embedded models, no precompute), waits for the warm-up, and runs Lighthouse with
Chromium headless (CHROME_PATH, default /usr/bin/chromium): `--preset=desktop`, and Lighthouse's
default mobile form factor with its simulated throttling. Scores move a few points between runs,
so the median is reported. Targets (issue 34): accessibility >= 95 on both, performance >= 90
desktop and >= 55 mobile, best practices 100. A minimal Gradio 6 app scores accessibility 95 / 95
and performance 97 / 60 on a 2-core machine: the framework's floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app_latency import ROOT, free_port, wait_for_page

CATEGORIES = ("accessibility", "best-practices", "performance")
TARGETS = {"desktop": {"accessibility": 95, "best-practices": 100, "performance": 90},
           "mobile": {"accessibility": 95, "best-practices": 100, "performance": 55}}


def run_once(lighthouse: str, url: str, form: str, out: Path) -> dict:
    """One Lighthouse run; its scores (0-100) and the audits that did not pass."""
    command = [lighthouse, url, "--quiet", "--chrome-flags=--headless=new --no-sandbox --disable-gpu",
               f"--only-categories={','.join(CATEGORIES)}", "--output=json", f"--output-path={out}"]
    if form == "desktop":
        command.append("--preset=desktop")
    env = {**os.environ, "CHROME_PATH": os.environ.get("CHROME_PATH", "/usr/bin/chromium")}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    report = json.loads(out.read_text(encoding="utf-8"))
    scores = {name: round(100 * (report["categories"][name]["score"] or 0)) for name in CATEGORIES}
    failing = {}
    for name in CATEGORIES:
        for ref in report["categories"][name]["auditRefs"]:
            audit = report["audits"][ref["id"]]
            if ref.get("weight", 0) > 0 and audit.get("score") is not None and audit["score"] < 0.9:
                failing.setdefault(name, []).append(ref["id"])
    metrics = {key: report["audits"][key].get("numericValue") for key in ("largest-contentful-paint", "total-blocking-time",
                                                                           "first-contentful-paint", "cumulative-layout-shift")}
    return {"scores": scores, "failing": failing, "metrics": metrics, "culprits": culprits(report)}


def culprits(report: dict) -> dict:
    """What the failing metrics point at: the layout shifts (the moved element and its share of
    the shift), the largest contentful paint's element, the scripts with the most main-thread time."""
    audits = report["audits"]

    def items(audit_id: str) -> list[dict]:
        return ((audits.get(audit_id) or {}).get("details") or {}).get("items") or []

    shifts = [{"element": (item.get("node") or {}).get("selector", "?"), "score": round(item.get("score", 0), 4)}
              for item in items("layout-shifts")][:6]
    # the selector and the start of the text: a Markdown paragraph's selector names no block
    lcp = [f'{(sub.get("node") or {}).get("selector", "?")} ("{str((sub.get("node") or {}).get("nodeLabel", ""))[:48]}")'
           for item in items("largest-contentful-paint-element")
           for sub in ((item.get("items") or [item]) if isinstance(item, dict) else []) if isinstance(sub, dict) and sub.get("node")][:1]
    scripts = sorted(({"url": str(item.get("url", "?")).split("?")[0][-80:], "ms": round(item.get("total", 0))}
                      for item in items("bootup-time")), key=lambda item: -item["ms"])[:5]
    return {"layout_shifts": shifts, "lcp_element": lcp[0] if lcp else None, "main_thread_by_script": scripts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lighthouse", default=shutil.which("lighthouse") or "lighthouse", help="the lighthouse executable")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--url", default=None, help="a running app's URL (default: start app.py here)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lighthouse_cpu.json")
    parser.add_argument("--reports", type=Path, default=None, help="keep Lighthouse's full JSON reports in this folder")
    args = parser.parse_args(argv)
    process = None
    url = args.url
    if url is None:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--no-precompute"], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs: dict[str, list[dict]] = {"desktop": [], "mobile": []}
    try:
        if process is not None:
            wait_for_page(process, url, time.perf_counter())
            time.sleep(20)  # the warm-up's model loads and reference sets, as a visitor a little later finds them
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch) if args.reports is None else args.reports
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(args.runs):
                for form in runs:
                    runs[form].append(run_once(args.lighthouse, url, form, folder / f"{form}-{index}.json"))
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
    result = {"benchmark": "lighthouse", "url_kind": "app.py, embedded models", "runs": args.runs,
              "device": f"CPU ({os.cpu_count()} cores, {platform.machine()})", "lighthouse": args.lighthouse.split("/")[-1],
              "median": {form: {c: statistics.median(r["scores"][c] for r in found) for c in CATEGORIES} for form, found in runs.items()},
              "failing_audits": {form: sorted({a for r in found for audits in r["failing"].values() for a in audits})
                                 for form, found in runs.items()},
              "metrics_median_ms": {form: {m: statistics.median(r["metrics"][m] or 0 for r in found) for m in found[0]["metrics"]}
                                    for form, found in runs.items()},
              "runs_detail": runs, "targets": TARGETS}
    result["met"] = {form: {c: result["median"][form][c] >= TARGETS[form][c] for c in CATEGORIES} for form in runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("median", "failing_audits", "met")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
