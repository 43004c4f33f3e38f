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
4. *Screens* (``--screens SESSION``, e.g. the demo session): key → first paint and key → content
   for the feature–class matrix, feature card, edit preview, α_crit and exports screens, idle
   (after the session's background load finished) and with a CPU-heavy job running, against the
   obvious design in the same run: ``load()`` called on the UI thread and no background preload
   (the shared caches cleared before each open, as on a screen's first open).
5. *Matrix at scale* (``--matrix 10x64,1000x16384``): a synthetic session with C classes and h
   features (only what the matrix screen reads); key → first paint and content of the matrix
   screen, and cursor key → the next frame, for the virtualised screen and, in the same run, the
   full-render screen of commit 38ddb26 (loaded from git) as the obvious design.
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


# --------------------------------------------------------------------------- screens

# (label, key on the screen it is opened from, that screen, the screen it opens, content ready?)
SCREENS = (
    ("feature–class matrix", "m", "dashboard", "MatrixScreen", lambda s: s.loaded),
    ("feature card", "enter", "matrix", "FeatureDetailScreen",
     lambda s: s.card is not None and s.card.feature == s.feature),
    ("edit preview (table)", "e", "dashboard", "EditPreviewScreen",
     lambda s: s.loaded and s.effect is not None),
    ("α_crit", "k", "dashboard", "AlphaCritScreen", lambda s: s.loaded),
    ("exports", "x", "dashboard", "ExportsScreen", lambda s: s.loaded),
)


class FrameClock:
    """Times of the frames the app hands its driver, per screen (``App._display`` is where a
    frame is written to the terminal; headless it is still called, then not written)."""

    def __init__(self, app) -> None:  # noqa: ANN001
        # (time, id of the screen): holding the screens themselves kept every screen the bench
        # opened alive, and the growing heap made the collector's full passes ever longer
        self.frames: list[tuple[float, int]] = []
        self.probe = None  # optional callable: its value is recorded with each frame (in `probed`)
        self.probed: list[tuple[float, object]] = []
        original = app._display

        def display(screen, renderable) -> None:  # noqa: ANN001
            if renderable is not None:
                now = time.perf_counter()
                self.frames.append((now, id(screen)))
                if self.probe is not None:
                    self.probed.append((now, self.probe()))
            original(screen, renderable)

        app._display = display

    def first_after(self, started: float, screen: object) -> float | None:
        return next((t - started for t, s in self.frames if t >= started and s == id(screen)), None)


def _obvious_design(app) -> None:  # noqa: ANN001
    """Patch ``app`` into the obvious design: no background preload, load() on the UI thread."""
    from salve_tui.app.screens.base import ScreenLoaded, SessionScreen

    app.shared.start = lambda _app, session: app.shared.clear()

    def reload_synchronously(self) -> None:  # noqa: ANN001
        self._load_generation += 1
        self.on_screen_loaded(ScreenLoaded(self.load(), self._load_generation))

    def mount_and_load(self) -> None:  # noqa: ANN001 (the pre-worker on_mount: no notice)
        self.salve.job_events.subscribe(self, self._job_event)
        self.refresh_from_session()

    SessionScreen.reload = reload_synchronously
    SessionScreen.on_mount = mount_and_load


def _clear_caches() -> None:
    from core.workflow.assets import clear_asset_cache
    from core.workflow.inputs import clear_input_cache
    from core.workflow.pipeline import _load_dataset_cached

    clear_input_cache()
    clear_asset_cache()
    _load_dataset_cached.cache_clear()


async def screen_latencies(folder: Path, name: str, job, opens: int, obvious: bool) -> dict[str, tuple]:
    """Per screen: key → first frame of the new screen, key → first frame with its content."""
    from textual import events

    from salve_tui.app.app import SalveApp
    from salve_tui.app.screens.base import SessionScreen

    original_reload, original_loaded = SessionScreen.reload, SessionScreen.on_screen_loaded
    original_mount = SessionScreen.on_mount

    def loaded_and_stamped(self, message) -> None:  # noqa: ANN001
        original_loaded(self, message)
        self._bench_shown_at = time.perf_counter()  # show() has drawn the content

    SessionScreen.on_screen_loaded = loaded_and_stamped
    app = SalveApp(sessions_folder=folder, start_session=name)
    if obvious:
        _obvious_design(app)
    clock = FrameClock(app)
    results: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label, *_ in SCREENS}
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            while type(app.screen).__name__ != "DashboardScreen":
                await pilot.pause(0.01)
            dashboard = app.screen
            if not obvious:
                while not app.shared.finished:  # "once the background load has finished"
                    await pilot.pause(0.05)
            if job is not None:
                app.start_job("bench load", job)
                await pilot.pause(0.5)

            async def open_screen(key: str, expect: str, ready, label: str | None) -> object:  # noqa: ANN001
                if obvious and label is not None:
                    _clear_caches()
                started = time.perf_counter()
                app._driver.send_message(events.Key(key, None))
                while type(app.screen).__name__ != expect or not ready(app.screen):
                    await asyncio.sleep(0.0005)
                screen = app.screen
                content_at = time.perf_counter()  # the content is in (polled every 0.5 ms)
                while not any(t >= content_at and s == id(screen) for t, s in clock.frames):
                    await asyncio.sleep(0.0005)  # the frame that shows the content
                if label is not None:
                    first = clock.first_after(started, screen)
                    content = next(t for t, s in clock.frames if t >= content_at and s == id(screen)) - started
                    results[label][0].append(first)
                    results[label][1].append(content)
                return screen

            for _ in range(opens):
                for label, key, origin, target, ready in SCREENS:
                    if origin == "matrix":
                        await open_screen("m", "MatrixScreen", lambda s: s.loaded, None)
                    await open_screen(key, target, ready, label)
                    while app.screen is not dashboard:
                        app.pop_screen()
                        await pilot.pause(0.05)
                    await pilot.pause(0.1)
            app.jobs.cancel()
            await app.jobs.wait()
    finally:
        SessionScreen.reload, SessionScreen.on_screen_loaded = original_reload, original_loaded
        SessionScreen.on_mount = original_mount
    return results


async def plain_screen_first_paint(opens: int, job=None) -> list[float]:  # noqa: ANN001
    """The floor on this machine: key → first frame of a screen with only Header, Static, Footer."""
    from textual import events
    from textual.app import App
    from textual.binding import Binding
    from textual.screen import Screen
    from textual.widgets import Footer, Header, Static

    class Plain(Screen):
        def compose(self):  # noqa: ANN202
            yield Header()
            yield Static("plain")
            yield Footer(compact=True)

    class PlainApp(App):
        BINDINGS = [Binding("m", "open", "Open")]  # noqa: RUF012

        def compose(self):  # noqa: ANN202
            yield Footer()

        def action_open(self) -> None:
            self.push_screen(Plain())

    app = PlainApp()
    clock = FrameClock(app)
    times = []
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        import threading

        from core.jobs import CancelToken

        token = CancelToken()
        if job is not None:  # the CPU-heavy job in a plain thread, as the app's worker runs it
            threading.Thread(target=job, args=(None, token), daemon=True).start()
        for _ in range(opens):
            started = time.perf_counter()
            app._driver.send_message(events.Key("m", None))
            while not isinstance(app.screen, Plain):
                await asyncio.sleep(0.0005)
            screen = app.screen
            while clock.first_after(started, screen) is None:
                await asyncio.sleep(0.0005)
            times.append(clock.first_after(started, screen))
            app.pop_screen()
            await pilot.pause(0.2)
        token.cancel()
    return times


def floor_rows(opens: int) -> None:
    print("| floor (same run) | background | first paint median | p95 | max |\n|---|---|---:|---:|---:|")
    for background, job in (("idle", None), ("torch job running", matmul_job)):
        f = _stats(asyncio.run(plain_screen_first_paint(opens, job)))
        print(f"| plain Textual screen (Header, Static, Footer) | {background} | {f[0]:.0f} ms | {f[1]:.0f} ms "
              f"| {f[2]:.0f} ms |", flush=True)
    print()


def screens_section(session: str, opens: int, obvious_too: bool = True) -> None:
    path = Path(session)
    if not path.suffix:
        path = ROOT / "sessions" / f"{session}.h5"
    folder, name = path.parent, path.stem
    print(f"## Screens: key → first paint / key → content (session {name}, 80×24, {opens} opens each)\n")
    floor_rows(max(opens, 10))
    print("| design | background | screen | first paint median | p95 | max | content median | p95 | max |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    designs = (("load() worker + preload", False), ("obvious: load() on UI thread", True))
    for design, obvious in designs if obvious_too else designs[:1]:
        for background, job in (("idle", None), ("torch job running", matmul_job)):
            results = asyncio.run(screen_latencies(folder, name, job, opens, obvious))
            for label, (first, content) in results.items():
                f, c = _stats(first), _stats(content)
                print(f"| {design} | {background} | {label} | {f[0]:.0f} ms | {f[1]:.0f} ms | {f[2]:.0f} ms "
                      f"| {c[0]:.0f} ms | {c[1]:.0f} ms | {c[2]:.0f} ms |", flush=True)


# --------------------------------------------------------------------------- large matrix (issue 13)

#: The full-render matrix screen before virtualisation, measured as the obvious design.
OBVIOUS_MATRIX_COMMIT = "38ddb26"


def write_matrix_session(folder: Path, classes: int, features: int, name: str = "matrix",
                         seed: int = 0, config=None) -> Path:  # noqa: ANN001 (SessionConfig)
    """A session with only what the matrix screen reads: ``rankings/class_means`` (C × h, float64
    like the pipeline's), ``rankings/dominant`` and ``class_names``, written with the Session API.
    Class c's dominant feature is ``(7 c) mod h`` (planted with a large |μ|, alternating sign)."""
    import numpy as np

    from core.config import demo_config
    from core.store.session import Session

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.h5"
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((classes, features)) * 0.1
    dominant = (7 * np.arange(classes)) % features
    M[np.arange(classes), dominant] = np.where(np.arange(classes) % 2 == 0, 5.0, -5.0)
    with Session.create(path, config or demo_config(name)) as session, session.transaction() as tx:
        tx.write_json("class_names", [f"class{c:04d}" for c in range(classes)])
        tx.write_array("rankings/class_means", M)
        tx.write_array("rankings/dominant", dominant.astype(np.int64))
        for stage in ("data", "backbone", "activations", "sae", "rankings"):
            tx.set_stage(stage, "done", "synthetic (bench_tui --matrix)")
    return path


def obvious_matrix_screen() -> type | None:
    """The matrix screen and heatmap of commit :data:`OBVIOUS_MATRIX_COMMIT` (every class a line
    of a screen-high widget, colours of the whole matrix precomputed per normalisation, the
    colour scale recomputed over the whole matrix on every line drawn), loaded from git."""
    import types

    def source(path: str) -> str | None:
        done = subprocess.run(["git", "show", f"{OBVIOUS_MATRIX_COMMIT}:{path}"], cwd=ROOT,
                              capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else None

    heatmap_src = source("salve_tui/app/widgets/heatmap.py")
    screen_src = source("salve_tui/app/screens/analysis_matrix.py")
    if heatmap_src is None or screen_src is None:
        return None
    heatmap = types.ModuleType("bench_obvious_heatmap")
    exec(compile(heatmap_src, "obvious heatmap.py", "exec"), heatmap.__dict__)  # noqa: S102
    sys.modules[heatmap.__name__] = heatmap
    screen_src = screen_src.replace("from salve_tui.app.widgets.heatmap import", "from bench_obvious_heatmap import")
    start = screen_src.index("@session_view(")
    screen_src = screen_src[:start] + screen_src[screen_src.index("class MatrixScreen"):]  # not registered
    screen = types.ModuleType("bench_obvious_matrix")
    sys.modules[screen.__name__] = screen
    exec(compile(screen_src, "obvious analysis_matrix.py", "exec"), screen.__dict__)  # noqa: S102
    return screen.MatrixScreen


MATRIX_KEYS = ("right", "down", "left", "up", "pagedown", "down", "pageup", "up")  # keys both designs have


async def _until(condition, what: str, timeout: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"bench: no {what} after {timeout:.0f} s")
        await asyncio.sleep(0.0005)


async def matrix_latencies(folder: Path, name: str, screen_class: type | None, opens: int,
                           presses: int) -> dict[str, list[float]]:
    """Key ``m`` → first frame / content frame of the matrix screen, then per cursor key → the
    first frame drawn after the cursor moved. ``screen_class`` replaces the registered screen."""
    import dataclasses

    from textual import events

    from salve_tui.app.app import SalveApp
    from salve_tui.app.preload import import_modules
    from salve_tui.app.screens.base import SessionScreen

    original_loaded = SessionScreen.on_screen_loaded

    def loaded_and_stamped(self, message) -> None:  # noqa: ANN001
        original_loaded(self, message)
        self._bench_shown_at = time.perf_counter()

    SessionScreen.on_screen_loaded = loaded_and_stamped
    app = SalveApp(sessions_folder=folder, start_session=name)
    if screen_class is not None:
        app.views = [dataclasses.replace(v, factory=screen_class) if v.name == "feature_class_matrix" else v
                     for v in app.views]
    # The synthetic session holds only the matrix: the background preload of activations, model
    # and test images has nothing to load (it would build the Shapes data set), so it is off.
    app.shared.start = lambda _app, session: None
    import_modules(None)  # what the preloader does first in the app: torch is imported by then
    clock = FrameClock(app)
    results: dict[str, list[float]] = {"first paint": [], "content": [], "cursor key": []}
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            while type(app.screen).__name__ != "DashboardScreen":
                await pilot.pause(0.01)
            dashboard = app.screen
            await pilot.pause(0.3)
            for _ in range(opens):
                started = time.perf_counter()
                app._driver.send_message(events.Key("m", None))
                await _until(lambda: type(app.screen).__name__ == "MatrixScreen" and app.screen.loaded,
                             "matrix content")
                screen = app.screen
                await _until(lambda screen=screen: any(t >= screen._bench_shown_at and s == id(screen)
                                                       for t, s in clock.frames), "content frame")
                results["first paint"].append(clock.first_after(started, screen))
                results["content"].append(next(t for t, s in clock.frames
                                                if t >= screen._bench_shown_at and s == id(screen)) - started)
                heatmap = screen.query_one("#matrix")
                await pilot.pause(0.05)
                clock.probe = lambda: heatmap.cursor  # noqa: B023 (the frame shows this cursor)
                for i in range(presses):
                    key = MATRIX_KEYS[i % len(MATRIX_KEYS)]
                    before = heatmap.cursor
                    started = time.perf_counter()
                    app._driver.send_message(events.Key(key, None))
                    await _until(lambda: heatmap.cursor != before, f"cursor move on {key}")  # noqa: B023

                    def shown() -> float | None:
                        return next((t - started for t, cursor in clock.probed  # noqa: B023
                                     if t >= started and cursor == heatmap.cursor), None)  # noqa: B023

                    await _until(lambda: shown() is not None, f"frame after {key}")  # noqa: B023
                    results["cursor key"].append(shown())
                    await pilot.pause(0.01)
                clock.probe = None
                while app.screen is not dashboard:
                    app.pop_screen()
                    await pilot.pause(0.05)
                await pilot.pause(0.1)
    finally:
        SessionScreen.on_screen_loaded = original_loaded
    return results


def matrix_section(sizes: list[tuple[int, int]], opens: int, presses: int) -> None:
    print(f"## Matrix screen at scale: key → first paint, content, cursor key → frame (80×24, "
          f"{opens} opens × {presses} cursor keys)\n")
    print("| C × h | design | first paint median | p95 | content median | p95 | cursor key median | p95 | max |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    obvious = obvious_matrix_screen()
    tmp = Path(tempfile.mkdtemp(prefix="bench-matrix-"))
    try:
        for classes, features in sizes:
            folder = tmp / f"{classes}x{features}"
            started = time.perf_counter()
            write_matrix_session(folder, classes, features)
            print(f"<!-- wrote the {classes}×{features} session in {time.perf_counter() - started:.1f} s -->")
            designs = [("virtualised (this version)", None)]
            if obvious is not None:
                designs.append((f"obvious: full render (commit {OBVIOUS_MATRIX_COMMIT})", obvious))
            for design, screen_class in designs:
                r = asyncio.run(matrix_latencies(folder, "matrix", screen_class, opens, presses))
                f, c, k = _stats(r["first paint"]), _stats(r["content"]), _stats(r["cursor key"])
                print(f"| {classes} × {features} | {design} | {f[0]:.0f} ms | {f[1]:.0f} ms | {c[0]:.0f} ms "
                      f"| {c[1]:.0f} ms | {k[0]:.1f} ms | {k[1]:.1f} ms | {k[2]:.1f} ms |", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if obvious is None:
        print(f"\n(commit {OBVIOUS_MATRIX_COMMIT} is not in this clone: the obvious design was not measured)")


def _sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        classes, _, features = item.lower().partition("x")
        sizes.append((int(classes), int(features)))
    return sizes


def _stats(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return statistics.median(ordered) * 1000, p95 * 1000, ordered[-1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--presses", type=int, default=40)
    parser.add_argument("--screens", metavar="SESSION", help="only the screens section, on SESSION")
    parser.add_argument("--opens", type=int, default=10, help="opens per screen (--screens, --matrix)")
    parser.add_argument("--skip-obvious", action="store_true",
                        help="--screens: only the app's design (the obvious one takes minutes)")
    parser.add_argument("--tmux", metavar="SESSION", type=Path,
                        help="only the tmux section: what a user sees on SESSION (bench/bench_tui_tmux.py)")
    parser.add_argument("--matrix", metavar="CxH[,CxH]", type=_sizes,
                        help="only the large-matrix section, e.g. 10x64,1000x16384")
    args = parser.parse_args()
    os.environ["SALVE_TUI_IMAGES"] = "halfblock"
    if args.tmux:
        from bench_tui_tmux import measure

        measure(args.tmux.resolve(), args.opens)
        return
    if args.matrix:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}\n")
        matrix_section(args.matrix, args.opens, args.presses)
        return
    if args.screens:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}\n")
        screens_section(args.screens, args.opens, not args.skip_obvious)
        return
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
