"""What an edit export reads before it writes (issue 21 item 6): the whole-session check the
export used to run (``require_intact(session)``, every dataset read whole, activations
included) against the check of only what the export builds the model from
(``require_intact(session, EXPORT_READS)``).

Builds a session with a ``--rows`` × ``--dim`` float32 training split (row shards of 100k rows, as
the activation stage writes them) and ResNet-18-sized backbone weights, then measures each check's
wall time and the bytes it passed through read calls (``rchar`` of ``/proc/self/io``: cached
reads count too, so this is what the check asks of the disk or page cache).

Run: .venv/bin/python bench/bench_export_check.py --rows 1000000 --dim 768
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from core.config import demo_config
from core.store.session import Session, require_intact
from core.workflow.export import EXPORT_READS

SHARD_ROWS = 100_000


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def build(path: Path, rows: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    with Session.create(path, demo_config("bench")) as s:
        with s.transaction() as tx:  # ~11.7M parameters, as ResNet-18
            tx.write_arrays("backbone/state_dict", {"conv": rng.standard_normal((11_000_000,), np.float32),
                                                    "fc.weight": rng.standard_normal((10, 512), np.float32)})
        for start in range(0, rows, SHARD_ROWS):
            n = min(SHARD_ROWS, rows - start)
            with s.transaction() as tx:
                tx.append_rows("activations/train", start, rows,
                               {"a": rng.standard_normal((n, dim), np.float32), "labels": np.zeros(n, np.int64)})


def measure(session: Session, keys) -> dict[str, float]:
    before, t0 = _rchar(), time.perf_counter()
    require_intact(session, keys)
    return {"seconds": round(time.perf_counter() - t0, 3), "read_mb": round((_rchar() - before) / 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-export-check-"))
    try:
        path = folder / "bench.h5"
        build(path, args.rows, args.dim)
        with Session.open(path, read_only=True) as session:
            result = {"rows": args.rows, "dim": args.dim,
                      "activation_mb": round(args.rows * args.dim * 4 / 1e6, 1),
                      "whole_session": measure(session, None),
                      "export_reads": measure(session, EXPORT_READS)}
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
