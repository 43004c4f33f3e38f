"""Cost of the SAE width search (``salve sae search``) against one SAE run, on the same session.

A synthetic session (``core.workflow.synthetic``: C classes, each along its own direction of a
d-dimensional activation space, a linear head reading them) gets the SAE stage once at the
configured width (the single run), then the default-grid search; the table gives both wall
times and their ratio, plus the search's own record (its training work in h·epoch units).
Then the search's scoring alone, on the same candidates (retrained here): the plain scorer (one
method sweep per class and candidate, ``sae_search.score_candidate``) against the batched one
the search uses (``sae_search_score.score_candidates``), which must give the same scores; both
on the thread count the search scores with.

    .venv/bin/python bench/bench_sae_search.py [--dim 512] [--classes 10] [--hidden 64] [--epochs 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import demo_config  # noqa: E402
from core.discover import sae_search as search  # noqa: E402
from core.discover.sae import normalization_scale  # noqa: E402
from core.discover.sae_search_score import (  # noqa: E402
    one_thread_when_small,
    score_candidates,
    shared_inputs,
)
from core.store.session import Session  # noqa: E402
from core.workflow.pipeline import run_sae  # noqa: E402
from core.workflow.sae_search_session import held_out, run_search, train_width  # noqa: E402
from core.workflow.synthetic import SyntheticSpec, build_synthetic_session  # noqa: E402


def scoring_alone(session: Session, epochs: int) -> tuple[float, float]:
    """Seconds to score the default grid's candidates: plain, then batched (scores compared)."""
    data = held_out(session)
    config = session.config.sae
    grid = search.within_budget(search.default_grid(data.train_a.shape[1], len(data.class_names),
                                                    config.l1_coeff), config)
    scale = normalization_scale(data.train_a) if config.normalize else 1.0
    train = data.train_a * scale if config.normalize else data.train_a
    widths = [train_width(train, scale, config, h, lams, epochs)[0] for h, lams in search.groups(grid).items()]
    start = time.perf_counter()
    with one_thread_when_small(data.test_a.shape[0] * len(data.class_names)):  # the batched path's threads
        plain = [search.score_candidate(w, data) for group in widths for w in group]
    plain_s = time.perf_counter() - start
    start = time.perf_counter()
    shared = shared_inputs(data)
    fast = [row for group in widths for row in score_candidates(group, data, shared)]
    fast_s = time.perf_counter() - start
    if fast != plain:
        raise SystemExit("the batched scores differ from the plain scores:\n" + "\n".join(f"{a}\n{b}" for a, b in zip(plain, fast, strict=True) if a != b))
    return plain_s, fast_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-test", type=int, default=1000)
    args = parser.parse_args()
    spec = SyntheticSpec(n_classes=args.classes, dim=args.dim, hidden=args.hidden, n_train=args.n_train,
                         n_test=args.n_test, noise=0.1, seed=1)
    cfg = demo_config("bench")
    cfg.sae = replace(cfg.sae, hidden=args.hidden, epochs=args.epochs, lr_step_epochs=max(1, args.epochs // 5))
    with tempfile.TemporaryDirectory() as tmp:
        path = build_synthetic_session(Path(tmp) / "bench.h5", spec, cfg, with_sae=False)
        with Session.open(path) as session:
            start = time.perf_counter()
            run_sae(session)
            single = time.perf_counter() - start
            start = time.perf_counter()
            record = run_search(session, apply=False)
            searched = time.perf_counter() - start
            plain_s, fast_s = scoring_alone(session, record["epochs"])
    rows = record["rows"]
    print(f"Synthetic session: {args.classes} classes, d={args.dim}, {args.n_train}/{args.n_test} rows; "
          f"SAE h={args.hidden}, {args.epochs} epochs, batch {cfg.sae.batch_size}.")
    print("")
    print("| run | wall s | vs one run |")
    print("|---|---:|---:|")
    print(f"| one SAE run (h={args.hidden}, {args.epochs} epochs) | {single:.1f} | 1.0× |")
    print(f"| width search: {len(rows)} candidates × {record['epochs']} epochs, scored | {searched:.1f} | "
          f"**{searched / single:.2f}×** |")
    print(f"| its scoring alone, plain: one method sweep per class and candidate | {plain_s:.2f} | "
          f"{plain_s / single:.2f}× |")
    print(f"| its scoring alone, batched (what the search runs; same scores) | {fast_s:.2f} | "
          f"{fast_s / single:.2f}× |")
    print("")
    print(f"Search: {record['cost']['note']}; chose h={record['chosen']['hidden']}, "
          f"λ={record['chosen']['l1_coeff']:.3g}. Scoring speed-up {plain_s / fast_s:.1f}×; "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}.")
    print("Command: `.venv/bin/python bench/bench_sae_search.py " + " ".join(sys.argv[1:]) + "`")


if __name__ == "__main__":
    main()
