"""Stage states a user can trust (pure functions of core.workflow.pipeline) and the ETA of a resume."""

from __future__ import annotations

import time

import pytest

from core.jobs import Progress
from core.store.session import StageState
from core.workflow.pipeline import effective_states, missing_stages, stale_if_rerun


def states(**given: str) -> dict[str, StageState]:
    return {name: StageState(state) for name, state in given.items()}


def test_a_stage_done_after_a_partial_or_failed_one_reads_stale() -> None:
    stages = states(data="done", backbone="done", activations="partial", sae="done", rankings="done")
    assert effective_states(stages) == {"data": "done", "backbone": "done", "activations": "partial",
                                        "sae": "stale", "rankings": "stale"}
    failed = states(data="failed", backbone="done")
    assert effective_states(failed) == {"data": "failed", "backbone": "stale", "activations": "pending",
                                        "sae": "pending", "rankings": "pending"}
    # the text form (sessions list rows) gives the same answer
    assert effective_states({"data": "done", "backbone": "stale", "activations": "done"})["activations"] == "stale"


def test_missing_stages_lists_everything_up_to_the_requirement() -> None:
    stages = states(data="done", backbone="done", activations="partial", sae="done", rankings="done")
    assert missing_stages(stages, ("rankings",)) == ["activations", "sae", "rankings"]
    assert missing_stages(stages, ("backbone",)) == []
    assert missing_stages(stages, ()) == []


def test_stale_if_rerun_names_the_done_or_partial_later_stages() -> None:
    stages = states(data="done", backbone="done", activations="done", sae="partial", rankings="pending")
    assert stale_if_rerun(stages, "backbone") == ["activations", "sae"]
    assert stale_if_rerun(stages, "rankings") == []


def test_eta_counts_only_the_work_of_this_run() -> None:
    started = time.monotonic() - 10.0  # ten seconds into this run
    resumed = Progress("sae", 60, 100, started_at=started, start_done=50)  # 10 units in 10 s
    assert resumed.eta_seconds == pytest.approx(40.0, abs=0.1)
    fresh = Progress("sae", 60, 100, started_at=started)
    assert fresh.eta_seconds == pytest.approx(10.0 * 40 / 60, abs=0.1)
    assert Progress("sae", 50, 100, started_at=started, start_done=50).eta_seconds is None
