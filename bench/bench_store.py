"""The session store at scale (issue 13): write cost that does not grow with the data.

Builds a session whose activation stage streams ``--rows`` × ``--dim`` activations (and
``--classes`` logits) from a synthetic model through the real stage code
(``core.workflow.stage_activations.stream_activations``), then measures:

- ``extract_overhead``: the stage's time over the same model's forward passes writing nothing;
- ``disk_floor_s`` / ``extract_overhead_vs_disk``: the same bytes written raw (256 MiB blocks,
  each fsynced, as the shards are) with no model, and the stage's time over the slower of that
  and the forward passes. When the model produces rows faster than the disk takes them, no
  store can beat the disk; this separates the store's own cost from the disk's;
- ``--hidden-layers K``: the synthetic model's extra 2048-wide layers (default 1). With none
  it makes ~58k rows/s here (400 MB/s of activations and logits), faster than this machine's
  disk takes fsynced writes, so its "overhead" is the disk's (``disk_bound`` says so). One layer
  gives ~18k rows/s (~130 MB/s), still 23× ResNet-18's 795 images/s at 32 px on this machine's
  two cores (23 images/s at 224 px), so the default measures the store at a row rate no real
  backbone reaches here;
- ``small_transaction_s``: recording an edit (``core.workflow.edits.record_edit``) on that session;
- ``info_s``: ``salve info --json`` in a new process, as a user runs it;
- the obvious implementation in the same run: the schema-1 store (every array inside the one
  file, so every transaction copies all of it), for the small transaction at ``--obvious-rows``
  rows (the copy's cost is proportional to the file, so a smaller size is enough to show it).

Run: .venv/bin/python bench/bench_store.py --rows 1000000 --dim 768 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import core.store.arrayfiles as store_arrays
import core.store.session as store
from core.config import demo_config
from core.control.spec import EditSpec
from core.discover.activations import iter_activations
from core.store.session import Session, session_bytes
from core.workflow.edits import record_edit
from core.workflow.stage_activations import stream_activations

INPUT_DIM = 256


class SyntheticSource:
    """Rows of random inputs (seeded per row block) with labels, like a dataset split."""

    def __init__(self, n: int, classes: int) -> None:
        self.n, self.classes = n, classes

    def __len__(self) -> int:
        return self.n

    def iter_batches(self, batch_size: int, indices=None, **_):
        order = np.arange(self.n) if indices is None else np.asarray(indices)
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            g = torch.Generator().manual_seed(int(rows[0]))
            yield (torch.randn(len(rows), INPUT_DIM, generator=g), torch.from_numpy(rows % self.classes),
                   torch.from_numpy(rows))


def synthetic_model(dim: int, classes: int, hidden_layers: int = 0) -> nn.Module:
    torch.manual_seed(0)
    body: list[nn.Module] = []
    width = INPUT_DIM
    for _ in range(hidden_layers):
        body += [nn.Linear(width, 2048), nn.ReLU()]
        width = 2048
    return nn.Sequential(*body, nn.Linear(width, dim), nn.ReLU(), nn.Linear(dim, classes)).eval()


def raw_write(folder: Path, nbytes: int, block: int = 256 << 20) -> float:
    """Write ``nbytes`` to plain files in fsynced blocks: the disk's floor for the stage."""
    buf = np.random.default_rng(0).random(block // 8).tobytes()
    t0 = time.perf_counter()
    left, i = nbytes, 0
    while left > 0:
        part = folder / f"raw-{i}.bin"
        with open(part, "wb") as fh:
            fh.write(buf[: min(left, block)])
            fh.flush()
            os.fsync(fh.fileno())
        left, i = left - block, i + 1
    elapsed = time.perf_counter() - t0
    for p in folder.glob("raw-*.bin"):
        p.unlink()
    return elapsed


def forward_only(model: nn.Module, source: SyntheticSource, batch: int) -> float:
    """The same forward passes and host copies as the stage, writing nothing."""
    t0 = time.perf_counter()
    for _ in iter_activations(model, source, torch.device("cpu"), batch):
        pass
    return time.perf_counter() - t0


def build(path: Path, model: nn.Module, source: SyntheticSource, batch: int, interval: float) -> float:
    t0 = time.perf_counter()
    with Session.create(path, demo_config(path.stem)) as s:
        progress: dict[str, int] = {}
        stream_activations(s, "train", model, source, torch.device("cpu"), batch, progress,
                           commit_interval_s=interval)
        with s.transaction() as tx:
            tx.set_stage("activations", "done", "synthetic")
    return time.perf_counter() - t0


def small_transactions(path: Path, repeats: int) -> list[float]:
    times = []
    with Session.open(path) as s:
        for i in range(repeats):
            t0 = time.perf_counter()
            record_edit(s, EditSpec(features=(i % 7,), alpha=0.5 + i))
            times.append(time.perf_counter() - t0)
    return times


def info_times(path: Path, repeats: int) -> list[float]:
    cmd = [sys.executable, "-m", "salve_tui.cli.main", "info", str(path), "--json"]
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--commit-interval", type=float, default=20.0, help="seconds between commits (the stage's)")
    parser.add_argument("--obvious-rows", type=int, default=100_000)
    parser.add_argument("--hidden-layers", type=int, default=1,
                        help="extra 2048-wide layers in the synthetic model (0: faster than the disk here)")
    parser.add_argument("--folder", default=None, help="where to build the sessions (default: a temp folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    folder = Path(args.folder or tempfile.mkdtemp(prefix="bench_store-"))
    folder.mkdir(parents=True, exist_ok=True)
    model = synthetic_model(args.dim, args.classes, args.hidden_layers)
    source = SyntheticSource(args.rows, args.classes)
    result: dict[str, object] = {"rows": args.rows, "dim": args.dim, "classes": args.classes,
                                 "batch": args.batch, "commit_interval_s": args.commit_interval,
                      "hidden_layers": args.hidden_layers}
    try:
        forward_s = forward_only(model, source, args.batch)
        path = folder / "big.h5"
        stage_s = build(path, model, source, args.batch, args.commit_interval)
        row_bytes = 4 * (args.dim + args.classes) + 8
        disk_s = raw_write(folder, args.rows * row_bytes)
        result.update(forward_only_s=round(forward_s, 2), stage_s=round(stage_s, 2),
                      extract_overhead=round(stage_s / forward_s - 1, 4),
                      rows_per_s_forward=round(args.rows / forward_s),
                      disk_floor_s=round(disk_s, 2),
                      extract_overhead_vs_disk=round(stage_s / max(forward_s, disk_s) - 1, 4),
                      disk_bound=disk_s > forward_s,
                      session_file_bytes=path.stat().st_size, session_bytes=session_bytes(path),
                      shards=len(list(store.data_dir(path).iterdir())))
        tx = small_transactions(path, 10)
        result.update(small_transaction_s=round(statistics.median(tx), 4), small_transaction_max_s=round(max(tx), 4))
        info = info_times(path, 3)
        result.update(info_s=round(statistics.median(info), 3), info_max_s=round(max(info), 3))
        shutil.rmtree(store.data_dir(path))
        path.unlink()

        # the obvious store: everything inside the one file, each transaction copies it
        old = folder / "obvious.h5"
        small_source = SyntheticSource(args.obvious_rows, args.classes)
        saved = store_arrays.EXTERNAL_MIN_BYTES
        store_arrays.EXTERNAL_MIN_BYTES = 1 << 62
        try:
            with Session.create(old, demo_config("obvious")) as s:
                with s.transaction() as t:
                    for name, shape, dtype in (("a", (args.obvious_rows, args.dim), np.float32),
                                               ("logits", (args.obvious_rows, args.classes), np.float32),
                                               ("labels", (args.obvious_rows,), np.int64)):
                        t.create_rows(f"activations/train/{name}", shape, dtype)
                for row, a, logits, labels in iter_activations(model, small_source, torch.device("cpu"), 50_000):
                    with s.transaction() as t:
                        t.write_rows("activations/train/a", row, a)
                        t.write_rows("activations/train/logits", row, logits)
                        t.write_rows("activations/train/labels", row, labels)
            tx_old = small_transactions(old, 3)
        finally:
            store_arrays.EXTERNAL_MIN_BYTES = saved
        result.update(obvious_rows=args.obvious_rows, obvious_file_bytes=old.stat().st_size,
                      obvious_small_transaction_s=round(statistics.median(tx_old), 4))
        # the new store at the obvious size, for the same comparison at equal data
        mid = folder / "mid.h5"
        build(mid, model, small_source, args.batch, args.commit_interval)
        tx_mid = small_transactions(mid, 10)
        result.update(small_transaction_at_obvious_rows_s=round(statistics.median(tx_mid), 4))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if result.get("disk_bound"):
        print(f"warning: the model ({result['rows_per_s_forward']} rows/s) outruns the disk "
              f"({result['disk_floor_s']} s for what the forward passes made in {result['forward_only_s']} s): "
              "extract_overhead measures the disk, not the store (see extract_overhead_vs_disk)", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
