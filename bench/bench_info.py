"""`salve info` latency on a session holding 10,000 × 768 activations (issue 2: < 1 s).

Compares the real command (a fresh process, as a user runs it) with the obvious approach of
loading the activation arrays to describe them. Run: .venv/bin/python bench/bench_info.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core.config import demo_config
from core.store.session import Session


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.h5"
        with Session.create(path, demo_config("big")) as s, s.transaction() as tx:
            rng = np.random.default_rng(0)
            for split, n in (("train", 10_000), ("test", 4_000)):
                tx.write_array(f"activations/{split}/a", rng.standard_normal((n, 768), dtype=np.float32))
                tx.write_array(f"activations/{split}/logits", rng.standard_normal((n, 10), dtype=np.float32))
                tx.write_array(f"activations/{split}/labels", rng.integers(0, 10, n))
            tx.update_json("summary", sae={"l0": 4.0, "explained_variance": 0.9, "dead": 0})
            tx.set_stage("activations", "done")
        cmd = [sys.executable, "-m", "salve_tui.cli.main", "info", str(path), "--json"]
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        # the obvious CLI: import the compute stack up front and load the arrays to describe them
        naive_code = (
            "import sys, torch, torchvision; from core.store.session import Session; "
            "s = Session.open(sys.argv[1], read_only=True); "
            "a = s.read_arrays('activations/train'); print({k: v.shape for k, v in a.items()})"
        )
        naive_times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", naive_code, str(path)], check=True, capture_output=True)
            naive_times.append(time.perf_counter() - t0)
        naive = statistics.median(naive_times)
        size_mb = path.stat().st_size / 1e6
    print(f"session file: {size_mb:.1f} MB (10,000 × 768 train + 4,000 × 768 test activations)\n")
    print("| what | seconds |")
    print("|---|---|")
    print(f"| `salve info --json` (new process), median of 5 | {statistics.median(times):.3f} |")
    print(f"| `salve info --json` (new process), max of 5 | {max(times):.3f} |")
    print(f"| obvious CLI (imports torch, loads the arrays), median of 3 | {naive:.3f} |")


if __name__ == "__main__":
    main()
