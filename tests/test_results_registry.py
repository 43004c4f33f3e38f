"""The result registry (core.workflow.results) and the one JSON sanitizer (core.jsonsafe)."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

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
