"""Notices a session screen lays over its content: what its first load is reading (with a
spinner and the time so far) and a warning when its stored results are out of date."""

from __future__ import annotations

import time

from rich.text import Text
from textual.timer import Timer
from textual.widgets import Static


class LoadingNotice(Static):
    """Covers a screen's content while its first :meth:`SessionScreen.load` runs, saying what."""

    DEFAULT_CSS = """
    LoadingNotice {
        position: absolute; offset: 0 3; width: 100%; height: 3; padding: 1 2;
        background: $panel; color: $text; text-style: bold; text-wrap: nowrap; text-overflow: ellipsis;
    }
    LoadingNotice.-hidden { display: none; }
    LoadingNotice.-error { color: $error; height: auto; text-wrap: wrap; }
    """
    SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, what: str) -> None:
        super().__init__(id="loading-notice", markup=False)
        self.what = what
        self.started = 0.0
        self._timer: Timer | None = None

    def _clock(self) -> float:
        return float(getattr(self.app, "clock", time.time)())  # the app's clock: tests freeze it

    def on_mount(self) -> None:
        self.started = self._clock()
        self._tick()
        self._timer = self.set_interval(0.2, self._tick)

    def _tick(self) -> None:
        elapsed = self._clock() - self.started
        spinner = self.SPINNER[int(elapsed * 5) % len(self.SPINNER)]
        self.update(Text.assemble(f"{spinner} loading {self.what}… ",
                                  (f"{elapsed:.0f} s" if elapsed >= 1 else "", "dim"),
                                  ("  esc goes back", "dim")))

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()

    def done(self) -> None:
        self._stop()
        self.remove_class("-error")
        self.add_class("-hidden")

    def failed(self, error: str, stale: bool = False) -> None:
        """Show why the load failed; ``stale``: over content that is now out of date."""
        self._stop()
        self.remove_class("-hidden")
        self.add_class("-error")
        self.update(f"out of date — could not reload {self.what}: {error}" if stale
                    else f"could not load {self.what}: {error}")


class StaleNotice(Static):
    """One warning line over a screen whose stored results were computed from an earlier run of
    a stage (``core.workflow.provenance``); hidden while they are current."""

    DEFAULT_CSS = """
    StaleNotice { height: auto; max-height: 3; padding: 0 1; color: $warning; text-style: bold; }
    StaleNotice.-hidden { display: none; }
    """

    def __init__(self) -> None:
        super().__init__(id="stale-notice", markup=False, classes="-hidden")

    def warn(self, text: str) -> None:
        self.update(text)
        self.set_class(not text, "-hidden")
