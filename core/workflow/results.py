"""The registry of stored results: one :class:`ResultKind` per kind of result a session keeps.

Each kind says where it is stored (``key``), which pipeline stages it reads (``reads``), what
recomputes it (``rerun``, ``view``), how its document is loaded and saved, how the document
splits into records (each carrying ``computed_from``, see ``core.workflow.provenance``) and
which of them are out of date (``stale``). The warnings of ``salve info``, the dashboard and
the screens that show a kind all come from :data:`RESULT_KINDS`, so a new kind of result is one
entry here. Every kind is written through :meth:`ResultKind.save` (arrays, index entry and its
provenance: ``recorded_at`` and ``computed_from``), so staleness is judged alike for all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.store.session import Session
from core.workflow.provenance import CONTROL_STAGES, Staleness, staleness

Records = Iterable[tuple[str, Mapping[str, Any]]]


def _by_key(doc: Any) -> Records:
    return sorted((doc or {}).items())


def _by_setting(doc: Any) -> Records:
    for setting, entries in sorted((doc or {}).items()):
        for key, entry in sorted(entries.items()):
            yield f"{setting}/{key}", entry


def _single(name: str) -> Callable[[Any], Records]:
    def records(doc: Any) -> Records:
        return [(name, doc)] if doc else []
    return records


def _numbered(doc: Any) -> Records:
    return [(str(i + 1), entry) for i, entry in enumerate(doc or [])]


# The inverse of each split above: put ``record`` at ``key`` of ``doc`` (in place where the
# document is a container, so batches can share one loaded index) and return the document.

def _put_by_key(doc: Any, key: str, record: dict[str, Any]) -> Any:
    doc[key] = record
    return doc


def _put_by_setting(doc: Any, key: str, record: dict[str, Any]) -> Any:
    setting, name = key.split("/", 1)
    doc.setdefault(setting, {})[name] = record
    return doc


def _put_single(doc: Any, key: str, record: dict[str, Any]) -> Any:
    return record


def _put_numbered(doc: Any, key: str, record: dict[str, Any]) -> Any:
    index = int(key) - 1
    if index == len(doc):
        doc.append(record)
    else:
        doc[index] = record
    return doc


@dataclass(frozen=True)
class NewResult:
    """One result to record through :meth:`ResultKind.save`: its key in the kind (as
    :meth:`ResultKind.records` lists it), its index entry, and its arrays by sub-group
    ("" = the result's own group, ``ResultKind.data_path``)."""

    key: str
    entry: Mapping[str, Any]
    arrays: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    replace: bool = False  # drop the result's stored arrays first (sub-groups no longer written)


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


@dataclass(frozen=True)
class ResultKind:
    """One kind of stored result (its JSON document at ``key``)."""

    name: str  # alpha-crit | sweep | robustness | groundtruth | edit
    key: str  # the session's JSON document that indexes every result of the kind
    one: str  # "α_crit result": how a warning counts one …
    many: str  # … and several
    rerun: str  # what recomputes it, NAME standing for the session ("rerun α_crit (`salve alpha-crit NAME`)")
    view: str  # the TUI view that shows and recomputes it ("" = none)
    split: Callable[[Any], Records] = field(default=_by_key, repr=False)  # document → (key, record)
    reads: tuple[str, ...] = CONTROL_STAGES
    empty: Callable[[], Any] = dict
    put: Callable[[Any, str, dict[str, Any]], Any] = field(default=_put_by_key, repr=False)  # split's inverse
    data: str = ""  # where a result's arrays go, "{key}" standing for its key ("": none)

    def load(self, session: Session) -> Any:
        """The stored document (an empty one when none is stored yet)."""
        return session.read_json(self.key, self.empty()) or self.empty()

    def stamp(self, entry: Mapping[str, Any], computed_from: Mapping[str, float]) -> dict[str, Any]:
        """``entry`` with the provenance every kind records: when it was recorded and the
        finishing time of each stage run it read (``core.workflow.provenance``)."""
        return {**entry, "recorded_at": time.time(), "computed_from": dict(computed_from)}

    def save(self, tx: Any, doc: Any, new: Sequence[NewResult] = (),
             computed_from: Mapping[str, float] | None = None) -> Any:
        """The one place a result kind is written, inside an open transaction (all or nothing,
        ``Session.transaction``): each new result's arrays under :meth:`data_path`, its entry
        stamped (:meth:`stamp`, with ``computed_from``) and put into ``doc`` (the stored
        document, updated in place), then the document. Returns the document written."""
        if new and computed_from is None:
            raise ValueError(f"a new {self.one} needs the stage runs it was computed from")
        for result in new:
            if result.replace:
                tx.delete(self.data_path(result.key))
            for sub, arrays in result.arrays.items():
                tx.write_arrays(self.data_path(result.key, sub), arrays)
            doc = self.put(doc, result.key, self.stamp(result.entry, computed_from or {}))
        tx.write_json(self.key, doc)
        return doc

    def data_path(self, key: str, sub: str = "") -> str:
        """The group holding the arrays of result ``key`` (``sub``: one of its sub-groups)."""
        if not self.data:
            raise ValueError(f"a {self.one} stores no arrays")
        base = self.data.format(key=key)
        return f"{base}/{sub}" if sub else base

    def read_arrays(self, session: Session, key: str, sub: str = "") -> dict[str, Any]:
        """The stored arrays of result ``key`` (``sub``: one of its sub-groups)."""
        return session.read_arrays(self.data_path(key, sub))

    def records(self, session: Session) -> Records:
        """``(key, record)`` of every stored result of the kind, in a stable order."""
        return self.split(self.load(session))

    def rerun_hint(self, session_name: str) -> str:
        return self.rerun.replace("NAME", session_name)

    def count(self, n: int) -> str:
        return f"{n} {self.one if n == 1 else self.many}"

    def stale(self, session: Session, stages: Mapping[str, Any] | None = None) -> list[StaleResult]:
        """The stored results of the kind that a stage rerun made out of date, with why."""
        stages = session.stages() if stages is None else stages
        hint = self.rerun_hint(session.name)
        found = ((key, staleness(stages, record, hint, self.reads, session.name))
                 for key, record in self.records(session))
        return [StaleResult(self.name, key, why, hint) for key, why in found if why is not None]


ALPHA_CRIT = ResultKind("alpha-crit", "control/alpha_crit_index", "α_crit result", "α_crit results",
                        "rerun α_crit (`salve alpha-crit NAME`)", "alpha_crit", _by_setting,
                        put=_put_by_setting, data="control/alpha_crit/{key}")
SWEEPS = ResultKind("sweep", "control/sweep_index", "sweep", "sweeps",
                    "rerun the sweep (`salve sweep NAME`)", "", data="control/sweeps/{key}")
ROBUSTNESS = ResultKind("robustness", "control/robustness", "seed-robustness run", "seed-robustness runs",
                        "rerun seed robustness (`salve robustness NAME`)", "seed_robustness",
                        data="control/robustness/{key}")
GROUNDTRUTH = ResultKind("groundtruth", "groundtruth/results", "ground-truth result", "ground-truth results",
                         "rerun ground truth (`salve groundtruth NAME`)", "ground_truth",
                         _single("groundtruth"), put=_put_single, data="groundtruth")
#: An edit reads its features' SAE and the head it scales, and the rankings its features and
#: strength were chosen from (the dominant feature, class means).
EDITS = ResultKind("edit", "control/edits", "recorded edit", "recorded edits",
                   "check the edit's features and record it again (`salve edit NAME`)", "edit_stack",
                   _numbered, empty=list, put=_put_numbered)

RESULT_KINDS: dict[str, ResultKind] = {k.name: k for k in (ALPHA_CRIT, SWEEPS, ROBUSTNESS, GROUNDTRUTH, EDITS)}
ALL_KINDS = tuple(RESULT_KINDS)


# ----------------------------------------------------------------------------- out-of-date results


def stale_results(session: Session, kinds: Sequence[str] = ALL_KINDS) -> list[StaleResult]:
    """Every stored result of ``kinds`` that is out of date, with the reason."""
    stages = session.stages()
    return [r for kind in kinds for r in RESULT_KINDS[kind].stale(session, stages)]


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
