"""What a saved result was computed from, and whether a stage rerun has since made it stale.

Every stored result (α_crit, sweeps, seed robustness, ground truth, recorded edits) carries
``computed_from``: for each pipeline stage it read, the finishing time of that stage's run
(``StageState.updated`` of a ``done`` stage: set once, when the run finishes; a rerun sets a
new one). A result is out of date when one of those stages is no longer done or finished
again since. Results saved before this record existed are judged by their ``recorded_at``:
flagged ("unknown provenance") only when a stage they read finished after they were saved or
is no longer done; a result with neither record is not flagged (nothing says it is stale).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.store.session import PIPELINE_STAGES, Session
from core.workflow.results import CONTROL_STAGES, RESULT_KINDS, ResultKind

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


@dataclass(frozen=True)
class StaleResult:
    """One stored result that is out of date: its kind, key, the reason and what reruns it."""

    kind: str  # a name in core.workflow.results.RESULT_KINDS
    key: str
    why: Staleness
    rerun: str = ""

    @property
    def message(self) -> str:
        return self.why.message

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "stage": self.why.stage, "message": self.why.message,
                "rerun": self.rerun, "unknown_provenance": self.why.unknown_provenance}


ALL_KINDS = tuple(RESULT_KINDS)


def stale_of(session: Session, kind: ResultKind, stages: Mapping[str, Any]) -> list[StaleResult]:
    """The stored results of one kind that are out of date."""
    hint = kind.rerun_hint(session.name)
    out = []
    for key, record in kind.records(session):
        why = staleness(stages, record, hint, kind.reads, session.name)
        if why is not None:
            out.append(StaleResult(kind.name, key, why, hint))
    return out


def stale_results(session: Session, kinds: Sequence[str] = ALL_KINDS) -> list[StaleResult]:
    """Every stored result of ``kinds`` that is out of date, with the reason."""
    stages = session.stages()
    return [r for kind in kinds for r in stale_of(session, RESULT_KINDS[kind], stages)]


def stale_warnings(session: Session, kinds: Sequence[str] = ALL_KINDS, short: bool = False) -> list[str]:
    """One line per kind with stale results: how many, and the first one's reason."""
    return summary_lines(stale_results(session, kinds), kinds, short)


def summary_lines(found: Sequence[StaleResult], kinds: Sequence[str] = ALL_KINDS,
                  short: bool = False) -> list[str]:
    """:func:`stale_warnings` of results already found (``short``: the reasons without the
    commands and full dates, for a screen's warning line)."""
    lines = []
    for kind in kinds:
        mine = [r for r in found if r.kind == kind]
        if mine:
            reason = mine[0].why.short if short else mine[0].message
            lines.append(f"{RESULT_KINDS[kind].count(len(mine))} out of date: {reason}")
    return lines


def overview_line(found: Sequence[StaleResult], view_keys: Mapping[str, str] | None = None) -> str:
    """One line over every kind (the dashboard's), "" when all are current: each kind's count
    with what recomputes it (the key of its view, from ``view_keys``: view name → key, else its
    command), then the first reason."""
    if not found:
        return ""
    parts = []
    for name, kind in RESULT_KINDS.items():
        mine = [r for r in found if r.kind == name]
        if mine:
            key = (view_keys or {}).get(kind.view)
            command = re.search(r"`[^`]+`", mine[0].rerun)
            how = key or (command.group(0) if command else "")
            parts.append(kind.count(len(mine)) + (f" ({how})" if how else ""))
    return f"warning: {', '.join(parts)} out of date ({found[0].why.short}); recompute them"


def stale_report(session: Session, kinds: Sequence[str] = ALL_KINDS) -> dict[str, Any]:
    """What the CLI adds to a listing: ``stale_results`` (one dict per stale result) and
    ``stale_warnings`` (``warning: …`` lines, one per kind)."""
    found = stale_results(session, kinds)
    return {"stale_results": [r.to_dict() for r in found],
            "stale_warnings": [f"warning: {line}" for line in summary_lines(found, kinds)]}
