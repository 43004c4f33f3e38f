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
from core.session import Session


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
        cmd = [sys.executable, "-m", "core.cli", "info", str(path), "--json"]
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with Session.open(path, read_only=True) as s:
            arrays = s.read_arrays("activations/train")
            _ = {k: v.shape for k, v in arrays.items()}
        naive = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1e6
    print(f"session file: {size_mb:.1f} MB (10,000 × 768 train + 4,000 × 768 test activations)\n")
    print("| what | seconds |")
    print("|---|---|")
    print(f"| `salve info --json` (new process), median of 5 | {statistics.median(times):.3f} |")
    print(f"| `salve info --json` (new process), max of 5 | {max(times):.3f} |")
    print(f"| in-process: reading the train activation arrays (what info avoids) | {naive:.3f} |")


if __name__ == "__main__":
    main()
