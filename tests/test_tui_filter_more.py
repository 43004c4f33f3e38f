"""``/`` on the other long lists: help (searchable), the edit stack, the seed-robustness classes
and the class lists of the methods screen and the α explorer. Typing narrows at once; esc in
the field shows every row again."""

from __future__ import annotations

from pathlib import Path

from test_tui_analyses import open_view, save_handmade_robustness
from test_tui_analysis import SYNTH_NAMES, synth_app
from test_tui_helpers import wait_for
from textual.widgets import DataTable, Static

from core.store.session import Session
from salve_tui.app.screens.analysis_alpha_explorer import AlphaExplorerScreen
from salve_tui.app.screens.analysis_edits import EditStackScreen
from salve_tui.app.screens.analysis_methods import MethodsScreen
from salve_tui.app.screens.analysis_robustness import RobustnessScreen
from salve_tui.app.screens.help import HelpScreen


def rendered(widget: Static) -> str:
    from rich.console import Console

    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(widget.content)
    return console.export_text()


def first_cells(table: DataTable) -> list[str]:
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


async def test_help_search_keeps_only_matching_keys_and_views(synth_session_folder: Path) -> None:
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_view(pilot, "o", MethodsScreen)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        help_screen = app.screen
        assert "Command palette" in rendered(help_screen.query_one("#help-global", Static))
        await pilot.press("slash", *"quit")  # q typed in the field does not close help
        assert isinstance(app.screen, HelpScreen)
        global_keys = rendered(help_screen.query_one("#help-global", Static))
        assert "Quit" in global_keys and "Command palette" not in global_keys
        assert help_screen.query_one("#help-views").has_class("-empty")  # no view says "quit"
        await pilot.press("backspace", "backspace", "backspace", "backspace", *"stack")
        views = rendered(help_screen.query_one("#help-views", Static))
        assert "Edit stack" in views and "Exports" not in views
        await pilot.press("enter", "s")  # the filter kept, the listed view's key opens it
        await wait_for(pilot, lambda: isinstance(app.screen, EditStackScreen), what="edit stack")


async def test_edit_stack_filter(synth_session_folder: Path) -> None:
    from core.workflow.edits import build_spec, record_edit
    from core.workflow.inputs import load_inputs

    with Session.open(synth_session_folder / "synth.h5") as session:
        inputs = load_inputs(session)
        for c in (1, 2, 3):  # suppress square, triangle, star (each its own feature 6c+1)
            record_edit(session, build_spec(inputs, "salve", None, c, "suppress", 2.0))
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, "s", EditStackScreen)
        await wait_for(pilot, lambda: screen.stack is not None, what="the stack")
        table = screen.query_one(DataTable)
        assert first_cells(table) == ["1", "2", "3"]
        await pilot.press("slash", *"triangle")
        assert first_cells(table) == ["2"]
        assert screen.highlighted() is not None and screen.highlighted().number == 2
        assert "1 match 'triangle'" in rendered(screen.query_one("#stack-status", Static))
        await pilot.press("escape")
        assert first_cells(table) == ["1", "2", "3"]


async def test_robustness_class_filter(synth_session_folder: Path) -> None:
    save_handmade_robustness(synth_session_folder)  # curves of circle, square, triangle
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, "n", RobustnessScreen)
        await wait_for(pilot, lambda: bool(screen.curves), what="the curves")
        table = screen.query_one(DataTable)
        assert first_cells(table) == ["circle", "square", "triangle"]
        await pilot.press("slash", *"squ")
        assert first_cells(table) == ["square"] and screen.target == 1
        await pilot.press("escape")
        assert len(first_cells(table)) == 3


async def test_class_lists_of_methods_and_explorer_filter(synth_session_folder: Path) -> None:
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        for key, kind in (("o", MethodsScreen), ("j", AlphaExplorerScreen)):
            screen = await open_view(pilot, key, kind)
            await wait_for(pilot, lambda s=screen: s.inputs is not None, what=kind.__name__)
            table = screen.query_one(f"#{screen.TABLE}", DataTable)
            assert table.row_count == min(len(SYNTH_NAMES), screen.class_pager.size)
            await pilot.press("slash", *"ar")
            assert [str(c).split()[0] for c in first_cells(table)] == ["square", "star", "heart", "arrow"]
            await pilot.press("enter", "down")
            await wait_for(pilot, lambda s=screen: s.target_class == SYNTH_NAMES.index("star"),
                           what="the class under the cursor")
            await pilot.press("escape")  # leaves the screen: the filter is closed already
            await pilot.pause()


async def test_exports_folder_list_filter(synth_session_folder: Path) -> None:
    from salve_tui.app.screens.analysis_exports import ExportsScreen

    exports = synth_session_folder / "synth.exports"
    for name in ("figures/curve_c0.png", "figures/matrix.png", "tables/alpha_crit.csv"):
        (exports / name).parent.mkdir(parents=True, exist_ok=True)
        (exports / name).write_bytes(b"x")
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, "x", ExportsScreen)
        await wait_for(pilot, lambda: screen.listing is not None, what="the export folder")
        files = screen.query_one("#exports-files", Static)
        assert all(n in rendered(files) for n in ("curve_c0.png", "matrix.png", "alpha_crit.csv"))
        await pilot.press("slash", *"figures")
        shown = rendered(files)
        assert "curve_c0.png" in shown and "matrix.png" in shown and "alpha_crit.csv" not in shown
        assert "2 file(s) match 'figures'" in shown
        await pilot.press("escape")
        assert "alpha_crit.csv" in rendered(files)
