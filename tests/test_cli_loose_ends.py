"""The CLI's loose ends: text ``info`` shows α_crit and the stages in pipeline order; ``edit
--json`` numbers the recorded edit from 1 like ``salve edits``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_tui_analysis import make_synthetic_session

from core.store.session import PIPELINE_STAGES, Session
from salve_tui.cli.main import main


@pytest.fixture
def synth(tmp_path: Path) -> Path:
    return make_synthetic_session(tmp_path)


def test_info_lists_stages_in_pipeline_order_and_alpha_crit(synth: Path, capsys) -> None:  # noqa: ANN001
    from core.workflow.alpha_crit import run_alpha_crit

    assert main(["info", str(synth)]) == 0
    out = capsys.readouterr().out
    assert "α_crit: none recorded" in out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and
              line.split()[0] in PIPELINE_STAGES]
    assert listed == list(PIPELINE_STAGES)  # data … rankings, not alphabetical
    with Session.open(synth) as session:
        run_alpha_crit(session)
        block = session.summary()["alpha_crit"]["suppress-linear"]
    assert main(["info", str(synth)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("α_crit (suppress-linear)"))
    for name, row in block.items():
        expected = "—" if row["analytic_median"] is None else f"{row['analytic_median']:.3g}"
        assert re.search(rf"{name} {re.escape(expected)} \(f{row['feature']}, ", line), (name, line)
