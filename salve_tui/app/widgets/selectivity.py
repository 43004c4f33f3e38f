"""A compact selectivity panel for a sweep: selective window, worst other class, controls.

It computes :func:`core.workflow.selectivity.selectivity_report` in its own worker (a few
sweeps on cached activations) and shows :func:`selectivity_lines`, so a screen only hands it
the curve it already has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.widgets import Static
from textual.worker import get_current_worker

from salve_tui.app.jobs import releasing_thread_context

if TYPE_CHECKING:
    from core.control.curves import SweepResult
    from core.workflow.inputs import ControlInputs


class SelectivityPanel(Static):
    """Three lines under a curve; a waiting note until a sweep is shown."""

    DEFAULT_CSS = """
    SelectivityPanel { height: auto; max-height: 6; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", markup=False, **kwargs)
        self.report: dict[str, Any] | None = None

    def clear(self) -> None:
        self.report = None
        self.update("selectivity: waiting for the curve…")

    def show_for(self, session: Any, result: SweepResult, inputs: ControlInputs) -> None:
        """Compute the report for ``result`` in a worker and show it when ready."""
        self.clear()
        if result.target_class is None:
            return

        def compute() -> None:
            from core.workflow.selectivity import selectivity_report

            worker = get_current_worker()
            try:
                report = selectivity_report(session, result, inputs)
            except (ValueError, KeyError, OSError) as exc:
                if not worker.is_cancelled:
                    self.app.call_from_thread(self.update, f"selectivity: {exc}")
                return
            if not worker.is_cancelled:
                self.app.call_from_thread(self._ready, report)

        self.run_worker(releasing_thread_context(compute), thread=True, exclusive=True, group="selectivity",
                        exit_on_error=False)

    def _ready(self, report: dict[str, Any]) -> None:
        self.report = report
        self.update("\n".join(panel_lines(report)))


def panel_lines(report: dict[str, Any]) -> list[str]:
    """The panel's lines: core's compact lines (the same words as the figures' captions)."""
    from core.workflow.selectivity import compact_selectivity_lines  # torch stays out of start-up

    return compact_selectivity_lines(report)
