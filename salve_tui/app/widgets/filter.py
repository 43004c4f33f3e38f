"""``/`` on a long table or list: a one-line filter field; the screen keeps the rows that contain
every typed word (case-insensitive). Enter keeps the filter and goes back to the list, esc clears
it. A screen that has one yields a :class:`FilterBar`, adds :data:`FILTER_BINDING` and implements
``apply_filter(text)``."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding
from textual.widgets import Input

FILTER_BINDING = Binding("slash", "open_filter", "Filter", key_display="/", show=False)  # 120+ columns: shown


#: Greek letters of the screens' words, as a keyboard without them spells them: "alpha crit"
#: finds α_crit, "lambda" the SAE's λ.
GREEK_SPELLED = str.maketrans({"α": "alpha", "β": "beta", "λ": "lambda", "μ": "mu", "σ": "sigma"})


def matches(query: str, *fields: object) -> bool:
    """Every whitespace-separated word of ``query`` occurs in one of ``fields`` (any case; a
    Greek letter also matches its spelled name)."""
    text = " ".join(str(f) for f in fields).lower()
    haystack = f"{text} {text.translate(GREEK_SPELLED)}"
    return all(word in haystack for word in query.lower().split())


class FilterBar(Input):
    """Hidden until ``/``; typing filters at once."""

    DEFAULT_CSS = """
    FilterBar { display: none; height: 1; border: none; padding: 0 1; background: $boost; }
    FilterBar.-open { display: block; }
    FilterBar:focus { border: none; }
    """
    BINDINGS: ClassVar[list[Binding]] = [Binding("escape", "clear_and_close", "Clear filter")]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(placeholder="filter: type words · enter keeps it · esc clears it",
                         id="filter-bar", **kwargs)  # type: ignore[arg-type]
        self._return_to = None

    def open(self) -> None:
        self._return_to = self.screen.focused
        self.add_class("-open")
        self.focus()

    def _close(self) -> None:
        if not self.value:
            self.remove_class("-open")
        target = self._return_to
        if target is not None and target.is_attached:
            target.focus()
        else:
            self.screen.focus_next()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.screen.apply_filter(event.value)  # type: ignore[attr-defined]

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._close()

    def action_clear_and_close(self) -> None:
        self.value = ""  # Changed → the screen shows every row again
        self.screen.apply_filter("")  # type: ignore[attr-defined]
        self._close()
