"""Every text fits or wraps: paths keep their file names, labels show "…" when cut, the edit
header states the step + really takes, parameters are named in words and ranges run low to high,
the edit stack shows its mark, a rerun names the results it makes stale, and a terminal below
80×24 gets one notice instead of cut text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_tui_analysis import SYNTH_NAMES, synth_app
from test_tui_helpers import screen_text, wait_for
from textual.widgets import DataTable, Static

from core.store.session import Session
from salve_tui.app.format import cut_label, elide_path
from salve_tui.app.screens.analysis_confusion import confusion_pair_text
from salve_tui.app.screens.analysis_edit import EditPreviewScreen, confusion_text, nice_step
from salve_tui.app.screens.analysis_edits import EditStackScreen
from salve_tui.app.screens.dashboard import DashboardScreen, results_made_stale
from salve_tui.app.widgets.chrome import TooSmallNotice
from salve_tui.app.widgets.selectivity import panel_lines

LONG = "figures/heatmaps/gradfam_sample-11_feature-31_layer3.png"


def test_paths_keep_their_file_name() -> None:
    for width in (30, 45, 60):
        shown = elide_path(LONG, width)
        assert len(shown) <= width
        assert shown.endswith(".png")
    assert elide_path(LONG, 45).endswith("/gradfam_sample-11_feature-31_layer3.png")
    assert elide_path(LONG, 45).startswith("fi") and "…" in elide_path(LONG, 45)
    assert elide_path(LONG, 100) == LONG


def test_cut_labels_say_so() -> None:
    assert cut_label("triangle", 6) == "trian…" and cut_label("star", 6) == "star"
    before = np.diag([4] * 10)
    text = confusion_text(before, before, list(SYNTH_NAMES), 0, width=60).plain
    assert "hourgl " not in text and "triang " not in text and "…" in text
    # the edit preview's columns: numbered like its rows, not "ci… sq… … cr…" (circle? crescent?)
    assert text.splitlines()[1].split() == [str(j) for j in range(10)]
    assert text.splitlines()[2].startswith("0 circle ")
    pair = confusion_pair_text(before, before, list(SYNTH_NAMES), 0, width=200).plain
    assert "hourgla" not in pair.replace("hourglass", "")  # whole or with "…", never bare-cut


def test_strength_steps_are_round_numbers() -> None:
    assert [nice_step(x) for x in (0.1046, 0.01046, 2.5, 0.3, 7.0)] == [0.1, 0.01, 2.0, 0.2, 5.0]


def test_rome_selectivity_is_in_words_and_low_to_high() -> None:
    report = {"param_name": "target_value", "selective_window": [(3.04, -1.72)],
              "first_suppressed": None, "controls": None}
    assert panel_lines(report)[0] == "selective logit target -1.72 to 3.04"


async def test_edit_header_states_the_step_plus_takes(synth_session_folder: Path) -> None:
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditPreviewScreen) and app.screen.curve is not None,
                       what="edit curve")
        edit = app.screen
        await pilot.pause(0.1)
        header = str(edit.query_one("#edit-settings", Static).render())
        coarse = float(header.split("(±")[1].split("/")[0])
        assert coarse == edit.steps()[0]
        start = edit.alpha
        await pilot.press("plus")
        assert edit.alpha == round(start + coarse, 12)
        assert f"={edit.alpha:.4g}" in str(edit.query_one("#edit-settings", Static).render())


async def test_marked_edit_is_visible_in_its_row(synth_session_folder: Path) -> None:
    from core.control.spec import EditSpec
    from core.workflow.edits import record_edit

    with Session.open(synth_session_folder / "synth.h5") as session:
        record_edit(session, EditSpec((1,), "suppress", 1.0))
        record_edit(session, EditSpec((7,), "suppress", 2.0))
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, EditStackScreen) and app.screen.stack is not None,
                       what="edit stack")
        await pilot.press("v")
        table = app.screen.query_one(DataTable)
        row = table.get_row_at(table.cursor_row)
        assert "◆" in "".join(str(cell) for cell in row)
        assert "marked ◆" in str(app.screen.query_one("#stack-status", Static).render())


def test_rerun_names_the_results_it_makes_stale(synth_session_folder: Path) -> None:
    from core.workflow.alpha_crit import run_alpha_crit

    with Session.open(synth_session_folder / "synth.h5") as session:
        assert results_made_stale(session, ["sae", "rankings"]) == []
        run_alpha_crit(session, target_class=[0, 1])
        assert results_made_stale(session, ["sae", "rankings"]) == ["2 α_crit results"]
        assert results_made_stale(session, ["data"]) == []  # α_crit does not read the data stage


async def test_a_small_terminal_gets_one_notice(synth_session_folder: Path) -> None:
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(40, 12)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        notice = app.screen.query_one(TooSmallNotice)
        assert notice.display and "needs at least 80×24" in str(notice.render())
        assert "40×12" in str(notice.render())
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert not app.screen.query_one(TooSmallNotice).display
        await pilot.resize_terminal(79, 30)
        await pilot.pause()
        assert app.screen.has_class("-too-small")
        await wait_for(pilot, lambda: app.screen.query_one(TooSmallNotice).display, timeout=5,
                       what="notice again")


async def test_edit_preview_panel_shows_every_selectivity_line_at_80_columns(
        synth_session_folder: Path) -> None:
    """The panel was capped at 3 rows: its wrapped side-effect line pushed the controls off."""
    from salve_tui.app.widgets.selectivity import SelectivityPanel

    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditPreviewScreen), what="edit preview")
        panel = app.screen.query_one(SelectivityPanel)
        await wait_for(pilot, lambda: getattr(panel, "report", None) is not None, what="the report")
        await pilot.pause(0.1)
        shown = " ".join(screen_text(app).split())
        for line in panel_lines(panel.report):
            assert " ".join(line.split()) in shown, line
