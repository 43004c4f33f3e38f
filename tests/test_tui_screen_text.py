"""The pure text of the edit preview and the feature card (``edit_text``, ``feature_text``):
hand-worked cases, without an app."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from salve_tui.app.screens.edit_text import export_status
from salve_tui.app.screens.feature_text import (
    actmax_captions,
    actmax_progress,
    actmax_status,
    class_label_width,
    info_text,
    panel_title,
)


def test_export_status_numbers_from_one_and_names_the_folder_once() -> None:
    folder = Path.cwd() / "exports"
    files = [folder / "e.pt", folder / "e.safetensors"]
    new = SimpleNamespace(metadata={"edit_index": 2}, files=files, reused=False)
    assert export_status(new) == "recorded edit #3 in the edit stack (s); wrote e.pt, e.safetensors in exports/"
    again = SimpleNamespace(metadata={"edit_index": 0, "duplicate": True}, files=files, reused=True)
    assert export_status(again) == ("not recorded again: this edit is already #1, the top of the edit "
                                    "stack (s); reused e.pt, e.safetensors in exports/")


def test_actmax_captions_share_the_panel_width() -> None:
    meta = {"steps": [0, 10, 20], "final_activation": 1.234}
    caption = actmax_captions(meta, 3, 30)  # 10 columns a snapshot, labels cut to 9 (+1 space)
    assert caption.plain == "step 0    step 10   final +1. "
    assert actmax_captions(meta, 3, 0).plain == "step 0".ljust(20) + "step 10".ljust(20) + "final +1.2".ljust(20)


def test_actmax_status_and_progress() -> None:
    assert actmax_status(None, "") == "none yet: a runs it"
    meta = {"start_activation": -0.5, "final_activation": 3.0}
    assert actmax_status(([np.zeros((2, 2, 3))], meta), "") == "u -0.5 → +3"
    assert actmax_status(None, "running") == "running"
    progress = SimpleNamespace(message="step 5", fraction=0.25, eta_seconds=None)
    assert actmax_progress(7, progress) == "act-max feature 7: step 5 25% (c cancels)"


def test_panel_title_marks_the_panel_and_names_the_class_columns() -> None:
    title = panel_title("nearest", ["cat", "dog"], "", busy=False)
    assert title.plain == "1 hist 2 class 3 near 4 act-max "
    reversed_spans = [title.plain[s.start:s.end] for s in title.spans if s.style == "reverse bold"]
    assert reversed_spans == ["3 near"]
    assert class_label_width(["cat", "dog"]) == 3 and class_label_width(["a" * 20]) == 9
    classes = panel_title("classes", ["cat", "dog"], "", busy=False).plain
    assert classes == "2 class".ljust(18) + "μ_ck" + "    W·D"
    assert panel_title("actmax", [], "u -0.5 → +3", busy=False).plain.endswith("4 act-max u -0.5 → +3")


def test_the_card_info_line_fits_80_columns() -> None:
    """At 80×24 the line read "… · dominant for 4 classes (◆ in panel 2) · strongest μ triangle …"
    (cut). Worst Shapes cases: two long owner names, or many owners."""
    names = ["circle", "square", "triangle", "star", "cross", "ring", "crescent", "heart", "arrow", "hourglass"]
    card = SimpleNamespace(feature=15, class_means=np.array([0.1] * 9 + [-12.345]))
    for dominant in ([15] * 4 + [0] * 6, [0] * 6 + [15, 0, 0, 15]):
        inputs = SimpleNamespace(class_names=names, dominant=np.array(dominant), D=np.zeros((512, 64)))
        line = info_text(card, inputs).plain
        assert len(line) <= 78 and line.endswith("strongest μ hourglass -12.35"), line
