"""How long `vittle COMMAND --help` takes (a fresh process each time, best of 3), as JSON.

    python benchmarks/cli_help.py [--out benchmarks/results/cli_help_cpu.json]

Target: under 0.5 s for every command on a 2-core CPU (help loads no torch; a test checks that).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [[], ["train"], ["answer"], ["eval"], ["eval", "pope"], ["analyze"], ["lab"], ["perturb"], ["demo"], ["cache"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = {}
    for command in COMMANDS:
        times = []
        for _ in range(args.repeat):
            tic = time.perf_counter()
            subprocess.run([sys.executable, "-m", "vittle.cli", *command, "--help"], capture_output=True, check=True)
            times.append(time.perf_counter() - tic)
        rows[" ".join(["vittle", *command, "--help"])] = round(min(times), 3)
        print(f"{' '.join(['vittle', *command, '--help']):32s} {min(times):.3f} s")
    baseline = []
    for _ in range(args.repeat):
        tic = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        baseline.append(time.perf_counter() - tic)
    report = {"benchmark": "cli_help", "seconds_best_of": args.repeat, "python_startup_s": round(min(baseline), 3), "help_s": rows,
              "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores", "python": platform.python_version()}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
