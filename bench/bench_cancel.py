"""Cancel latency per job kind, on a copy of a small session (the demo-like tmux bench session).

Two numbers per job, both from the same code the TUI's jobs run (``core`` functions with a
progress callback and a :class:`core.jobs.CancelToken`):

* **max gap**: one uncancelled run with a token that stamps every time the job looks at it; the
  longest stretch without a look is the worst cancel latency that run could have had (the time
  from the start to the first look and from the last look to the end are counted too).
* **latency**: runs cancelled from a timer thread at 25 %, 50 % and 75 % of the uncancelled run's
  wall time; the time from ``cancel()`` to the job's return (``JobCancelled`` raised and unwound,
  or the job finishing anyway when the cancel came after its last look).

Usage::

    python bench/bench_cancel.py SESSION.h5 [--jobs act-max,sae,...] [--folder /tmp/cancel_bench]

Each run works on a fresh copy of the session folder's files, so the session is not changed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.jobs import CancelToken, JobCancelled  # noqa: E402

CANCEL_AT = (0.25, 0.5, 0.75)


class StampingToken(CancelToken):
    """A cancel token that records when the job looked at it."""

    def __init__(self, where: bool = False) -> None:
        super().__init__()
        self.looks: list[float] = []
        self.places: list[str] = []
        self._where = where

    @property
    def cancelled(self) -> bool:  # type: ignore[override]
        self.looks.append(time.perf_counter())
        if self._where:  # the job's frame that looked (below the token's own frames)
            frames = [f for f in traceback.extract_stack()[:-1] if "core/jobs.py" not in f.filename and f.filename != __file__]
            self.places.append(f"{Path(frames[-1].filename).name}:{frames[-1].lineno}")
        return super().cancelled

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise JobCancelled("cancelled by the user")


def fresh_copy(source: Path, folder: Path) -> Path:
    """The session file and its sibling folders, copied into an empty ``folder``."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    stem = source.stem
    for item in source.parent.iterdir():
        if item.name.startswith(stem) and not item.name.endswith(".lock"):
            target = folder / item.name
            if item.is_dir():
                shutil.copytree(item, target)
            else:
                shutil.copy2(item, target)
    exports = folder / f"{stem}.exports"
    shutil.rmtree(exports, ignore_errors=True)  # exports rewrite every file each run
    return folder / source.name


def run_once(body: Callable[..., Any], path: Path, cancel_after: float | None,
             where: bool = False) -> dict[str, Any]:
    """Run ``body`` in a thread on the session at ``path``; cancel after ``cancel_after`` s."""
    from core.store.session import Session

    token = StampingToken(where)
    reports: list[float] = []
    outcome: dict[str, Any] = {}

    def work() -> None:
        session = Session.open(path)
        try:
            outcome["start"] = time.perf_counter()
            body(session, lambda _p: reports.append(time.perf_counter()), token)
            outcome["result"] = "finished"
        except JobCancelled:
            outcome["result"] = "cancelled"
        except Exception as exc:  # noqa: BLE001 (a bench row says what failed)
            outcome["result"] = f"failed: {type(exc).__name__}: {exc}"[:120]
        finally:
            outcome["end"] = time.perf_counter()
            session.close()

    thread = threading.Thread(target=work)
    thread.start()
    if cancel_after is not None:
        while "start" not in outcome and thread.is_alive():
            time.sleep(0.001)
        time.sleep(cancel_after)
        outcome["cancel"] = time.perf_counter()
        token.cancel()
    thread.join()
    start, end = outcome.get("start", 0.0), outcome["end"]
    edges = [start, *token.looks, end]
    outcome["wall"] = end - start
    gaps = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    outcome["max_gap"] = max(gaps)
    places = ["start", *token.places, "end"]
    worst = gaps.index(outcome["max_gap"])
    outcome["gap_at"] = f"{places[worst]} → {places[worst + 1]}" if where else ""
    outcome["looks"] = len(token.looks)
    if "cancel" in outcome:
        outcome["latency"] = end - outcome["cancel"]
        outcome["reports_after"] = sum(1 for t in reports if t > outcome["cancel"])
    return outcome


def bench(name: str, body: Callable[..., Any], source: Path, folder: Path, where: bool = False,
          gaps_only: bool = False) -> str:
    """One table row: uncancelled wall and max gap, then the latency of three cancels."""
    full = run_once(body, fresh_copy(source, folder), None, where)
    if full["result"] != "finished":
        return f"| {name} | {full['result']} | | | |"
    if where:
        print(f"  {name}: longest gap {full['max_gap'] * 1000:.0f} ms at {full['gap_at']}", flush=True)
    latencies = []
    for at in CANCEL_AT if not gaps_only else ():
        run = run_once(body, fresh_copy(source, folder), full["wall"] * at)
        if run["latency"] < 0:
            latencies.append("ended first")
            continue
        mark = "" if run["result"] == "cancelled" else f" ({run['result']})"
        latencies.append(f"{run['latency'] * 1000:.0f}{mark}")
    return (f"| {name} | {full['wall']:.2f} s | {full['looks']} | {full['max_gap'] * 1000:.0f} ms | "
            f"{' / '.join(latencies)} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("session", type=Path)
    parser.add_argument("--jobs", default="", help="comma-separated job kinds (default: all)")
    parser.add_argument("--gaps-only", action="store_true", help="only the uncancelled run")
    parser.add_argument("--where", action="store_true", help="print where the longest gap is")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/salve_cancel_bench"))
    args = parser.parse_args()
    from salve_tui.app.job_kinds import job_bodies

    jobs = job_bodies()
    import matplotlib.pyplot  # noqa: F401  (the TUI has these loaded by the time a job runs:
    import torchvision  # noqa: F401  its preloader builds the model; a cold import is not a gap)

    chosen = [j for j in args.jobs.split(",") if j] or list(jobs)
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores)")
    print("| job | uncancelled wall | looks at the token | max gap between looks | "
          "cancel → return at 25 / 50 / 75 % |")
    print("|---|---:|---:|---:|---:|")
    for name in chosen:
        print(bench(name, jobs[name], args.session, args.folder, args.where,
                    args.gaps_only), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    shutil.rmtree(args.folder, ignore_errors=True)


if __name__ == "__main__":
    main()
