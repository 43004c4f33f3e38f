"""A yes/no question as a modal; dismisses with True (y / enter on Yes) or False (n / escape)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

T = TypeVar("T")


class OnceModal(ModalScreen[T]):
    """A modal that answers once: a second key queued before it closed (y then n, esc esc typed
    fast) is ignored instead of setting its result twice (Textual raised InvalidStateError)."""

    _answered = False

    def dismiss(self, result: T | None = None):  # noqa: ANN201 (Textual's AwaitComplete)
        if self._answered:
            return None
        self._answered = True
        return super().dismiss(result)


class ConfirmModal(OnceModal[bool]):
    """Ask before anything destructive (delete, quit during a job)."""

    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, *, title: str = "Confirm", yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question = question
        self.title_text = title
        self.yes_label = yes
        self.no_label = no

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(self.title_text, id="confirm-title")
            yield Static(self.question, id="confirm-question", markup=False)
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.yes_label} (y)", variant="error", id="yes")
                yield Button(f"{self.no_label} (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
