"""TUI responsiveness: time to the first screen, and key latency while a CPU-heavy job runs.

Run: ``.venv/bin/python bench/bench_tui.py [--presses 40]``. Prints markdown tables.

1. *Cold start*: ``python -m salve_tui`` in an 80×24 tmux pane, polled until the sessions table
   is on screen (what a user sees). Compared with the obvious eager design, which would import
   torch + torchvision (via core.workflow.pipeline's compute modules) before drawing anything.
2. *In-process start*: ``SalveApp.run_test`` from construction until the sessions screen is
   mounted with its rows.
3. *Key latency*: send ↓/↑ key events (as the terminal driver does) to the sessions table and time
   until the cursor moved, with no job,
   with a torch matmul loop in a job thread (how core jobs behave: the GIL is released inside
   kernels), and with a pure-Python loop (holds the GIL: worst case for a thread worker).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable


def _make_sessions(folder: Path, count: int = 3) -> None:
    from core.config import demo_config
    from core.store.session import Session

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        with Session.create(folder / f"bench{i}.h5", demo_config(f"bench{i}")):
            pass


def cold_start_tmux(folder: Path, runs: int) -> list[float] | None:
    """Seconds from spawning the process until the sessions list is visible in the pane."""
    if shutil.which("tmux") is None:
        return None
    times = []
    for run in range(runs):
        name = f"bench-tui-{os.getpid()}-{run}"
        command = f"{PYTHON} -m salve_tui --sessions-dir {folder}"
        started = time.perf_counter()
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "80", "-y", "24", "-c", str(ROOT),
                        f"SALVE_TUI_IMAGES=halfblock {command}"], check=True)
        try:
            while True:
                pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True,
                                      text=True).stdout
                if "bench0" in pane and "sessions in" in pane:
                    times.append(time.perf_counter() - started)
                    break
                if time.perf_counter() - started > 30:
                    raise RuntimeError("the sessions screen did not appear within 30 s:\n" + pane)
                time.sleep(0.01)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", name], check=False)
    return times


def import_seconds(statement: str, runs: int) -> list[float]:
    """Wall time of a fresh interpreter running ``statement`` (includes interpreter start-up)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([PYTHON, "-c", statement], check=True, cwd=ROOT)
        times.append(time.perf_counter() - started)
    return times


def torch_free_check() -> bool:
    code = ("import sys, salve_tui.app.app, salve_tui.app.screens.sessions; "
            "sys.exit(1 if 'torch' in sys.modules or 'torchvision' in sys.modules else 0)")
    return subprocess.run([PYTHON, "-c", code], cwd=ROOT).returncode == 0


async def in_process_start(folder: Path, runs: int) -> list[float]:
    from salve_tui.app.app import SalveApp
    from salve_tui.app.screens.sessions import SessionsScreen

    times = []
    for _ in range(runs):
        started = time.perf_counter()
        app = SalveApp(sessions_folder=folder)
        async with app.run_test(size=(80, 24)) as pilot:
            while not (isinstance(app.screen, SessionsScreen) and app.screen.rows):
                await pilot.pause(0.001)
            times.append(time.perf_counter() - started)
    return times


def matmul_job(progress, cancel) -> None:
    import torch

    torch.manual_seed(0)
    a = torch.randn(384, 384)
    while not cancel.cancelled:
        for _ in range(20):
            a = torch.tanh(a @ a)


def python_job(progress, cancel) -> None:
    total = 0
    while not cancel.cancelled:
        for i in range(100_000):
            total += i * i


async def key_latency(folder: Path, job, presses: int) -> list[float]:
    """Seconds from sending a key until the table cursor has moved (the key was handled)."""
    from textual import events
    from textual.widgets import DataTable

    from salve_tui.app.app import SalveApp

    app = SalveApp(sessions_folder=folder)
    latencies = []
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        if job is not None:
            app.start_job("bench", job)
            await pilot.pause(0.5)  # let the job get going
        table = app.screen.query_one(DataTable)
        for i in range(presses):
            key = "down" if i % 2 == 0 else "up"
            before = table.cursor_row
            started = time.perf_counter()
            # Sent the way the terminal driver delivers keys. (Pilot.press would also wait for the
            # *process* to go idle — up to 2 s while a job keeps a CPU busy — which is not latency.)
            app._driver.send_message(events.Key(key, None))
            while table.cursor_row == before:
                await asyncio.sleep(0.0005)
            latencies.append(time.perf_counter() - started)
            await pilot.pause(0.02)
        app.jobs.cancel()
        await app.jobs.wait()
    return latencies


def _row(label: str, values: list[float], scale: float = 1000.0, unit: str = "ms") -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return (f"| {label} | {len(values)} | {statistics.median(values) * scale:.1f} {unit} | "
            f"{p95 * scale:.1f} {unit} | {max(values) * scale:.1f} {unit} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--presses", type=int, default=40)
    args = parser.parse_args()
    os.environ["SALVE_TUI_IMAGES"] = "halfblock"
    tmp = Path(tempfile.mkdtemp(prefix="bench-tui-"))
    folder = tmp / "sessions"
    _make_sessions(folder)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print("## Time to the first screen\n")
    print("| measurement | runs | median | p95 | max |\n|---|---|---|---|---|")
    cold = cold_start_tmux(folder, args.runs)
    if cold is not None:
        print(_row("`python -m salve_tui` until the sessions list is visible (tmux 80×24)", cold, 1, "s"))
    print(_row("fresh interpreter: `import salve_tui.app.app`", import_seconds("import salve_tui.app.app", args.runs),
               1, "s"))
    print(_row("obvious eager design: fresh interpreter `import torch, torchvision` (extra, before any UI)",
               import_seconds("import torch, torchvision", args.runs), 1, "s"))
    print(_row("in-process `SalveApp.run_test` until the sessions screen has its rows",
               asyncio.run(in_process_start(folder, args.runs)), 1, "s"))
    print(f"\n`salve_tui.app.app` + sessions screen import torch: {'no' if torch_free_check() else 'YES'}\n")

    print("## Key-press latency (↓/↑ on the sessions table, until the cursor moved)\n")
    print("| background job | presses | median | p95 | max |\n|---|---|---|---|---|")
    for label, job in (("none", None), ("torch matmul loop (384², tanh) in a thread worker", matmul_job),
                       ("pure-Python loop holding the GIL", python_job)):
        print(_row(label, asyncio.run(key_latency(folder, job, args.presses))))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
