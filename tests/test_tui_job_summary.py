"""The header's job summary: deterministic for a job that has only just started (snapshots of a
busy screen drew "0s" or "1s" depending on the machine's load), a clock once a start is slow."""

from __future__ import annotations

from types import SimpleNamespace

from core.jobs import Progress
from salve_tui.app.widgets.chrome import STARTING_CLOCK_AFTER_S, job_summary


def job(elapsed: float, latest: Progress | None = None) -> SimpleNamespace:
    return SimpleNamespace(name="run all", cancelling=False, latest=latest, elapsed=elapsed)


def test_a_job_that_just_started_shows_no_clock() -> None:
    assert job_summary(job(0.3)).plain == "run all starting…"
    assert job_summary(job(STARTING_CLOCK_AFTER_S - 0.01)).plain == "run all starting…"


def test_a_slow_start_shows_its_elapsed_time() -> None:
    assert job_summary(job(65.2)).plain == "run all starting… 1m05s"


def test_progress_shows_bar_percent_and_eta() -> None:
    progress = Progress("sae", 25, 100)  # no start time: no ETA yet
    assert job_summary(job(3.0, progress)).plain.endswith(" 25% ETA …")
