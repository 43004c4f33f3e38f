"""The registry of stored results: one :class:`ResultKind` per kind of result a session keeps.

Each kind says where it is stored (``key``), which pipeline stages it reads (``reads``), what
recomputes it (``rerun``), how its document is loaded and saved, and how the document splits
into records (each carrying ``computed_from``, see ``core.workflow.provenance``). Provenance,
staleness warnings and the fronts (``salve info``, the dashboard, the screens that show a
kind) all iterate :data:`RESULT_KINDS`, so a new kind of result is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.store.session import Session

#: The stages control results read: the classifier head, the cached activations, the SAE
#: decoder and the rankings (class means, dominant features).
CONTROL_STAGES = ("backbone", "activations", "sae", "rankings")

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

    def load(self, session: Session) -> Any:
        """The stored document (an empty one when none is stored yet)."""
        return session.read_json(self.key, self.empty()) or self.empty()

    def save(self, tx: Any, doc: Any) -> None:
        """Write the document inside an open transaction."""
        tx.write_json(self.key, doc)

    def records(self, session: Session) -> Records:
        """``(key, record)`` of every stored result of the kind, in a stable order."""
        return self.split(self.load(session))

    def rerun_hint(self, session_name: str) -> str:
        return self.rerun.replace("NAME", session_name)

    def count(self, n: int) -> str:
        return f"{n} {self.one if n == 1 else self.many}"


ALPHA_CRIT = ResultKind("alpha-crit", "control/alpha_crit_index", "α_crit result", "α_crit results",
                        "rerun α_crit (`salve alpha-crit NAME`)", "alpha_crit", _by_setting)
SWEEPS = ResultKind("sweep", "control/sweep_index", "sweep", "sweeps",
                    "rerun the sweep (`salve sweep NAME`)", "")
ROBUSTNESS = ResultKind("robustness", "control/robustness", "seed-robustness run", "seed-robustness runs",
                        "rerun seed robustness (`salve robustness NAME`)", "seed_robustness")
GROUNDTRUTH = ResultKind("groundtruth", "groundtruth/results", "ground-truth result", "ground-truth results",
                         "rerun ground truth (`salve groundtruth NAME`)", "ground_truth",
                         _single("groundtruth"))
#: An edit reads its features' SAE and the head it scales, and the rankings its features and
#: strength were chosen from (the dominant feature, class means).
EDITS = ResultKind("edit", "control/edits", "recorded edit", "recorded edits",
                   "check the edit's features and record it again (`salve edit NAME`)", "edit_stack",
                   _numbered, empty=list)

RESULT_KINDS: dict[str, ResultKind] = {k.name: k for k in (ALPHA_CRIT, SWEEPS, ROBUSTNESS, GROUNDTRUTH, EDITS)}
