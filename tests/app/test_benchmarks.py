"""The app's load and soak benchmarks run end to end (tiny durations): a benchmark that cannot run
cannot be reproduced. Their numbers are read from their JSON, never asserted as timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_load_benchmark_runs_over_raw_http_with_the_readmes_values(tmp_path):
    out = tmp_path / "load.json"
    result = subprocess.run([sys.executable, "benchmarks/app_load.py", "--users", "2", "--seconds", "3", "--seen-only", "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["seen"]["errors"] == [] and report["seen"]["turns"] >= 2 and report["seen"]["turn_done"]["n"] == report["seen"]["turns"]
    assert report["memory_mb"]["peak"] > 0


def test_the_soak_benchmark_runs_and_reports_memory_over_time(tmp_path):
    out = tmp_path / "soak.json"
    result = subprocess.run([sys.executable, "benchmarks/app_soak.py", "--minutes", "0.3", "--every", "1", "--no-precompute",
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = json.loads(out.read_text())
    assert report["error_count"] == 0, report["errors"]
    assert report["calls"] >= 2 and sum(report["calls_by_endpoint"].values()) == report["calls"]
    assert len(report["series_every_30_s"]) >= 1 and report["rss_mb"]["peak"] >= report["rss_mb"]["at_start"] > 0
    assert report["app_folders_left_after_stop"] == []  # the app removed its own folder when it stopped
    assert result.returncode in (0, 1)  # 1: a target missed, which 18 seconds cannot judge


def test_the_soak_slope_and_settings():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from app_soak import all_settings, slope_mb_per_10_min

    assert slope_mb_per_10_min([(0, 100.0), (300, 101.0), (600, 102.0)]) == 2.0  # 2 MB over 600 s
    assert slope_mb_per_10_min([(0, 5.0), (60, 5.0), (120, 5.0)]) == 0.0
    assert slope_mb_per_10_min([(0, 1.0)]) is None
    settings = all_settings()
    assert len(settings) == len(set(settings)) > 1000 and settings != sorted(settings) and settings == all_settings()
