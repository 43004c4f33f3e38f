"""Small modals that ask for one line (a number, a place to go) and validate it before closing."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Static

from salve_tui.app.screens.confirm import OnceModal

T = TypeVar("T")


def parse_number(text: str, minimum: float | None = None, maximum: float | None = None,
                 whole: bool = False) -> float:
    """The finite float in ``text`` within [minimum, maximum] (a whole number if ``whole``);
    ValueError naming what is wrong otherwise (every number dialog shows it under its field)."""
    try:
        value = float(text.strip().replace("−", "-"))
    except ValueError:
        raise ValueError(f"'{text.strip()}' is not a number") from None
    if not math.isfinite(value):
        raise ValueError("the value must be finite")
    if whole and value != int(value):
        raise ValueError(f"'{text.strip()}' is not a whole number")
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise ValueError(f"the value must be from {minimum:g} to {maximum:g}")
    if minimum is not None and value < minimum:
        raise ValueError(f"the value must be ≥ {minimum:g}")
    if maximum is not None and value > maximum:
        raise ValueError(f"the value must be ≤ {maximum:g}")
    return value


class PromptModal(OnceModal[T | None]):
    """Asks for one line of text and returns ``parse(text)``; a ValueError from ``parse`` is shown
    under the field and the dialog stays open. esc returns None."""

    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    BINDINGS: ClassVar[list[Binding]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, parse: Callable[[str], T], value: str = "") -> None:
        super().__init__()
        self.prompt = prompt
        self.parse = parse
        self.initial = value

    def compose(self) -> ComposeResult:
        with Vertical(id="number-dialog"):
            yield Static(self.prompt, markup=False)
            yield Input(value=self.initial, id="number-input", select_on_focus=True)
            yield Static("", id="number-error", markup=False)
            yield Static("enter applies · esc cancels", classes="dim", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            value = self.parse(event.value)
        except ValueError as exc:
            self.query_one("#number-error", Static).update(str(exc))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class NumberInputModal(PromptModal[float]):
    """Enter returns the typed number (refused with a message when invalid); esc returns None."""


    def __init__(self, prompt: str, value: float, minimum: float | None = None,
                 maximum: float | None = None, whole: bool = False) -> None:
        super().__init__(prompt, lambda text: parse_number(text, minimum, maximum, whole), f"{value:.6g}")
        self.value = value
        self.minimum = minimum
