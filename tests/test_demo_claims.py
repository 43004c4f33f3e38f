"""The README's claims about the demo, checked on a real `salve demo` session within the
tolerances the README states (slow: builds the demo, ~2 min idle, much longer on a loaded
machine). ``SALVE_DEMO_SESSION=PATH`` checks an existing demo session instead of building one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.store.session import Session
from salve_tui.cli.main import main

pytestmark = pytest.mark.slow

MIN_TEST_ACCURACY = 0.95
MIN_SELECTIVE_CLASSES = 8
MAX_ALPHA_CRIT_REL_DIFF = 1e-9
MIN_POINTING_RATIO = 2.0


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("SALVE_DEMO_SESSION")
    if given:
        return Path(given)
    folder = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--sessions-dir", str(folder), "--json"]) == 0
    return folder / "demo.h5"


def test_readme_demo_claims(demo_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.workflow.inputs import load_inputs
    from core.workflow.selectivity import selectivity_report
    from core.workflow.sweeps import run_sweep

    capsys.readouterr()
    assert main(["info", str(demo_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    # "ResNet-18 reaches ≥ 95% test accuracy"
    assert info["backbone"]["test_accuracy"] >= MIN_TEST_ACCURACY
    # "each of the 10 classes has its own dominant feature"
    assert info["distinct_dominants"] and len(info["dominant_features"]) == 10
    # "analytic and numerical α_crit agree" (linear modulation, per class medians)
    for row in info["alpha_crit"]["suppress-linear"].values():
        rel = abs(row["numerical_median"] - row["analytic_median"]) / abs(row["analytic_median"])
        assert rel <= MAX_ALPHA_CRIT_REL_DIFF
    # "Grad-FAM points inside the shape ≥ 2× more often than chance"
    assert info["groundtruth"]["pointing_game"]["grad_fam"]["ratio_to_chance"] >= MIN_POINTING_RATIO
    # The shared part is reported honestly: the best-tracking latent and both AUROCs.
    shared = info["groundtruth"]["shared_part"]
    assert isinstance(shared["latent"], int) and len(shared["auroc_per_class"]) == 2
    # "a selective window for ≥ 8/10 classes with SALVE"
    with Session.open(demo_path, read_only=True) as session:
        x = load_inputs(session)
        windows = sum(
            selectivity_report(session, run_sweep(session, target_class=c, record=False, inputs=x),
                               x, controls=False, train=False)["has_selective_window"]
            for c in range(x.num_classes))
    assert windows >= MIN_SELECTIVE_CLASSES
