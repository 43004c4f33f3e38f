"""The result registry (core.workflow.results) and the one JSON sanitizer (core.jsonsafe)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_provenance import folder  # noqa: F401 - the fixture: a copy of the built session

from core.jsonsafe import json_safe
from core.workflow.provenance import Staleness
from core.workflow.results import RESULT_KINDS, StaleResult, overview_line


def test_json_safe_turns_non_finite_numbers_into_null_at_any_depth() -> None:
    value = {1: [math.nan, (np.float32(0.5), torch.tensor(math.inf))], "x": {"y": np.int64(3), "z": -math.inf}}
    safe = json_safe(value)
    assert safe == {"1": [None, [0.5, None]], "x": {"y": 3, "z": None}}
    assert json.loads(json.dumps(safe, allow_nan=False)) == safe  # strict JSON
    assert json_safe(torch.tensor(2.5, dtype=torch.float64)) == 2.5 and json_safe(None) is None


def test_every_kind_has_its_own_document_and_a_view_that_exists() -> None:
    from salve_tui.app.screens.base import discover_views

    kinds = list(RESULT_KINDS.values())
    assert len({k.key for k in kinds}) == len(kinds)
    views = {v.name: v.key for v in discover_views()}
    assert all(k.view in views for k in kinds if k.view), [k.view for k in kinds if k.view not in views]
    assert all("NAME" in k.rerun and "`salve " in k.rerun for k in kinds)


def test_the_dashboard_line_counts_each_kind_with_its_view_key_or_command() -> None:
    why = Staleness("sae", "long", short="the SAE was retrained at 10:00:00, after they were computed")
    found = [StaleResult("alpha-crit", "a", why, "rerun α_crit (`salve alpha-crit s`)"),
             StaleResult("alpha-crit", "b", why, "rerun α_crit (`salve alpha-crit s`)"),
             StaleResult("sweep", "c", why, "rerun the sweep (`salve sweep s`)")]
    assert overview_line(found, {"alpha_crit": "k"}) == (
        "warning: 2 α_crit results (k), 1 sweep (`salve sweep s`) out of date "
        "(the SAE was retrained at 10:00:00, after they were computed); recompute them")
    assert overview_line([], {"alpha_crit": "k"}) == ""


# ----------------------------------------------------------------------------- saving (issue 21 item 4)

#: Where one result of each kind is saved: its key as ``ResultKind.records`` lists it.
SAVED_KEYS = {"alpha-crit": "suppress-linear/c0-f1", "sweep": "salve-f1-suppress-linear-c0",
              "robustness": "suppress-linear", "groundtruth": "groundtruth", "edit": "1"}


def test_every_kind_saved_through_the_registry_reads_back_and_goes_stale_after_a_rerun(
        folder: Path) -> None:  # noqa: F811
    """One result of each kind saved through ``ResultKind.save`` (arrays, entry, provenance) is
    read back with its arrays and stage runs, is current, and is out of date, with the rerun
    stage named, once a stage it reads (the rankings) is rerun."""
    from core.store.session import Session
    from core.workflow.pipeline import run_stage
    from core.workflow.provenance import stage_runs
    from core.workflow.results import NewResult, stale_results

    assert set(SAVED_KEYS) == set(RESULT_KINDS)
    with Session.open(folder / "tiny.h5") as session:
        runs = stage_runs(session)
        before = time.time()
        with session.transaction() as tx:
            for i, (name, kind) in enumerate(RESULT_KINDS.items()):
                arrays = {"": {"x": np.arange(3.0) + i}} if kind.data else {}
                kind.save(tx, kind.load(session), [NewResult(SAVED_KEYS[name], {"value": i}, arrays)], runs)
        for i, (name, kind) in enumerate(RESULT_KINDS.items()):
            record = dict(kind.records(session))[SAVED_KEYS[name]]
            assert record["value"] == i and record["computed_from"] == runs, name
            assert before <= record["recorded_at"] <= time.time()
            if kind.data:
                np.testing.assert_array_equal(kind.read_arrays(session, SAVED_KEYS[name])["x"], np.arange(3.0) + i)
        assert [r for r in stale_results(session) if SAVED_KEYS[r.kind] == r.key] == []
        run_stage(session, "rankings")
        found = stale_results(session)
    assert sorted((r.kind, r.why.stage) for r in found if SAVED_KEYS[r.kind] == r.key) == sorted(
        (name, "rankings") for name in RESULT_KINDS)


def test_a_replacing_save_drops_the_results_old_subgroups_and_provenance_is_required(
        folder: Path) -> None:  # noqa: F811
    from core.store.session import Session
    from core.workflow.results import ROBUSTNESS, SWEEPS, NewResult

    with Session.open(folder / "tiny.h5") as session:
        with session.transaction() as tx:
            ROBUSTNESS.save(tx, {}, [NewResult("s", {}, {"c0": {"x": np.zeros(2)}, "c1": {"x": np.ones(2)}})], {})
        assert session.has("control/robustness/s/c1/x")
        with session.transaction() as tx:
            ROBUSTNESS.save(tx, {}, [NewResult("s", {}, {"c0": {"x": np.ones(2)}}, replace=True)], {})
        assert not session.has("control/robustness/s/c1/x")
        np.testing.assert_array_equal(ROBUSTNESS.read_arrays(session, "s", "c0")["x"], np.ones(2))
        with pytest.raises(ValueError, match="stage runs"), session.transaction() as tx:
            SWEEPS.save(tx, {}, [NewResult("k", {})])
        assert "k" not in SWEEPS.load(session)  # the refused save left nothing behind
