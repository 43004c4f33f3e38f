"""Activation extraction vs a bare forward pass over the same images (issue 2: within 15%).

The project path is the real `activations` stage: hook on the final linear, streaming into the
HDF5 session with atomic commits. The baseline is the obvious loop that only runs the model over
the same batches. Run: .venv/bin/python bench/bench_extract.py [--n-train N --n-test N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from core.config import demo_config
from core.discover.backbone import build_model, state_to_numpy
from core.store.session import Session
from core.workflow.pipeline import load_data, run_activations, run_data


def bare_forward(model: torch.nn.Module, sources, batch_size: int) -> float:
    t0 = time.perf_counter()
    with torch.inference_mode():
        for source in sources:
            for images, _, _ in source.iter_batches(batch_size):
                model(images)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = demo_config("bench")
    config.data.n_train, config.data.n_test = args.n_train, args.n_test
    config.device = "cpu"
    bundle = load_data(config)
    model = build_model("resnet18", len(bundle.class_names), image_size=64).eval()
    bare_forward(model, [bundle.test], 128)  # warm-up
    bare, staged = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            bare.append(bare_forward(model, [bundle.train, bundle.test], 128))
            path = Path(tmp) / f"s{r}.h5"
            with Session.create(path, config) as session:
                run_data(session)
                with session.transaction() as tx:
                    tx.write_arrays("backbone/state_dict", state_to_numpy(model))
                    tx.set_stage("backbone", "done")
                t0 = time.perf_counter()
                run_activations(session)
                staged.append(time.perf_counter() - t0)
    n = args.n_train + args.n_test
    b, s = min(bare), min(staged)
    print(f"{n} images at 64 px, ResNet-18, batch 128, CPU threads {torch.get_num_threads()}, best of {args.repeats}\n")
    print("| path | seconds | images/s |")
    print("|---|---|---|")
    print(f"| bare forward pass (baseline) | {b:.2f} | {n / b:.0f} |")
    print(f"| `activations` stage (hook + HDF5 streaming + commits) | {s:.2f} | {n / s:.0f} |")
    print(f"\noverhead: {100 * (s / b - 1):+.1f}%")


if __name__ == "__main__":
    main()
