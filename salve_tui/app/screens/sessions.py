"""The first screen: every session in the sessions folder, with its model, data and stage states."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from core.store.exports_cleanup import plan_exports
from core.store.session import (
    PIPELINE_STAGES,
    SessionError,
    delete_session,
    exports_dir,
    list_sessions,
    session_bytes,
)
from core.workflow.pipeline import effective_states
from salve_tui.app.format import STAGE_GLYPHS, STAGE_LEGEND, format_timestamp, stage_glyphs
from salve_tui.app.screens.analysis_shared import PAGE_BINDINGS, Pager, cursor_index, fill_page
from salve_tui.app.screens.base import SalveScreen
from salve_tui.app.screens.confirm import ConfirmModal
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader
from salve_tui.app.widgets.filter import FILTER_BINDING, FilterBar, matches


class SessionTable(DataTable):
    """Row table whose Enter is described in the footer (DataTable hides its own)."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("enter", "select_cursor", "Open")]


class SessionsScreen(SalveScreen):
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    SCREEN_TITLE = "Sessions"
    BREADCRUMB_ROOT = True
    HELP_TEXT = (
        "Every session file (*.h5) in the sessions folder. A session remembers its settings and "
        "every finished step, so opening it resumes where it stopped. Stages, left to right: "
        "data, backbone, activations, SAE, rankings. A long list is shown a page at a time: "
        "[ and ] turn the page (the line above the table says which rows)."
    )
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("n", "new", "New"),
        Binding("d", "delete", "Delete"),
        Binding("r", "refresh", "Refresh"),
        FILTER_BINDING,
        *PAGE_BINDINGS,
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []  # the shown rows: all, or those matching the filter
        self.all_rows: list[dict[str, Any]] = []
        self.filter_text = ""
        self.pager = Pager()

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static(id="sessions-folder", markup=False)
        yield FilterBar()
        yield SessionTable(id="sessions-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="session-detail", markup=False)
        yield Static(Text(f"stages D B A S R: {STAGE_LEGEND}", style="bright_black"), id="legend")
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "sessions"
        table = self.query_one(SessionTable)
        table.add_column("name", key="name", width=18)
        table.add_column("model", key="model", width=10)
        table.add_column("data", key="data", width=11)
        table.add_column("DBASR", key="stages", width=5)
        table.add_column("last change", key="updated", width=16)
        self.action_refresh()
        table.focus()

    @property
    def folder(self) -> Path:
        return self.salve.sessions_folder

    def action_refresh(self) -> None:
        """Re-read the folder; a broken file becomes a row with its error, not a crash."""
        previous = self.selected_row()
        self.all_rows = list_sessions(self.folder)
        self.rows = [row for row in self.all_rows
                     if matches(self.filter_text, row["name"], row.get("model", ""), row.get("dataset", ""))]
        self.pager.set_total(len(self.rows))
        cursor = 0
        if previous is not None:
            cursor = next((i for i, row in enumerate(self.rows) if row["path"] == previous["path"]), 0)
            self.pager.show_index(cursor)
        self._fill(cursor)

    def apply_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self.action_refresh()

    def _add_row(self, index: int) -> None:
        row = self.rows[index]
        table = self.query_one(SessionTable)
        if row.get("error"):
            table.add_row(Text(row["name"], style="red"), Text("unreadable", style="red"), "", "",
                          "", key=row["path"])
        else:
            table.add_row(row["name"], row["model"], row["dataset"],
                          stage_glyphs(effective_states(row["stages"]), PIPELINE_STAGES),
                          format_timestamp(row["updated"]), key=row["path"])

    def _fill(self, cursor: int | None = None) -> None:
        """The table shows one page of the sessions; the line above it says which."""
        fill_page(self.query_one(SessionTable), self.pager, self._add_row, cursor)
        count = len(self.rows)
        if self.filter_text:
            count_text = f"{count} of {len(self.all_rows)} sessions match '{self.filter_text}'"
        else:
            count_text = f"{count} session{'s' if count != 1 else ''}"
        pages = self.pager.label("rows")  # before the folder, which may be cut at 80 columns
        folder_text = (f"{count_text}{' · ' + pages + ' ·' if pages else ''}"
                       f" in {self.folder}/")
        if not count and not self.filter_text:
            folder_text += "  — press n to create one"
        self.query_one("#sessions-folder", Static).update(folder_text)
        self._show_detail()

    def action_page(self, step: int) -> None:
        if self.pager.turn(step):
            self._fill(self.pager.start)

    def selected_row(self) -> dict[str, Any] | None:
        index = cursor_index(self.query_one(SessionTable), self.pager)
        return None if index is None or index >= len(self.rows) else self.rows[index]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        row = self.selected_row()
        detail = self.query_one("#session-detail", Static)
        if row is None:
            detail.update("")
        elif row.get("error"):
            detail.update(Text(f"cannot read {row['path']}: {row['error']}", style="red"))
        else:
            text = Text(f"{row['path']}\n")
            states = effective_states(row["stages"])
            for stage in PIPELINE_STAGES:
                state = states[stage]
                glyph, colour = STAGE_GLYPHS.get(state, ("?", "red"))
                text.append(f"{stage} ", style="bright_black")
                text.append(f"{glyph} {state}  ", style=colour)
            for stage, message in (row.get("failed") or {}).items():  # kept until it is rerun
                text.append(f"\n✗ {stage} failed: {message}", style="red")
            if row.get("warnings"):
                text.append(f"\n⚠ {row['warnings']} quality warning(s) (salve info {row['name']})",
                            style="yellow")
            detail.update(text)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        row = self.selected_row()
        if row is None:
            self.notify("no session selected; press n to create one", severity="warning")
            return
        if row.get("error"):
            self.notify(row["error"], title="cannot open this session", severity="error", timeout=10)
            return
        self.salve.open_session(Path(row["path"]))

    def action_new(self) -> None:
        from salve_tui.app.screens.new_session import NewSessionScreen

        self.app.push_screen(NewSessionScreen())

    def action_delete(self) -> None:
        row = self.selected_row()
        if row is None:
            self.notify("no session selected", severity="warning")
            return
        path = Path(row["path"])
        size = session_bytes(path) / 1e6  # the file and its array folder: deleted together
        owned = len(plan_exports(exports_dir(path)).owned)
        exports = f"\nand the {owned} file(s) salve-tui wrote in {exports_dir(path).name}/" if owned else ""

        def answer(confirmed: bool | None) -> None:
            if not confirmed:
                return
            try:
                delete_session(path)  # under the writer lock, damaged files included
            except (SessionError, OSError) as exc:
                self.notify(str(exc), title="not deleted", severity="error", timeout=10)
            else:
                kept = plan_exports(exports_dir(path)).kept
                self.notify(f"deleted {path}" + (f"; kept {len(kept)} item(s) in {exports_dir(path)} that "
                                                 "salve-tui did not write" if kept else ""))
            self.action_refresh()

        self.app.push_screen(
            ConfirmModal(f"Delete session '{row['name']}'?\n{path} ({size:.1f} MB){exports} will be removed; "
                         "this cannot be undone.", title="Delete session", yes="Delete", no="Keep"),
            answer,
        )
