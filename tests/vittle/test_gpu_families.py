"""benchmarks/gpu_families.py, the prepared GPU check, runs end to end at tiny size on the CPU
(`--tiny`): LoRA and full training of both families through the recipe, answers from the
trained folder, and step times with and without the bottleneck."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_run_writes_the_report(tmp_path):
    out = tmp_path / "gpu_families.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_families.py"), "--tiny", "--out", str(out)],
                   cwd=tmp_path, check=True, capture_output=True, timeout=1200)
    report = json.loads(out.read_text())
    assert {"benchmark", "device", "tiny", "steps", "torch", "date", "seconds", "families"} <= set(report)
    assert report["tiny"] and report["steps"] == 3 and report["device"].startswith("CPU")
    assert set(report["families"]) == {"qwen2_5_vl", "llava"}
    for result in report["families"].values():
        assert {"family", "shape", "params", "lora", "full", "step_time_lora", "step_time_full"} <= set(result)
        for setup in ("lora", "full"):
            run = result[setup]
            assert run["steps"] == 3 and math.isfinite(run["loss_last"]) and run["alpha_last"] > 0
            assert len(run["answers"]) == 4 and all(isinstance(a, str) for a in run["answers"])
            timing = result[f"step_time_{setup}"]
            assert isinstance(timing["ratio"], float) and timing["ratio"] > 0 and math.isfinite(timing["ratio"])
            assert all(v > 0 for v in timing["median_s"].values())
