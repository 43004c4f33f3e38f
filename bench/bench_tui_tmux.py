"""What a user sees in a real terminal: ``salve-tui SESSION`` in a tmux pane, keys sent with
``tmux send-keys`` and the pane polled with ``capture-pane`` (every ~10 ms).

Run: ``.venv/bin/python bench/bench_tui.py --tmux SESSION [--opens 10]`` (or this file directly).

For each terminal size (80×24, 200×60), p95 over ``--opens``:

* start → first paint: process spawned until the pane shows anything; start → dashboard: until
  the pipeline dashboard (its header and stage table) is drawn — not the sessions list, which
  also names every stage;
* for each screen key (from the dashboard; the feature card from the matrix with Enter):
  key → first paint (the pane changed) and key → settled (the screen's marker is shown, no
  "loading" notice is left, and the pane did not change for 3 polls; the time is that of the
  first of those polls, so waiting for stability is not counted). The feature card also gets
  key → numbers and first row (its "▲ highest u_k" row shown, nothing loading: issue 20's
  measure for it, its 24 thumbnails may still fill in); its settled row waits for them too.

The pane is text, so "first paint" is the first frame tmux holds, which includes the terminal's
own drawing; the numbers are upper bounds of what Textual itself takes.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The code tree that runs (SALVE_BENCH_ROOT=/other/checkout compares another commit in the same run).
ROOT = Path(os.environ.get("SALVE_BENCH_ROOT") or Path(__file__).resolve().parents[1])
PYTHON = sys.executable
POLL_S = 0.01
STABLE_POLLS = 3
TIMEOUT_S = 30.0
SIZES = ((80, 24), (200, 60))
TARGETS = {"start": 0.5, "first": 0.1, "settled": 1.0}


@dataclass(frozen=True)
class ScreenKey:
    label: str
    keys: tuple[str, ...]  # sent from the dashboard; the last one is timed
    marker: str  # text the settled screen shows
    back: tuple[str, ...] = ("Escape",)
    # What issue 20 times for a screen that fills in progressively: the marker shown, the rest
    # may still come ("" = none; the pane then counts only once it is steady).
    progressive: str = ""


SCREENS = (
    ScreenKey("feature–class matrix (m)", ("m",), "classes ×"),
    ScreenKey("feature card (m, Enter)", ("m", "Enter"), "highest u_", ("Escape", "Escape"),
              "numbers and first row"),
    ScreenKey("edit preview (e)", ("e",), "overall test accuracy"),
    ScreenKey("α_crit (k)", ("k",), "samples"),
    ScreenKey("exports (x)", ("x",), "export folder:"),
    ScreenKey("SAE training (t)", ("t",), "explained variance"),
    ScreenKey("edit stack (s)", ("s",), "worst class"),
    ScreenKey("job log (l)", ("l",), "job(s) logged"),
)


def on_dashboard(text: str) -> bool:
    """The pipeline dashboard is drawn (its header; the sessions list also names every stage)."""
    return "Pipeline dashboard" in text and "rankings" in text


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def pane(name: str) -> str:
    return tmux("capture-pane", "-p", "-t", name)


def wait_until(name: str, done, since: float) -> float:  # noqa: ANN001 (pane text -> bool)
    """Seconds from ``since`` until ``done(pane)``; raises after :data:`TIMEOUT_S`."""
    while True:
        text = pane(name)
        now = time.perf_counter()
        if done(text):
            return now - since
        if now - since > TIMEOUT_S:
            raise RuntimeError(f"gave up after {TIMEOUT_S:.0f} s; the pane shows:\n{text}")
        time.sleep(POLL_S)


def wait_settled(name: str, marker: str, since: float) -> float:
    """Seconds until the marker is shown, nothing says "loading" and the pane is stable."""
    return wait_content(name, marker, since)[1]


def wait_content(name: str, marker: str, since: float) -> tuple[float, float]:
    """(seconds until the marker is first shown with nothing saying "loading", seconds until
    that is so and the pane is stable)."""
    last, first_same, same, shown = None, 0.0, 0, None
    while True:
        text = pane(name)
        now = time.perf_counter()
        ready = marker in text and "loading" not in text
        if ready and shown is None:
            shown = now - since
        if ready and text == last:
            same += 1
            if same >= STABLE_POLLS:
                return shown, first_same - since
        else:
            same, first_same = (1, now) if ready else (0, 0.0)
        last = text
        if now - since > TIMEOUT_S:
            raise RuntimeError(f"'{marker}' never settled within {TIMEOUT_S:.0f} s:\n{text}")
        time.sleep(POLL_S)


def start(name: str, session: Path, size: tuple[int, int]) -> tuple[float, float]:
    """(start → first paint, start → dashboard) of a fresh ``salve-tui SESSION``."""
    command = (f"SALVE_TUI_IMAGES=halfblock PYTHONPATH={ROOT} {PYTHON} -m salve_tui {session.stem} "
               f"--sessions-dir {session.parent}")
    started = time.perf_counter()
    tmux("new-session", "-d", "-s", name, "-x", str(size[0]), "-y", str(size[1]), "-c", str(ROOT), command)
    first = wait_until(name, lambda text: text.strip() != "", started)
    dashboard = wait_until(name, on_dashboard, started)
    return first, dashboard


def open_screen(name: str, screen: ScreenKey) -> tuple[float, float, float]:
    """(key → first paint, key → content shown, key → settled) of one open, then back to the
    dashboard."""
    for key in screen.keys[:-1]:  # e.g. the matrix before its feature card: drawn and steady
        shown = pane(name)
        tmux("send-keys", "-t", name, key)
        wait_until(name, lambda text, shown=shown: text != shown, time.perf_counter())
        wait_settled(name, "", time.perf_counter())
    wait_settled(name, "", time.perf_counter())  # a steady pane first
    before = pane(name)
    sent = time.perf_counter()
    tmux("send-keys", "-t", name, screen.keys[-1])
    first = wait_until(name, lambda text: text != before, sent)
    shown, settled = wait_content(name, screen.marker, sent)
    for key in screen.back:
        tmux("send-keys", "-t", name, key)
        time.sleep(0.2)
    wait_until(name, on_dashboard, time.perf_counter())
    return first, shown, settled


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def row(label: str, values: list[float], target: float) -> str:
    ms = [1000 * v for v in values]
    verdict = "✓" if p95(values) <= target else "✗"
    return (f"| {label} | {len(values)} | {statistics.median(ms):.0f} ms | {1000 * p95(values):.0f} ms | "
            f"{max(ms):.0f} ms | ≤ {1000 * target:.0f} ms {verdict} |")


def measure(session: Path, opens: int) -> None:
    if shutil.which("tmux") is None:
        print("tmux is not installed: nothing measured")
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, code from {ROOT}, load average "
          f"{os.getloadavg()[0]:.1f} (1 min) at the start\n")
    holder = f"bench-tmux-{os.getpid()}-hold"  # keeps the tmux server up between the runs
    tmux("new-session", "-d", "-s", holder, "sleep 3600")
    try:
        for size in SIZES:
            measure_size(session, size, opens)
    finally:
        tmux("kill-session", "-t", holder)
    print(f"\nload average {os.getloadavg()[0]:.1f} (1 min) at the end")


def measure_size(session: Path, size: tuple[int, int], opens: int) -> None:
    """One terminal size: the start table rows, then every screen's rows."""
    print(f"\n### {size[0]}×{size[1]}, session '{session.stem}'\n")
    print("| measurement | runs | median | p95 | max | target (p95) |\n|---|---|---|---|---|---|")
    firsts, dashboards = [], []
    for run in range(opens):
        name = f"bench-tmux-{os.getpid()}-{run}"
        try:
            first, dashboard = start(name, session, size)
        finally:
            tmux("kill-session", "-t", name)
        firsts.append(first)
        dashboards.append(dashboard)
    print(row("start → first paint", firsts, TARGETS["start"]))
    print(row("start → dashboard drawn", dashboards, TARGETS["start"]))
    name = f"bench-tmux-{os.getpid()}-screens"
    try:
        start(name, session, size)
        time.sleep(2.0)  # the session's shared data loads in the background after the dashboard
        for screen in SCREENS:
            results = [open_screen(name, screen) for _ in range(opens)]
            print(row(f"{screen.label}: key → first paint", [r[0] for r in results], TARGETS["first"]))
            if screen.progressive:
                print(row(f"{screen.label}: key → {screen.progressive}", [r[1] for r in results],
                          TARGETS["settled"]))
            print(row(f"{screen.label}: key → settled", [r[2] for r in results], TARGETS["settled"]))
    finally:
        tmux("kill-session", "-t", name)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("session", type=Path, help="path of a built session (.h5)")
    parser.add_argument("--opens", type=int, default=10)
    args = parser.parse_args()
    measure(args.session.resolve(), args.opens)
