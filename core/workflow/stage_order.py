"""The pipeline's stage order as the user should trust it: what a rerun makes stale, which
states read as stale, and what must run before a step (the stage runner re-exports these)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.store.session import PIPELINE_STAGES


def _mark_downstream_stale(tx, stage: str, stages: dict, why: str = "was rerun") -> None:
    order = list(PIPELINE_STAGES)
    for later in order[order.index(stage) + 1 :]:
        if stages.get(later) is not None and stages[later].state in ("done", "partial", "stale"):
            tx.set_stage(later, "stale", f"'{stage}' {why}; rerun this stage")


def downstream_of(stage: str) -> list[str]:
    """The stages after ``stage`` in pipeline order (they read what it writes)."""
    order = list(PIPELINE_STAGES)
    return order[order.index(stage) + 1 :] if stage in order else []


def stale_if_rerun(stages: dict, stage: str) -> list[str]:
    """The stages whose results a rerun of ``stage`` makes stale (done or partial after it)."""
    return [s for s in downstream_of(stage)
            if stages.get(s) is not None and stages[s].state in ("done", "partial")]


def effective_states(stages: dict[str, Any]) -> dict[str, str]:
    """Each stage's state as the user should trust it: a stage counted done while an earlier
    stage is not done (partial, failed, stale, pending) reads ``stale``.

    Sessions written before stale-marking was persisted (or killed between two commits) can
    hold ``activations ◐ partial`` next to ``SAE ✓ done``; this is what screens show and gate on.
    """
    out: dict[str, str] = {}
    upstream_ok = True
    for stage in PIPELINE_STAGES:
        value = stages.get(stage)  # a StageState, or its state as text (``list_sessions`` rows)
        state = value if isinstance(value, str) else (value.state if value is not None else "pending")
        if state == "done" and not upstream_ok:
            state = "stale"
        out[stage] = state
        upstream_ok = upstream_ok and state == "done"
    return out


def missing_stages(stages: dict, requires: Sequence[str]) -> list[str]:
    """Stages to run before something that needs ``requires``: every stage up to the last
    required one that is not effectively done, in pipeline order."""
    order = list(PIPELINE_STAGES)
    needed = [s for s in requires if s in order]
    if not needed:
        return []
    last = max(order.index(s) for s in needed)
    states = effective_states(stages)
    return [s for s in order[: last + 1] if states[s] != "done"]
