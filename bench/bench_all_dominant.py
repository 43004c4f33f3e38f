"""Sweeps + α_crit of every dominant feature as one job, at C = 1000 (issue 13, item 3).

Builds a synthetic session (``core.workflow.synthetic``: C classes, d-dimensional activations,
h SAE latents, ``--per-class`` test images per class), runs the real rankings stage, then:

1. the obvious loop on the first ``--compare`` classes: what ``salve sweep --class C`` does for
   each, the sweep and the α_crit each recorded in their own session transaction;
2. the job (``core.workflow.all_dominant.run_all_dominant``) on every class, batched commits.

Prints seconds per class both ways, the job's total, its commits and the session's size.
Run: ``python bench/bench_all_dominant.py`` (defaults: C = 1000, d = 64, h = 2048).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import SAEConfig, demo_config  # noqa: E402
from core.store.session import Session, copy_session  # noqa: E402
from core.workflow.all_dominant import run_all_dominant  # noqa: E402
from core.workflow.alpha_crit import run_alpha_crit  # noqa: E402
from core.workflow.inputs import clear_input_cache, load_inputs  # noqa: E402
from core.workflow.pipeline import run_rankings  # noqa: E402
from core.workflow.sweeps import run_sweep  # noqa: E402
from core.workflow.synthetic import SyntheticSpec, build_synthetic_session  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--per-class", type=int, default=10, help="test images per class")
    parser.add_argument("--n-alphas", type=int, default=200)
    parser.add_argument("--compare", type=int, default=10, help="classes for the per-class loop")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="salve-alldom-"))
    try:
        spec = SyntheticSpec(n_classes=args.classes, dim=args.dim, hidden=args.hidden,
                             n_train=5 * args.classes, n_test=args.per_class * args.classes, noise=0.5)
        config = demo_config("alldom")
        config.sae = SAEConfig(hidden=args.hidden)
        t0 = time.perf_counter()
        path = build_synthetic_session(folder / "alldom.h5", spec, config)
        with Session.open(path) as session:
            run_rankings(session)
        built = time.perf_counter() - t0
        loop_path = folder / "loop.h5"
        copy_session(path, loop_path)

        clear_input_cache()
        with Session.open(loop_path) as session:
            x = load_inputs(session)
            t0 = time.perf_counter()
            for c in range(args.compare):
                curve = run_sweep(session, c, n_alphas=args.n_alphas, inputs=x)
                run_alpha_crit(session, c, curve.features[0], "suppress", "linear", curve=curve, inputs=x)
            loop_per_class = (time.perf_counter() - t0) / args.compare

        clear_input_cache()
        stamps: list[float] = []
        with Session.open(path) as session:
            t0 = time.perf_counter()
            outcome = run_all_dominant(session, n_alphas=args.n_alphas,
                                       progress=lambda p: stamps.append(time.perf_counter()))
            total = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1e6
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    gaps = sorted(b - a for a, b in zip(stamps, stamps[1:], strict=False))
    print(f"C = {args.classes}, d = {args.dim}, h = {args.hidden}, {spec.n_test:,} test rows, "
          f"{args.n_alphas} α values (session built and ranked in {built:.0f} s)\n")
    print("| what | seconds |")
    print("|---|---:|")
    print(f"| per-class loop (`salve sweep --class`, 2 commits a class), per class, first {args.compare} "
          f"| {loop_per_class:.3f} |")
    print(f"| all-dominant job, per class | {total / max(1, len(outcome.computed)):.3f} |")
    print(f"| all-dominant job, all {len(outcome.computed)} classes ({outcome.commits} commits) | {total:.1f} |")
    if gaps:
        print(f"| longest gap between progress updates | {gaps[-1]:.2f} |")
    print(f"\nsession file after the job: {size_mb:.0f} MB")


if __name__ == "__main__":
    main()
