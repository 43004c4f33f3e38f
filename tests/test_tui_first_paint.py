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


async def test_screen_css_is_parsed_before_the_key(synth_session_folder: Path) -> None:
    """The dashboard reads every screen's .tcss while idle: the key that first opens a screen
    then re-parses nothing (Textual did, ~25 ms, under that key)."""
    from test_tui_helpers import wait_for

    from salve_tui.app.app import SalveApp
    from salve_tui.app.screens.base import preparse_screen_css
    from salve_tui.app.screens.dashboard import DashboardScreen

    tcss = sorted((Path(__file__).resolve().parents[1] / "salve_tui/app/screens").glob("*.tcss"))
    app = SalveApp(sessions_folder=synth_session_folder, start_session="synth")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        # the dashboard's idle timer reads them all (the job log's was not read before)
        await wait_for(pilot, lambda: all(app.stylesheet.has_source(str(p), "") for p in tcss))
        assert len(tcss) >= 20 and preparse_screen_css(app) == 0  # nothing left to read
        reparsed = []
        original = app.stylesheet.reparse
        app.stylesheet.reparse = lambda: (reparsed.append(1), original())[1]  # type: ignore[method-assign]
        await pilot.press("l")  # the job log: its screen's .tcss was not read before
        await wait_for(pilot, lambda: type(app.screen).__name__ == "JobLogScreen")
        assert reparsed == []
