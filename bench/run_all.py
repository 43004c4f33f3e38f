"""Run every benchmark in sequence (what `make bench` does) and print their markdown.

The demo-session benches need `sessions/demo.h5` (built by `salve demo`); they are run last
and build it first if it is missing. Results are summarised by hand in bench/RESULTS.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHES = [
    ["bench/bench_shapes.py"],
    ["bench/bench_info.py"],
    ["bench/bench_extract.py"],
    ["bench/bench_sae.py", "--out", "bench/RESULTS_sae.md"],
    ["bench/bench_sweep.py", "--write"],
    ["bench/bench_saliency.py", "--write"],
    ["bench/bench_tui.py"],
    ["-m", "salve_tui.cli.main", "demo"],
    ["bench/bench_demo_control.py"],
    ["bench/bench_demo_visuals.py", "--write"],
]


def main() -> int:
    failed = []
    for args in BENCHES:
        print(f"\n## {' '.join(args)}\n", flush=True)
        if subprocess.run([sys.executable, *args], cwd=ROOT).returncode != 0:
            failed.append(" ".join(args))
    if failed:
        print("\nfailed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
