"""What a saved result was computed from, and whether a stage rerun has since made it stale.

Every stored result (α_crit, sweeps, seed robustness, ground truth, recorded edits) carries
``computed_from``: for each pipeline stage it read, the finishing time of that stage's run
(``StageState.updated`` of a ``done`` stage: set once, when the run finishes; a rerun sets a
new one). A result is out of date when one of those stages is no longer done or finished
again since. Results saved before this record existed are judged by their ``recorded_at``:
flagged ("unknown provenance") only when a stage they read finished after they were saved or
is no longer done; a result with neither record is not flagged (nothing says it is stale).
Which results a session keeps, and their out-of-date warnings: ``core.workflow.results``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.store.session import PIPELINE_STAGES, Session

#: The stages control results read: the classifier head, the cached activations, the SAE
#: decoder and the rankings (class means, dominant features).
CONTROL_STAGES = ("backbone", "activations", "sae", "rankings")

_LABELS = {"data": "dataset", "backbone": "backbone", "activations": "cached activations",
           "sae": "SAE", "rankings": "rankings"}
_PLURAL = frozenset({"activations", "rankings"})


def _is(stage: str) -> str:
    return "are" if stage in _PLURAL else "is"


def _was(stage: str) -> str:
    return "were" if stage in _PLURAL else "was"


_RERUN = {"data": "rescanned", "backbone": "retrained", "activations": "re-extracted",
          "sae": "retrained", "rankings": "recomputed"}


def stage_runs(session: Session, stages: Sequence[str] = CONTROL_STAGES) -> dict[str, float]:
    """``{stage: finishing time}`` of the current run of each done stage among ``stages``."""
    return runs_of(session.stages(), stages)


def runs_of(stages: Mapping[str, Any], names: Sequence[str] = CONTROL_STAGES) -> dict[str, float]:
    return {s: float(stages[s].updated) for s in names
            if stages.get(s) is not None and stages[s].state == "done"}


def when(timestamp: float, other: float | None = None) -> str:
    """A stage time as people read it (local time, to the second: reruns can be minutes apart);
    with ``other`` on the same day, the time of day only."""
    stamp = time.localtime(timestamp)
    if other is not None and time.localtime(other)[:3] == stamp[:3]:
        return time.strftime("%H:%M:%S", stamp)
    return time.strftime("%Y-%m-%d %H:%M:%S", stamp)


@dataclass(frozen=True)
class Staleness:
    """Why a saved result no longer matches the session's stages (``stage``: the first one)."""

    stage: str
    message: str
    unknown_provenance: bool = False
    short: str = ""  # the reason without the commands, for a one-line warning on a screen


def staleness(stages: Mapping[str, Any], record: Mapping[str, Any], rerun: str,
              reads: Sequence[str] = CONTROL_STAGES, session_name: str = "NAME") -> Staleness | None:
    """None when ``record`` (a stored result's metadata) was computed from the current run of
    every stage it reads, else why not (the first such stage in pipeline order); ``rerun``
    names what recomputes it ("rerun α_crit"), preceded by running the pipeline when one of
    the stages is not done now."""
    computed_from = record.get("computed_from")
    order = [s for s in PIPELINE_STAGES if s in reads]
    if any(stages.get(s) is None or stages[s].state != "done" for s in order):
        rerun = f"run the pipeline (`salve run {session_name}`), then {rerun}"
    if isinstance(computed_from, Mapping) and computed_from:
        for stage in order:
            if stage not in computed_from:
                continue
            then, now = float(computed_from[stage]), stages.get(stage)
            label = _LABELS[stage]
            if now is None or now.state != "done":
                state = "missing" if now is None else now.state
                return Staleness(stage, f"computed with the {label} of {when(then)}; the {label} "
                                        f"{_is(stage)} now {state}: {rerun}",
                                 short=f"the {label} {_is(stage)} {state} since they were computed")
            if float(now.updated) != then:
                return Staleness(stage, f"computed with the {label} of {when(then)}; the {label} "
                                        f"{_was(stage)} {_RERUN[stage]} at {when(now.updated)}: {rerun}",
                                 short=f"the {label} {_was(stage)} {_RERUN[stage]} at "
                                       f"{when(now.updated, then)}, after they were computed")
        return None
    saved = float(record.get("recorded_at") or 0.0)
    if not saved:
        return None  # nothing says when or from what: not flagged
    for stage in order:
        now, label = stages.get(stage), _LABELS[stage]
        if now is None or now.state != "done":
            state = "missing" if now is None else now.state
            return Staleness(stage, f"unknown provenance (saved {when(saved)}, before runs were "
                                    f"recorded); the {label} {_is(stage)} now {state}: {rerun}", True,
                             f"unknown provenance; the {label} {_is(stage)} {state} since they were saved")
        if float(now.updated) > saved:
            return Staleness(stage, f"unknown provenance (saved {when(saved)}, before runs were "
                                    f"recorded); the {label} {_was(stage)} {_RERUN[stage]} at "
                                    f"{when(now.updated)}, after it: {rerun}", True,
                             f"unknown provenance; the {label} {_was(stage)} {_RERUN[stage]} at "
                             f"{when(now.updated, saved)}, after they were saved")
    return None
