"""Edit stack: every recorded edit, what it does alone, and the composition of the active ones.

The list comes from :func:`core.workflow.edits.edit_stack` (cached test activations, one
matmul per edit) computed in a thread worker, so the screen paints at once with a loading line.
Every change to the stack (remove, enable/disable, undo, redo) and the export of the composition
is a session write, so it runs as an app job like any other writer (one at a time); undo and
redo are kept in the session and survive closing it. ``v`` marks two edits and opens them side
by side (:class:`CompareEditsScreen`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from salve_tui.app.jobs import JobCancelled, JobFailed, JobFinished, JobMessage
from salve_tui.app.screens.analysis_edit import display_path
from salve_tui.app.screens.analysis_shared import (
    PAGE_BINDINGS,
    Pager,
    cursor_index,
    delta_text,
    fill_page,
    fit_column,
    fmt_percent,
)
from salve_tui.app.screens.base import SessionScreen, session_view
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader
from salve_tui.app.widgets.filter import FILTER_BINDING, FilterBar, matches

if TYPE_CHECKING:
    from core.workflow.edits import AccuracyChange, EditRow, EditStack

EDIT_WIDTH = 30  # the edit label column at 80 columns; it grows on wider terminals
LOSS_SHOWN = 0.0005  # a class counts as losing from −0.05 points (what the table can show)


def composition_text(stack: EditStack) -> Text:
    """``composition #1+#3: overall 97.5% → 60.0% (−37.5 pts) · worst circle −100.0 pts``."""
    comp = stack.composition
    if comp is None:
        return Text("no active edit: the exported model would be the original one", style="dim")
    names = stack.class_names
    text = Text("composition ", style="bold")
    text.append("+".join(f"#{n}" for n in stack.active_numbers))
    text.append(f": overall {fmt_percent(comp.overall_before)} → {fmt_percent(comp.overall_after)} (")
    text.append_text(delta_text(comp.overall_delta))
    text.append(" pts) · worst ")
    text.append_text(worst_text(comp, names))
    return text


def worst_text(change: AccuracyChange, names: list[str]) -> Text:
    """``-25.0 cross``: the class that loses most; ``none lost`` when no class loses."""
    if change.worst_class < 0 or change.worst_delta > -LOSS_SHOWN:
        return Text("none lost", style="dim")
    text = delta_text(change.worst_delta)
    text.append(f" {names[change.worst_class]}")
    return text


def detail_text(row: EditRow, names: list[str]) -> Text:
    """The highlighted edit: its label, when it was recorded, the files exported from it."""
    import time

    from core.workflow.edits import describe_spec

    text = Text(f"#{row.number} {describe_spec(row.spec)}", style="bold")
    if not row.active:
        text.append("  (disabled: left out of the composition)", style="yellow")
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(row.recorded_at)) if row.recorded_at else "—"
    text.append(f"\nrecorded {stamp}", style="dim")
    text.append(f" · alone: overall {fmt_percent(row.change.overall_before)} → "
                f"{fmt_percent(row.change.overall_after)}", style="dim")
    if row.exports:
        for path in row.exports[-3:]:
            text.append(f"\n  {display_path(path)}")
        if len(row.exports) > 3:
            text.append(f"\n  … {len(row.exports) - 3} more", style="dim")
    else:
        text.append("\nnot exported yet (w exports the composition)", style="dim")
    return text


@session_view(footer="Stack", key="s", title="Edit stack", requires=("rankings",), order=60,
              name="edit_stack",
              description="Recorded edits: remove, undo/redo, compare, export the composition")
class EditStackScreen(SessionScreen):
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    SCREEN_TITLE = "Edit stack"
    HELP_TEXT = (
        "Every edit recorded in the session (w on the edit preview, or `salve edit`), oldest first, "
        "with what it does alone on the cached test split: the change in overall accuracy and the "
        "class that loses most. The line below the table is the composition of the active edits, "
        "which is what an export of the stack applies. d removes the highlighted edit, space "
        "switches it in or out of the composition, u undoes the last change to the stack and r "
        "redoes it (kept in the session). v marks an edit; v on a second one opens both side by "
        "side. w exports the composition (.pt + .safetensors); an identical composition exported "
        "before reuses its files. A long stack is shown a page at a time: [ and ] turn the page "
        "(the line above the table says which rows)."
    )
    BINDINGS: ClassVar[list[Binding]] = [
        # The footer at 80 columns shows the first four; on/off and redo are in help and palette.
        Binding("d,delete", "remove", "Remove", key_display="d"),
        Binding("w", "export", "Export"),
        Binding("u", "undo", "Undo"),
        Binding("v", "compare", "Compare"),
        Binding("space", "toggle_active", "On/off", show=False),
        Binding("r", "redo", "Redo", show=False),
        *PAGE_BINDINGS,
        FILTER_BINDING,
    ]
    RESULT_KINDS = ("edit",)  # a warning line when a stage was rerun since
    LOADING = "the edit stack"
    LOAD_ERROR_IN_INFO = True  # the status line says why (what to run first)

    def __init__(self) -> None:
        super().__init__()
        self.stack: EditStack | None = None
        self.pager = Pager()
        self.marked: int | None = None  # the first edit chosen for a comparison
        self.status: Text = Text("")
        self.error = ""
        self._job: Any = None
        self.filter_text = ""  # /: only the edits whose row has every typed word
        self.shown: list[EditRow] = []

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static(self.status, id="stack-status", markup=False)
        yield FilterBar()
        yield DataTable(id="stack-table", cursor_type="row", zebra_stripes=False)
        yield Static(id="stack-composition", markup=False)
        yield Static(id="stack-detail", markup=False)
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("#", key="number", width=3)
        table.add_column("on", key="active", width=2)
        table.add_column("edit", key="edit", width=EDIT_WIDTH)
        table.add_column("Δ all", key="overall", width=6)
        table.add_column("worst class", key="worst", width=17)
        table.add_column("files", key="files", width=5)
        table.focus()

    # ----- session → view

    def load(self) -> EditStack:
        from core.workflow.edits import edit_stack
        from core.workflow.inputs import load_inputs

        session = self.session
        return edit_stack(session, load_inputs(session))

    def show_failure(self, error: str) -> None:
        """An incomplete session: the status line says what to run."""
        self.error = error
        self._set_status(Text(f"cannot list the edits: {error}", style="red"))

    def show(self, stack: EditStack) -> None:
        table = self.query_one(DataTable)
        cursor = cursor_index(table, self.pager) or 0
        self.stack, self.error = stack, ""
        self.shown = self._matching(stack)
        self.pager.set_total(len(self.shown))
        cursor = min(cursor, max(0, len(self.shown) - 1))
        self.pager.show_index(cursor)
        self._fill(cursor)
        self.query_one("#stack-composition", Static).update(composition_text(stack))
        if self._job is None:  # after a change its outcome stays shown until the next one
            self._set_status(self._summary())

    def _fill(self, cursor: int) -> None:
        """The table holds one page of the stack (a page of rows costs the same at any size)."""
        assert self.stack is not None
        table = self.query_one(DataTable)
        names = self.stack.class_names
        from core.workflow.edits import describe_spec

        def add(index: int) -> None:
            row = self.shown[index]
            mark = Text("✓", style="green") if row.active else Text("·", style="dim")
            label = Text(describe_spec(row.spec), style="" if row.active else "dim")
            if self.marked == row.number:  # a mark of its own: reverse vanished under the cursor
                mark = Text("◆", style="bold magenta")
                label.stylize("bold magenta")
            table.add_row(str(row.number), mark, label, delta_text(row.change.overall_delta),
                          worst_text(row.change, names), str(len(row.exports)), key=str(row.number))

        fill_page(table, self.pager, add, cursor)
        fit_column(table, "edit", EDIT_WIDTH, self.size.width)
        self._show_detail()

    def _matching(self, stack: EditStack) -> list[EditRow]:
        from core.workflow.edits import describe_spec

        return [row for row in stack.rows
                if matches(self.filter_text, f"#{row.number}", "on" if row.active else "off",
                           describe_spec(row.spec), worst_text(row.change, stack.class_names))]

    def apply_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        if self.stack is not None:
            self.shown = self._matching(self.stack)
            self.pager.set_total(len(self.shown))
            self.pager.show_index(0)
            self._fill(0)
            if self._job is None:
                self._set_status(self._summary())

    def on_resize(self) -> None:
        if self.stack is not None:
            fit_column(self.query_one(DataTable), "edit", EDIT_WIDTH, self.size.width)

    def action_page(self, step: int) -> None:
        if self.stack is not None and self.pager.turn(step):
            self._fill(self.pager.start)
            if self._job is None:
                self._set_status(self._summary())

    def _summary(self) -> Text:
        stack = self.stack
        if stack is None:
            return self.status
        if not stack.rows:
            text = Text("no edits recorded yet: e opens the edit preview, w there records one",
                        style="dim")
        else:
            text = Text(f"{len(stack.rows)} edit(s), {len(stack.active_numbers)} active")
            if self.filter_text:
                text.append(f" · {len(self.shown)} match '{self.filter_text}'", style="yellow")
            pages = self.pager.label("rows")
            if pages:
                text.append(f" · {pages}", style="dim")
        if stack.undo:
            text.append(f" · u undoes: {stack.undo}", style="dim")
        elif stack.redo:
            text.append(f" · r redoes: {stack.redo}", style="dim")
        return text

    def _set_status(self, text: Text) -> None:
        self.status = text
        self.query_one("#stack-status", Static).update(text)

    def highlighted(self) -> EditRow | None:
        if self.stack is None or not self.shown:
            return None
        index = cursor_index(self.query_one(DataTable), self.pager)
        return self.shown[min(index or 0, len(self.shown) - 1)]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        row = self.highlighted()
        widget = self.query_one("#stack-detail", Static)
        if row is None or self.stack is None:
            widget.update("")
            return
        widget.update(detail_text(row, self.stack.class_names))

    # ----- changes (session writes, as jobs)

    def _change(self, title: str, fn: Callable[[Any], Any]) -> None:
        if self.stack is None:
            self.notify(self.error or "the edit stack is still loading", severity="warning")
            return
        session = self.session

        def body(progress, cancel):  # noqa: ANN001 (core ProgressFn, CancelToken)
            return fn(session)

        job = self.salve.start_job(f"edit stack: {title}", body)
        if job is not None:
            self._job = job
            self._set_status(Text(f"{title}…", style="cyan"))

    def action_remove(self) -> None:
        row = self.highlighted()
        if row is None:
            self.notify("the stack is empty", severity="warning")
            return
        from core.workflow.edits import remove_edit

        self._change(f"remove #{row.number}", lambda s: remove_edit(s, row.number))

    def action_toggle_active(self) -> None:
        row = self.highlighted()
        if row is None:
            return
        from core.workflow.edits import set_edit_active

        verb = "disable" if row.active else "enable"
        self._change(f"{verb} #{row.number}", lambda s: set_edit_active(s, row.number, not row.active))

    def action_undo(self) -> None:
        from core.workflow.edits import undo_edit

        if self.stack is not None and not self.stack.undo:
            self.notify("nothing to undo", severity="information")
            return
        self._change("undo", undo_edit)

    def action_redo(self) -> None:
        from core.workflow.edits import redo_edit

        if self.stack is not None and not self.stack.redo:
            self.notify("nothing to redo", severity="information")
            return
        self._change("redo", redo_edit)

    def action_export(self) -> None:
        if self.stack is not None and not self.stack.active_numbers:
            self.notify("no edit is active: there is nothing to export", severity="warning")
            return
        numbers = list(self.stack.active_numbers) if self.stack is not None else []

        def export(session: Any) -> Any:
            from core.workflow.edits import note_exports
            from core.workflow.export import export_edited_model

            result = export_edited_model(session)
            note_exports(session, result.files, numbers)
            return result

        self._change("export the composition", export)

    def on_job_update(self, message: JobMessage) -> None:
        if message.job is not self._job:
            return
        name = message.job.name
        if isinstance(message, JobFinished):
            result = message.result
            if hasattr(result, "files"):
                verb = "reused (identical export)" if result.reused else "wrote"
                files = ", ".join(display_path(p) for p in result.files)
                self._set_status(Text(f"{verb} {files}", style="green"))
            elif isinstance(result, str):
                self._set_status(Text(f"{name.split(': ', 1)[-1]}: {result}", style="green"))
            else:
                self._set_status(Text(f"{name.split(': ', 1)[-1]}: done (u undoes)", style="green"))
        elif isinstance(message, JobFailed):
            self._set_status(Text(f"{name} failed: {message.error}", style="red"))
        elif isinstance(message, JobCancelled):
            self._set_status(Text(f"{name} cancelled", style="yellow"))

    # ----- comparison

    def action_compare(self) -> None:
        row = self.highlighted()
        if row is None or self.stack is None:
            return
        if self.marked is None or self.marked == row.number:
            self.marked = None if self.marked == row.number else row.number
            self.show(self.stack)
            if self.marked is not None:
                self._set_status(Text(f"#{row.number} marked ◆: v on another edit compares them (v on it again unmarks)",
                                      style="cyan"))
            return
        first, self.marked = self.marked, None
        self.show(self.stack)
        self.app.push_screen(CompareEditsScreen(self.stack, first, row.number))


class CompareEditsScreen(SessionScreen):
    """Two recorded edits side by side: each class's accuracy before, after each, and Δ."""

    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    SCREEN_TITLE = "Compare edits"
    HELP_TEXT = (
        "Per-class test accuracy before any edit, after the first edit alone and after the second "
        "alone, with each change in percentage points; many classes are shown a page at a time "
        "([ and ] turn the page). esc goes back to the edit stack."
    )
    BINDINGS: ClassVar[list[Binding]] = PAGE_BINDINGS

    def __init__(self, stack: EditStack, first: int, second: int) -> None:
        super().__init__()
        from core.workflow.edits import compare_edits

        self.comparison = compare_edits(stack, first, second)
        self.first, self.second = first, second
        self.pager = Pager(total=len(self.comparison["per_class"]))

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static(id="stack-status", markup=False)
        yield DataTable(id="stack-table", cursor_type="row", zebra_stripes=False)
        yield Static(id="stack-composition", markup=False)
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        c = self.comparison
        first, second = c["first"], c["second"]
        self.query_one("#stack-status", Static).update(
            Text.assemble((f"#{self.first} ", "bold"), first["label"], ("   vs   ", "dim"),
                          (f"#{self.second} ", "bold"), second["label"]))
        table = self.query_one(DataTable)
        table.add_column("class", key="class", width=14)
        table.add_column("before", key="before", width=7)
        table.add_column(f"#{self.first}", key="first", width=7)
        table.add_column("Δ pts", key="d1", width=6)
        table.add_column(f"#{self.second}", key="second", width=7)
        table.add_column("Δ pts", key="d2", width=6)
        self._fill(0)
        table.focus()

    def _fill(self, cursor: int) -> None:
        table = self.query_one(DataTable)
        per_class = self.comparison["per_class"]

        def add(index: int) -> None:
            row = per_class[index]
            before, x, y = row["before"], row["after_first"], row["after_second"]
            table.add_row(row["class"], fmt_percent(before), fmt_percent(x), delta_text(x - before),
                          fmt_percent(y), delta_text(y - before))

        fill_page(table, self.pager, add, cursor)
        overall = Text("overall ", style="bold")
        for label, data in ((f"#{self.first}", self.comparison["first"]),
                            (f"#{self.second}", self.comparison["second"])):
            overall.append(f"{label} {fmt_percent(data['overall_after'])} (")
            overall.append_text(delta_text(data["overall_delta"]))
            overall.append(")  ")
        pages = self.pager.label("classes")
        if pages:
            overall.append(pages, style="dim")
        self.query_one("#stack-composition", Static).update(overall)

    def action_page(self, step: int) -> None:
        if self.pager.turn(step):
            self._fill(self.pager.start)
