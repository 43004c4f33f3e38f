"""A small modal that asks for one number (e.g. an exact edit strength) and validates it."""

from __future__ import annotations

import math
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


def parse_number(text: str, minimum: float | None = None) -> float:
    """The finite float in ``text``; ValueError naming what is wrong otherwise."""
    try:
        value = float(text.strip().replace("−", "-"))
    except ValueError:
        raise ValueError(f"'{text.strip()}' is not a number") from None
    if not math.isfinite(value):
        raise ValueError("the value must be finite")
    if minimum is not None and value < minimum:
        raise ValueError(f"the value must be ≥ {minimum:g}")
    return value


class NumberInputModal(ModalScreen[float | None]):
    """Enter returns the typed number (refused with a message when invalid); esc returns None."""

    DEFAULT_CSS = """
    NumberInputModal { align: center middle; }
    NumberInputModal #number-dialog { width: 50; height: auto; border: round $accent; background: $surface; padding: 0 1; }
    NumberInputModal #number-error { color: $error; height: auto; }
    """
    BINDINGS: ClassVar[list[Binding]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, value: float, minimum: float | None = None) -> None:
        super().__init__()
        self.prompt = prompt
        self.value = value
        self.minimum = minimum

    def compose(self) -> ComposeResult:
        with Vertical(id="number-dialog"):
            yield Static(self.prompt, markup=False)
            yield Input(value=f"{self.value:.6g}", id="number-input", select_on_focus=True)
            yield Static("", id="number-error", markup=False)
            yield Static("enter applies · esc cancels", classes="dim", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            value = parse_number(event.value, self.minimum)
        except ValueError as exc:
            self.query_one("#number-error", Static).update(str(exc))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
