"""The curve plot of the analysis screens (textual-plotext), minus a leak.

Imported inside the screens that draw curves: importing plotext costs start-up time.
"""

from __future__ import annotations

from textual_plotext import PlotextPlot


class CurvePlot(PlotextPlot):
    """A :class:`~textual_plotext.PlotextPlot` that unsubscribes from theme changes on unmount.

    ``PlotextPlot`` subscribes to ``app.theme_changed_signal`` with a callback that holds the
    plot, and never unsubscribes: the signal keeps every plot (and so its screen) ever shown.
    """

    def on_unmount(self) -> None:
        self.app.theme_changed_signal.unsubscribe(self)
