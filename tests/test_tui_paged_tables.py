"""Long tables page instead of filling thousands of DataTable rows on the UI thread.

:class:`Pager` arithmetic by hand, and the α_crit sample table driven with Pilot on the synthetic
session (α_crit computed by the core for every class): with a page of 7 rows the table holds
exactly rows ``[7p, 7p + 7)`` of the sorted list, ``]`` / ``[`` turn pages, the status line says
which rows are shown, and Enter opens the sample under the cursor on the current page.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_analysis import synth_app
from test_tui_helpers import wait_for
from textual.widgets import DataTable, Static

from core.store.session import Session
from core.workflow.alpha_crit import run_alpha_crit
from salve_tui.app.screens.analysis_alpha_crit import AlphaCritScreen, SampleSaliencyScreen
from salve_tui.app.screens.analysis_shared import Pager
from salve_tui.app.screens.dashboard import DashboardScreen

SIZE = (80, 24)


def test_pager_pages_by_hand() -> None:
    pager = Pager(total=1000, size=200)
    assert (pager.pages, pager.start, pager.stop) == (5, 0, 200)
    assert pager.label("classes") == "classes 1–200/1000 [ ]"
    assert pager.turn(1) and (pager.start, pager.stop) == (200, 400)
    assert pager.turn(10) and pager.page == 4 and (pager.start, pager.stop) == (800, 1000)
    assert not pager.turn(1)  # already on the last page
    pager.show_index(399)
    assert pager.page == 1
    pager.set_total(450)  # fewer rows: the page is clamped, the last one is short
    assert (pager.pages, pager.page) == (3, 1)
    assert pager.turn(1) and (pager.start, pager.stop) == (400, 450)
    assert Pager(total=10, size=200).label() == ""  # one page: nothing to say
    assert Pager(total=0).pages == 1 and Pager(total=0).stop == 0


@pytest.fixture
def crit_folder(synth_session_folder: Path) -> Path:
    """The synthetic session with α_crit computed by the core for every class."""
    with Session.open(synth_session_folder / "synth.h5") as session:
        run_alpha_crit(session)
    return synth_session_folder


def row_keys(table: DataTable) -> list[str]:
    return [str(key.value) for key in table.rows]


def expected_keys(screen: AlphaCritScreen, start: int, stop: int) -> list[str]:
    return [f"{r['class_index']}:{r['index']}" for r in screen.rows[start:stop]]


async def test_alpha_crit_samples_page(crit_folder: Path) -> None:
    app = synth_app(crit_folder)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, AlphaCritScreen) and app.screen.loaded,
                       what="α_crit")
        crit = app.screen
        samples = crit.query_one("#crit-samples", DataTable)
        total = len(crit.rows)
        assert total > 14 and len(samples.rows) == total  # under one page of 200: every row
        crit.sample_pager.size = 7
        crit._fill_samples()
        assert row_keys(samples) == expected_keys(crit, 0, 7)
        status = str(crit.query_one("#crit-status", Static).render())
        assert f"{total} samples · rows 1–7/{total} [ ] · all classes" in status

        assert crit.query_one("#crit-summary", DataTable).has_focus  # as the screen opens
        await pilot.press("right_square_bracket")  # one page of classes: ] pages the samples
        assert row_keys(samples) == expected_keys(crit, 7, 14)
        await pilot.press("left_square_bracket")
        assert row_keys(samples) == expected_keys(crit, 0, 7)
        samples.focus()
        await pilot.press("right_square_bracket")
        assert row_keys(samples) == expected_keys(crit, 7, 14)
        assert f"rows 8–14/{total}" in str(crit.query_one("#crit-status", Static).render())
        await pilot.press("down", "enter")  # the 2nd row of page 2 is sorted row 8
        await wait_for(pilot, lambda: isinstance(app.screen, SampleSaliencyScreen), what="sample")
        assert app.screen.sample == int(crit.rows[8]["index"])
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is crit)

        await pilot.press("left_square_bracket", "left_square_bracket")  # clamped at the first page
        assert row_keys(samples) == expected_keys(crit, 0, 7)
        await pilot.press("s")  # a new sort starts again at the first page of the new order
        assert crit.sample_pager.page == 0 and row_keys(samples) == expected_keys(crit, 0, 7)


def test_alpha_crit_paged_status_is_not_cut_at_80_columns(snap_compare, crit_folder: Path) -> None:
    """Page 2 of the samples: count, rows, scope, sort and ⏎ Grad-FAM are all on screen at 80
    columns (the status said "sorted by" and was cut with "…" before ``⏎``; a longer one, with a
    class name and six-digit counts, wraps onto a second line)."""
    async def run(pilot) -> None:  # noqa: ANN001
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen), what="dashboard")
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, AlphaCritScreen) and pilot.app.screen.loaded,
                       what="α_crit")
        crit = pilot.app.screen
        crit.sample_pager.size = 7
        crit._fill_samples()
        crit.query_one("#crit-samples", DataTable).focus()
        await pilot.press("right_square_bracket")
        status = str(crit.query_one("#crit-status", Static).render())
        assert status == f"{len(crit.rows)} samples · rows 8–14/{len(crit.rows)} [ ] · all classes · by α analyt ↑ · ⏎ Grad-FAM"
        await pilot.pause(0.2)

    assert snap_compare(synth_app(crit_folder), terminal_size=SIZE, run_before=run)
