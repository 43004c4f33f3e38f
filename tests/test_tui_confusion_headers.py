"""The confusion matrices' columns are numbered with a legend of full names: at 80 columns a
name cut to the 2 cells of a count column read "c…" for circle, crescent and cross alike."""

from __future__ import annotations

import numpy as np
from test_tui_analysis import SYNTH_NAMES

from salve_tui.app.screens.analysis_confusion import confusion_pair_text


def test_columns_are_numbered_and_named_in_a_legend_at_80_columns() -> None:
    before = np.diag([6] * 10)
    after = before.copy()
    after[0, 0], after[0, 3] = 4, 2  # two circles now read as star (column 3)
    lines = confusion_pair_text(before, after, list(SYNTH_NAMES), 0, width=78).plain.splitlines()
    assert all(len(line) <= 78 for line in lines[:-1])  # the legend wraps in its Static
    header = lines[1].split()
    assert header == [str(j) for j in range(10)] * 2 and "…" not in lines[1]
    circle = lines[2].split()
    assert circle[:11] == ["circle", "6"] + ["0"] * 9
    assert circle[11:] == ["circle", "4", "0", "0", "2"] + ["0"] * 6  # after: column 3 is star
    assert lines[-1] == "columns: " + " · ".join(f"{j} {n}" for j, n in enumerate(SYNTH_NAMES))


def test_row_labels_take_the_room_a_wide_terminal_leaves() -> None:
    before = np.diag([6] * 10)
    text = confusion_pair_text(before, before, list(SYNTH_NAMES), 0, width=120).plain
    assert "hourglass" in text.splitlines()[11] and "triangle " in text.splitlines()[4]
