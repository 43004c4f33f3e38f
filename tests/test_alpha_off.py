"""The clamped α_crit rule (issue 19, item 5), worked by hand.

Feature k has |D[:,k]| = (0.5, 0.25, 0.2, 0.03, 0.02): mass 1.0. Sorted, the running sums are
0.5, 0.75, 0.95, ... so 95% of the mass is switched off once the third entry is, at
α_off = 1/0.2 = 5; every coordinate is off only at 1/0.02 = 50 (exact total ablation).

With W_c = 1 and the clamped factors max(0, 1 − α|D_j|), each sample's bias-free logit and root:

- a = e0:            z(α) = 1 − 0.5α                     → root 2      (kept)
- a = e1:            z(α) = 1 − 0.25α                    → root 4      (kept)
- a = e3 − 0.9·e4:   z(α) = 0.1 − 0.012α (α < 33.3)      → root 8.33   (≥ α_off: excluded)
- a = e3:            z(α) = 1 − 0.03α                    → root 33.3   (excluded)
- a = e4:            z(α) = 1 − 0.02α                    → root 50     (total ablation: excluded)

The old rule (exact total ablation only) kept 8.33 and 33.3 and reported their median.
"""

from __future__ import annotations

import pytest
import torch

from core.control.alpha_crit import class_alpha_crit
from core.control.alpha_off import alpha_off, beyond_off, shown_median

D_K = torch.tensor([0.5, 0.25, 0.2, 0.03, 0.02], dtype=torch.float64)


def _samples(rows: list[list[float]]) -> tuple[torch.Tensor, ...]:
    A = torch.tensor(rows, dtype=torch.float64)
    W = torch.stack([torch.ones(5), torch.zeros(5)]).double()  # class 1 never wins: logit 0
    return A, torch.zeros(len(rows), dtype=torch.long), W, torch.zeros(2, dtype=torch.float64), D_K.reshape(5, 1)


E = torch.eye(5).tolist()
KEPT = [E[0], E[1]]
EXCLUDED = [[0, 0, 0, 1, -0.9], E[3], E[4]]


def test_alpha_off_by_hand() -> None:
    assert alpha_off(D_K) == pytest.approx(5.0)
    assert alpha_off(D_K, 1.0) == pytest.approx(50.0)  # q = 1 is exact total ablation
    assert alpha_off(D_K, 0.5) == pytest.approx(2.0)  # the first entry alone holds 50%
    assert alpha_off(-D_K) == pytest.approx(5.0)  # magnitudes
    assert alpha_off(torch.zeros(3)) is None
    roots = torch.tensor([2.0, 4.999, 5.0, 8.3, float("nan")])
    assert beyond_off(roots, 5.0).tolist() == [False, False, True, True, False]


def test_clamped_roots_past_alpha_off_are_excluded_and_counted() -> None:
    A, labels, W, b, D = _samples(KEPT + EXCLUDED)
    r = class_alpha_crit(A, labels, W, b, D, 0, 0, modulation="clamped")
    assert r.alpha_off == pytest.approx(5.0)
    assert r.numerical[:2].tolist() == pytest.approx([2.0, 4.0], rel=1e-9)
    assert r.total_ablation_mask.tolist() == [False, False, True, True, True]
    s = r.summary()
    assert s["n_qualifying_numerical"] == 2 and s["excluded"]["numerical_total_ablation"] == 3
    # 2 of 5 samples keep a root: fewer than half, so no median is shown, with the reason
    assert s["numerical"]["median"] == pytest.approx(3.0)
    assert s["shown"] is None and "2/5" in s["withheld_reason"] and "3 only at total ablation" in s["withheld_reason"]


def test_half_qualifying_shows_the_median() -> None:
    A, labels, W, b, D = _samples(KEPT + EXCLUDED[:2])  # 2 of 4 keep a root: exactly half
    s = class_alpha_crit(A, labels, W, b, D, 0, 0, modulation="clamped").summary()
    assert s["shown"] == pytest.approx(3.0) and s["withheld_reason"] is None


def test_linear_modulation_has_no_limit() -> None:
    # linear: z(α) = z − αS exactly, nothing is switched off; a = e3 has its root at 1/0.03
    A, labels, W, b, D = _samples(KEPT + [E[3]])
    r = class_alpha_crit(A, labels, W, b, D, 0, 0, modulation="linear")
    assert r.alpha_off is None and not r.total_ablation_mask.any()
    assert r.numerical.tolist() == pytest.approx([2.0, 4.0, 1 / 0.03], rel=1e-9)


def test_shown_median_rule() -> None:
    assert shown_median(3.0, 5, 10) == (3.0, None)
    value, reason = shown_median(3.0, 4, 10, excluded=6)
    assert value is None and "4/10" in reason and "6 only at total ablation" in reason
    assert shown_median(None, 0, 0)[0] is None


def test_cli_table_counts_match_the_json_and_warnings_follow(tmp_path, built_session_path, capsys) -> None:
    """`salve alpha-crit --modulation clamped`: the text shows the same qualify counts as the
    JSON (analytic and numerical), withheld medians as "—", and the session's stored warnings
    (the dashboard's) carry the total-ablation gate exactly when a class is dominated by it."""
    import json

    from core.store.session import Session, copy_session
    from core.workflow.quality import check_alpha_crit
    from salve_tui.cli.main import main

    path = tmp_path / "tiny.h5"
    copy_session(built_session_path, path)
    assert main(["alpha-crit", str(path), "--modulation", "clamped", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert main(["alpha-crit", str(path), "--modulation", "clamped", "--no-record"]) == 0
    text = capsys.readouterr().out
    lines = {line.split()[0]: line for line in text.splitlines()[1:] if line and line.split()[0] in
             {b["class_name"] for b in payload["classes"]}}
    for brief, summary in zip(payload["classes"], payload["summaries"], strict=True):
        row = lines[brief["class_name"]]
        n = summary["n_samples"]
        assert f"{summary['n_qualifying_analytic']}/{n}" in row
        assert f"{summary['n_qualifying_numerical']}/{n}" in row
        assert brief["qualifying_numerical"] == summary["n_qualifying_numerical"]
        assert summary["alpha_off"] is not None and summary["off_mass_share"] == 0.95
        if summary["shown"] is None:
            assert row.split()[4] == "—" and summary["withheld_reason"] in text
    with Session.open(path, read_only=True) as session:
        summary = session.summary()
        stored = [w for w in summary["warnings"] if w["code"] == "alpha_crit_total_ablation"]
        assert [w["message"] for w in stored] == [w.message for w in check_alpha_crit(summary["alpha_crit"])]


def test_table_row_of_the_hand_worked_class() -> None:
    from core.workflow.alpha_crit import alpha_crit_brief
    from salve_tui.cli.control import _crit_table

    A, labels, W, b, D = _samples(KEPT + EXCLUDED)
    brief = alpha_crit_brief(class_alpha_crit(A, labels, W, b, D, 0, 0, modulation="clamped"), ["x", "y"])
    text = _crit_table([brief])
    row = text.splitlines()[1].split()
    assert row[:6] == ["x", "0", row[2], "5/5", "—", "2/5"]  # analytic: all 5 have z, S > 0
    assert "excluded (root only at α ≥ α_off, 95% of |D[:,k]| switched off): x 3" in text
    assert "x: numerical median withheld: only 2/5 samples have a root" in text
