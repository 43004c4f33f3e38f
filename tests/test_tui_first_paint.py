"""Start-up: the first frame is drawn before h5py (the session store) is imported.

In a terminal, importing h5py (and numpy with it) took ~0.4 s of a cold ``salve-tui demo`` start
(issue 20): now the sessions screen paints first and the session opens right after that frame.
The check runs in a fresh interpreter (this test process has h5py loaded already).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import asyncio, json, sys
from salve_tui.app.app import SalveApp

class FirstFrame(SalveApp):
    frame = None  # (screen shown, h5py imported) at the first frame drawn

    def _display(self, screen, renderable):
        if renderable is not None and self.frame is None:
            self.frame = (type(screen).__name__, "h5py" in sys.modules)
        super()._display(screen, renderable)

async def main():
    app = FirstFrame(sessions_folder=sys.argv[1], start_session="synth")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        after = (type(app.screen).__name__, "h5py" in sys.modules)
    print(json.dumps({"first": app.frame, "after": after}))

asyncio.run(main())
"""


def test_first_frame_is_drawn_before_h5py_is_imported(synth_session_folder: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "SALVE_TUI_IMAGES": "halfblock"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(synth_session_folder.resolve())],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["first"] == ["SessionsScreen", False]  # painted without the session store
    assert seen["after"] == ["DashboardScreen", True]  # then the session opened as before


def test_start_probe_runs_the_child_before_the_open(tmp_path: Path) -> None:
    """``salve-tui SESSION`` probes the file in a thread while the app starts: after
    ``wait_probe`` the file is trusted, so the open itself starts no child process."""
    import h5py

    from core.store import probe
    from salve_tui.app.startprobe import start_probe, wait_probe

    path = tmp_path / "outside.h5"  # written here with h5py, not by the session store: untrusted
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=[1.0, 2.0])
    key = probe._key(path)
    assert key is not None and key not in probe._trusted
    start_probe(tmp_path / "missing.h5")  # no file: nothing to probe, nothing to wait for
    start_probe(path)
    wait_probe(tmp_path / "missing.h5")
    wait_probe(path)
    assert key in probe._trusted
