"""SAE training streamed from disk vs in memory, on activations written into a session (issue 13).

Writes ``--rows`` × ``--dim`` float32 training activations (default 1M × 768, 3 GB) into a
synthetic session through the Session API, then trains the same SAE for ``--epochs`` epochs
twice, each in a fresh process so each peak RSS is its own:

* **in-memory**: the obvious path, the whole array loaded (``Session.read_array``) and trained
  with ``core.discover.sae_train.train_sae``;
* **streamed**: ``core.discover.sae_stream.train_sae_streamed`` reading shuffled row blocks
  through ``Session.rows`` under ``--budget`` (default 1G).

Per variant: load / scan time, each epoch's time, the process's resident set before training
(the runtime: Python, torch, the session) and its peak (``VmHWM``), and peak − before, which is
what the data and the trainer took (to compare with the budget plus the SAE and Adam state).
The session is deleted afterwards unless ``--keep``.

Run: ``python bench/bench_outofcore.py`` (or ``--rows 100000`` for a quick run; ``--json``).

``--control`` measures a sweep of one class and α_crit of every class on a ``--rows`` test
split instead (``core.workflow.sweeps.run_sweep``, ``core.workflow.alpha_crit.run_alpha_crit``):
**in-memory** under a budget the split fits (``$SALVE_MEMORY_BUDGET=90%``), **streamed** under
``--budget`` (the split read in row blocks through ``Session.rows``), each in its own process;
it checks the two give the same curve and α_crit medians.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def sae_config(args: argparse.Namespace):
    from core.config import SAEConfig

    return SAEConfig(kind="l1", hidden=args.hidden, l1_coeff=1e-2, lr=1e-3, epochs=args.epochs,
                     batch_size=args.batch_size, lr_step_epochs=200, seed=0, checkpoint_every=10**6)


def run_variant(args: argparse.Namespace) -> dict:
    """One variant in this process (the parent runs each in a child)."""
    import numpy as np  # noqa: F401 - imported before the baseline like the trainer's own imports
    import torch  # noqa: F401

    from core.config import parse_memory_size
    from core.discover.sae_stream import plan_stream, row_moments, train_sae_streamed
    from core.discover.sae_train import train_sae
    from core.store.session import Session
    from core.workflow.outofcore import SessionRows

    config = sae_config(args)
    budget = parse_memory_size(args.budget)
    key = "activations/train/a"
    stamps: list[float] = []
    with Session.open(args.session, read_only=True) as session:
        n, d = session.array_shape(key)
        baseline_kib = proc_status_kib("VmRSS")
        t0 = time.perf_counter()
        info: dict = {}
        if args.variant == "in-memory":
            data = torch.from_numpy(session.read_array(key))
            setup = time.perf_counter() - t0
            start = time.perf_counter()
            result = train_sae(data, config, progress=lambda p: stamps.append(time.perf_counter()))
        else:
            source = SessionRows(session, key)
            plan = plan_stream(n, d, config.hidden, 1, budget)
            moments = row_moments(source, plan.block_rows)
            setup = time.perf_counter() - t0
            info = {"block_rows": plan.block_rows, "blocks_per_window": plan.blocks_per_window,
                    "window_rows": plan.window_rows}
            start = time.perf_counter()
            result = train_sae_streamed(source, config, progress=lambda p: stamps.append(time.perf_counter()),
                                        budget_bytes=budget, moments=moments, plan=plan)
    ends = [start, *stamps[-args.epochs:]]
    model_bytes = sum(v.nbytes for v in result.weights.values()) * 3  # weights + two Adam moments
    return {
        "variant": args.variant, "rows": n, "dim": d, "hidden": config.hidden, "engine": result.engine,
        "setup_s": setup, "epoch_s": [b - a for a, b in zip(ends, ends[1:], strict=False)],
        "final_loss": float(result.history["loss"][0, -1]),
        "baseline_rss_mib": baseline_kib / 1024, "peak_rss_mib": proc_status_kib("VmHWM") / 1024,
        "model_mib": model_bytes / 2**20, "budget_mib": budget / 2**20, **info,
    }


def run_child(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Run one variant in a fresh process (its own peak RSS); return the JSON line it prints."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=full_env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def remove_sessions(folder: Path, remove_folder: bool) -> None:
    """Delete the bench's sessions (files and array folders), and the temp folder it made."""
    import shutil

    for p in sorted(folder.glob("outofcore*"), reverse=True):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if remove_folder:
        folder.rmdir()


def run_control_variant(args: argparse.Namespace) -> dict:
    """Sweep + α_crit on the test split in this process: in memory (a budget the split fits)
    or streamed from disk (``--budget``); the parent sets ``$SALVE_MEMORY_BUDGET``."""
    import numpy as np  # noqa: F401 - imported before the baseline like the control code's own
    import torch  # noqa: F401

    from core.config import memory_budget
    from core.store.session import Session
    from core.workflow.alpha_crit import run_alpha_crit
    from core.workflow.inputs import row_inputs_for
    from core.workflow.sweeps import run_sweep

    with Session.open(args.session, read_only=True) as session:
        baseline_kib = proc_status_kib("VmRSS")
        t0 = time.perf_counter()
        x = row_inputs_for(session, None, "test")
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        curve = run_sweep(session, 0, None, n_alphas=args.n_alphas, record=False, inputs=x)
        sweep_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        crit = run_alpha_crit(session, None, record=False, inputs=x)
        crit_s = time.perf_counter() - t0
        n, d = session.array_shape("activations/test/a")
    return {
        "variant": args.variant, "rows": n, "dim": d, "streamed": x.streamed,
        "budget_mib": memory_budget() / 2**20, "load_s": load_s, "sweep_s": sweep_s, "alpha_crit_s": crit_s,
        "target_accuracy_last": float(curve.per_class_accuracy[0, -1]),
        "alpha_crit_medians": [r.summary()["analytic"]["median"] for r in crit],
        "passes": x.rows.passes if x.streamed else 0,
        "baseline_rss_mib": baseline_kib / 1024, "peak_rss_mib": proc_status_kib("VmHWM") / 1024,
    }


def control_main(args: argparse.Namespace) -> None:
    """``--control``: sweep + α_crit on a large test split, in memory vs streamed (each its own process)."""
    from core.config import demo_config
    from core.store.session import Session
    from core.workflow.pipeline import run_rankings
    from core.workflow.synthetic import SyntheticSpec, build_synthetic_session

    folder = Path(args.folder or tempfile.mkdtemp(prefix="salve-outofcore-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "outofcore.h5"
    try:
        t0 = time.perf_counter()
        spec = SyntheticSpec(n_classes=args.classes, dim=args.dim, hidden=args.hidden, n_train=2000,
                             n_test=args.rows, noise=1.0, seed=0)
        build_synthetic_session(path, spec, demo_config(path.stem))
        with Session.open(path) as session:
            run_rankings(session)
        build_s = time.perf_counter() - t0
        results = []
        for variant, budget in (("in-memory", "90%"), ("streamed", args.budget)):
            cmd = [sys.executable, __file__, "--variant", f"control-{variant}", "--session", str(path),
                   f"--n-alphas={args.n_alphas}"]
            results.append(run_child(cmd, {"SALVE_MEMORY_BUDGET": budget}))
    finally:
        if not args.keep:
            remove_sessions(folder, args.folder is None)
    memory, streamed = results
    same = (memory["target_accuracy_last"] == streamed["target_accuracy_last"]
            and memory["alpha_crit_medians"] == streamed["alpha_crit_medians"])
    report = {"rows": args.rows, "dim": args.dim, "classes": args.classes, "build_s": build_s,
              "same_results": same, "variants": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.rows:,} × {args.dim} float32 test activations, C = {args.classes}, h = {args.hidden}, "
          f"{args.n_alphas} α values; built and ranked in {build_s:.0f} s; same curve and α_crit: {same}\n")
    print("| variant | budget MiB | load s | sweep s | α_crit s (all classes) | passes | peak RSS MiB "
          "| RSS before MiB | peak − before MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['variant']} | {r['budget_mib']:.0f} | {r['load_s']:.2f} | {r['sweep_s']:.2f} | "
              f"{r['alpha_crit_s']:.2f} | {r['passes']} | {r['peak_rss_mib']:.0f} | {r['baseline_rss_mib']:.0f} | "
              f"{r['peak_rss_mib'] - r['baseline_rss_mib']:.0f} |")


def build(args: argparse.Namespace, path: Path) -> float:
    from core.config import demo_config
    from core.workflow.synthetic import SyntheticSpec, build_synthetic_session

    t0 = time.perf_counter()
    spec = SyntheticSpec(n_classes=10, dim=args.dim, hidden=args.hidden, n_train=args.rows, n_test=1000,
                         noise=1.0, seed=0)
    build_synthetic_session(path, spec, demo_config(path.stem), with_sae=False)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--budget", default="1G", help="memory budget of the streamed variant")
    parser.add_argument("--folder", default=None, help="where to write the session (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the session file")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--control", action="store_true",
                        help="measure a sweep + α_crit on a --rows test split instead of SAE training")
    parser.add_argument("--classes", type=int, default=10, help="classes of the --control session")
    parser.add_argument("--n-alphas", type=int, default=100, help="α values of the --control sweep")
    parser.add_argument("--variant", choices=["in-memory", "streamed", "control-in-memory", "control-streamed"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--session", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run = run_control_variant if args.variant.startswith("control-") else run_variant
        print(json.dumps(run(args)))
        return
    if args.control:
        control_main(args)
        return

    folder = Path(args.folder or tempfile.mkdtemp(prefix="salve-outofcore-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "outofcore.h5"
    try:
        build_s = build(args, path)
        size_gb = sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 1e9
        results = []
        for variant in ("in-memory", "streamed"):
            cmd = [sys.executable, __file__, "--variant", variant, "--session", str(path),
                   *[f"--{k.replace('_', '-')}={getattr(args, k)}"
                     for k in ("rows", "dim", "hidden", "batch_size", "epochs", "budget")]]
            results.append(run_child(cmd))
    finally:
        if not args.keep:
            remove_sessions(folder, args.folder is None)
    report = {"rows": args.rows, "dim": args.dim, "session_gb": size_gb, "build_s": build_s, "variants": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    memory, streamed = results
    print(f"{args.rows:,} × {args.dim} float32 activations ({size_gb:.2f} GB session, built in {build_s:.0f} s), "
          f"SAE h = {args.hidden}, batch {args.batch_size}, {memory['engine']} engine, budget {args.budget}\n")
    print("| variant | load / scan s | epoch s (each) | peak RSS MiB | RSS before training MiB | peak − before MiB | final loss |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in results:
        epochs = " / ".join(f"{t:.2f}" for t in r["epoch_s"])
        print(f"| {r['variant']} | {r['setup_s']:.2f} | {epochs} | {r['peak_rss_mib']:.0f} | "
              f"{r['baseline_rss_mib']:.0f} | {r['peak_rss_mib'] - r['baseline_rss_mib']:.0f} | {r['final_loss']:.5f} |")
    ratio = streamed["epoch_s"][-1] / memory["epoch_s"][-1]
    print(f"\nstreamed / in-memory, last epoch: {ratio:.2f}×; streamed window {streamed['window_rows']:,} rows "
          f"({streamed['blocks_per_window']} blocks of {streamed['block_rows']:,}); SAE + Adam state "
          f"{streamed['model_mib']:.1f} MiB")


if __name__ == "__main__":
    main()
