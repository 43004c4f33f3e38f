"""The session's edit log: build an edit for any method, preview it, record, list and clear.

Records are :class:`~core.control.spec.EditSpec` dicts plus ``recorded_at`` (and ``exports``),
so every recorded edit replays bit-for-bit with ``core.control.edit.replay``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from core.control.curves import confusion_matrix, per_class_accuracy
from core.control.edit import apply_edit
from core.control.methods.base import EditMethod, EditRequest
from core.control.methods.registry import get_method
from core.control.spec import EditSpec, check_features
from core.control.sweep import EditEffect
from core.store.session import Session
from core.workflow.inputs import ControlInputs, check_writable, inputs_for, load_inputs
from core.workflow.results import EDITS


def build_spec(
    inputs: ControlInputs,
    method: str | EditMethod | None = None,
    features: Sequence[int] | int | None = None,
    target_class: int | None = None,
    mode: str = "suppress",
    alpha: float = 0.0,
    modulation: str = "linear",
    sample: int | None = None,
) -> EditSpec:
    """An :class:`EditSpec` for any method (default: the registry's first), filling in what
    the method needs from the inputs (:meth:`EditMethod.build_spec`).

    Methods with features default to ``target_class``'s dominant feature; a feature given
    without a class names its owning class. ``alpha`` is the method's strength (α, β, the
    ROME target value); ``sample``: the sample a method builds its edit from (ROME's key).
    """
    m = get_method(method)
    if isinstance(features, int):
        features = [features]
    features = None if features is None else [int(k) for k in features]
    if features:
        check_features(inputs.D, features)
    if target_class is None and features:
        target_class = inputs.feature_class(features[0])
    if target_class is None:
        raise ValueError(f"a {m.label} edit needs a feature or a class (its dominant feature)")
    if m.needs_features and not features:
        features = [inputs.dominant_feature(target_class)]
    request = EditRequest(target_class, features if m.needs_features else None, None, mode,
                          modulation, options=m.request_options({"sample_index": sample}))
    return m.build_spec(inputs.cached(), request, alpha)

def edited_head(
    inputs: ControlInputs, edits: EditSpec | Sequence[EditSpec]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W', b')`` after applying ``edits`` in order to the session's original head."""
    edits = [edits] if isinstance(edits, EditSpec) else list(edits)
    W, b = inputs.W, inputs.b
    for spec in edits:
        W, b = apply_edit(W, b, inputs.D, spec)
    return W, b

def preview_edit(
    session: Session,
    spec: EditSpec,
    inputs: ControlInputs | None = None,
    split: str = "test",
) -> EditEffect:
    """Load the split's control inputs (unless given) → :func:`edit_effect_on`; writes nothing."""
    return edit_effect_on(inputs_for(session, inputs, split), spec)


def edit_effect_on(inputs: ControlInputs, spec: EditSpec) -> EditEffect:
    """Per-class accuracy before/after and confusion matrices of ``spec`` (pure).

    Fast enough for every keypress: cached inputs and unedited predictions, one matmul.
    """
    W_new, b_new = apply_edit(inputs.W, inputs.b, inputs.D, spec)
    after = torch.addmm(b_new, inputs.A, W_new.T).argmax(1)
    before = inputs.base_predictions
    C = inputs.num_classes
    return EditEffect(
        spec,
        per_class_accuracy(inputs.labels, before, C),
        per_class_accuracy(inputs.labels, after, C),
        confusion_matrix(inputs.labels, before, C),
        confusion_matrix(inputs.labels, after, C),
    )


def record_edit(
    session: Session, spec: EditSpec, exports: Sequence[str] | None = None, note: str = ""
) -> int:
    """Append ``spec`` to the session's edit log; returns its position in the log."""
    from core.workflow.provenance import stage_runs

    check_writable(session, True)
    entry = EDITS.stamp(spec.to_dict(), stage_runs(session, EDITS.reads))
    if exports:
        entry["exports"] = [str(p) for p in exports]
    if note:
        entry["note"] = note
    log = edit_records(session)
    _commit_stack(session, [*log, entry], f"record {describe_spec(spec)}")
    return len(log)

def edit_records(session: Session) -> list[dict[str, Any]]:
    """The raw edit log: each spec's fields plus ``recorded_at`` (and ``exports``/``note``)."""
    return EDITS.load(session)

def list_edits(session: Session) -> list[EditSpec]:
    """The recorded edits, oldest first, as specs that replay exactly (``core.control.edit.replay``)."""
    return [EditSpec.from_dict(d) for d in edit_records(session)]

def clear_edits(session: Session) -> None:
    """Empty the edit stack (undoable like every other change to it)."""
    check_writable(session, True)
    if edit_records(session):
        _commit_stack(session, [], "clear the stack")


# ----------------------------------------------------------------------------- the edit stack
# Every change to ``control/edits`` (record, remove, clear, enable/disable) goes through
# :func:`_commit_stack`, which keeps the previous stack in ``control/edits_history`` so undo and
# redo survive closing the session. Records themselves are never rewritten field by field except
# for ``active`` and the ``exports`` bookkeeping, so each replays exactly as it was recorded.

HISTORY_KEY = "control/edits_history"
UNDO_DEPTH = 50


def describe_spec(spec: EditSpec, long: bool = False) -> str:
    """A short one-line label (``SALVE suppress f55 α=2 linear``) or, ``long``, a sentence."""
    return get_method(spec.method).describe(spec, long)


def _history(session: Session) -> dict[str, list[dict[str, Any]]]:
    raw = session.read_json(HISTORY_KEY, {}) or {}
    return {"undo": list(raw.get("undo", [])), "redo": list(raw.get("redo", []))}


def _write_stack(tx: Any, log: list[dict[str, Any]], history: dict[str, Any]) -> None:
    EDITS.save(tx, log)
    tx.write_json(HISTORY_KEY, history)
    tx.update_json("summary", edits=len(log))


def _commit_stack(session: Session, new_log: list[dict[str, Any]], action: str) -> None:
    """Replace the stack with ``new_log`` in one transaction; the old one becomes undoable."""
    history = _history(session)
    history["undo"] = [*history["undo"], {"action": action, "edits": edit_records(session)}][-UNDO_DEPTH:]
    history["redo"] = []
    with session.transaction() as tx:
        _write_stack(tx, new_log, history)


def _check_number(log: Sequence[Any], number: int) -> int:
    if not log:
        raise ValueError("the edit stack is empty: record an edit first (`salve edit` or w in the TUI)")
    if not 1 <= int(number) <= len(log):
        raise ValueError(f"there is no edit #{number}: the stack holds #1..#{len(log)}")
    return int(number) - 1


def remove_edit(session: Session, number: int) -> EditSpec:
    """Remove edit ``number`` (1-based, as listed) from the stack; returns its spec."""
    check_writable(session, True)
    log = edit_records(session)
    index = _check_number(log, number)
    removed = log.pop(index)
    spec = EditSpec.from_dict(removed)
    _commit_stack(session, log, f"remove #{number} {describe_spec(spec)}")
    return spec


def set_edit_active(session: Session, number: int, active: bool) -> None:
    """Switch edit ``number`` in or out of the composition without removing it."""
    check_writable(session, True)
    log = edit_records(session)
    index = _check_number(log, number)
    if bool(log[index].get("active", True)) == bool(active):
        return
    log[index] = {**log[index], "active": bool(active)}
    verb = "enable" if active else "disable"
    _commit_stack(session, log, f"{verb} #{number} {describe_spec(EditSpec.from_dict(log[index]))}")


def _step_history(session: Session, source: str, target: str) -> str | None:
    check_writable(session, True)
    history = _history(session)
    if not history[source]:
        return None
    step = history[source].pop()
    history[target] = [*history[target], {"action": step["action"], "edits": edit_records(session)}][-UNDO_DEPTH:]
    with session.transaction() as tx:
        _write_stack(tx, list(step["edits"]), history)
    return str(step["action"])


def undo_edit(session: Session) -> str | None:
    """Undo the last change to the stack; returns what it undid (None: nothing to undo)."""
    return _step_history(session, "undo", "redo")


def redo_edit(session: Session) -> str | None:
    """Redo the last undone change; returns what it redid (None: nothing to redo)."""
    return _step_history(session, "redo", "undo")


def history_actions(session: Session) -> dict[str, str | None]:
    """What undo and redo would do next (for the UI), or None."""
    history = _history(session)
    return {k: (history[k][-1]["action"] if history[k] else None) for k in ("undo", "redo")}


def active_edits(session: Session) -> list[EditSpec]:
    """The specs of the active edits, in stack order: what an export of the stack applies."""
    return [EditSpec.from_dict(d) for d in edit_records(session) if d.get("active", True)]


def note_exports(session: Session, files: Sequence[str | Any], numbers: Sequence[int]) -> None:
    """Add exported file paths to the records they came from (bookkeeping, not undoable)."""
    log = edit_records(session)
    paths = [str(p) for p in files]
    changed = False
    for number in numbers:
        index = _check_number(log, number)
        old = list(log[index].get("exports", []))
        new = [p for p in paths if p not in old]
        if new:
            log[index] = {**log[index], "exports": old + new}
            changed = True
    if not changed:  # a reused export is already listed: no rewrite of the session
        return
    with session.transaction() as tx:
        EDITS.save(tx, log)


@dataclass
class AccuracyChange:
    """What an edit (or a composition) does on the cached test split."""

    overall_before: float
    overall_after: float
    worst_delta: float  # the most negative per-class change (classes with test samples)
    worst_class: int
    per_class_before: list[float]
    per_class_after: list[float]

    @property
    def overall_delta(self) -> float:
        return self.overall_after - self.overall_before

    def to_dict(self, class_names: Sequence[str]) -> dict[str, Any]:
        return {
            "overall_before": self.overall_before,
            "overall_after": self.overall_after,
            "overall_delta": self.overall_delta,
            "worst_class_delta": self.worst_delta,
            "worst_class": class_names[self.worst_class] if self.worst_class >= 0 else None,
            "per_class_before": dict(zip(class_names, self.per_class_before, strict=True)),
            "per_class_after": dict(zip(class_names, self.per_class_after, strict=True)),
        }


def accuracy_change(inputs: ControlInputs, edits: EditSpec | Sequence[EditSpec]) -> AccuracyChange:
    """Overall and per-class test accuracy before/after ``edits`` applied in order."""
    W_new, b_new = edited_head(inputs, edits)
    after = torch.addmm(b_new, inputs.A, W_new.T).argmax(1)
    before = inputs.base_predictions
    C = inputs.num_classes
    acc_before = per_class_accuracy(inputs.labels, before, C).double()
    acc_after = per_class_accuracy(inputs.labels, after, C).double()
    delta = (acc_after - acc_before).nan_to_num(nan=float("inf"))  # absent classes never worst
    worst = int(delta.argmin()) if bool(torch.isfinite(delta).any()) else -1
    return AccuracyChange(
        float((before == inputs.labels).double().mean()),
        float((after == inputs.labels).double().mean()),
        float(delta[worst]) if worst >= 0 else 0.0,
        worst,
        [float(v) for v in acc_before.tolist()],
        [float(v) for v in acc_after.tolist()],
    )


@dataclass
class EditRow:
    """One listed edit: its record, number (1-based) and what it does alone."""

    number: int
    spec: EditSpec
    active: bool
    recorded_at: float
    exports: list[str]
    change: AccuracyChange

    def to_dict(self, class_names: Sequence[str]) -> dict[str, Any]:
        spec = self.spec
        return {
            "number": self.number,
            "method": spec.method,
            "features": list(spec.features),
            "mode": spec.mode,
            "strength": spec.alpha,
            "modulation": spec.modulation,
            "target_class": spec.extra.get("target_class"),
            "active": self.active,
            "recorded_at": self.recorded_at,
            "exports": list(self.exports),
            "label": describe_spec(spec),
            "spec": spec.to_dict(),
            **{k: v for k, v in self.change.to_dict(class_names).items()
               if not k.startswith("per_class")},
        }


@dataclass
class EditStack:
    """The whole stack: every row plus the composition of the active ones."""

    rows: list[EditRow]
    composition: AccuracyChange | None  # None when no edit is active
    class_names: list[str]
    undo: str | None = None
    redo: str | None = None

    @property
    def active_numbers(self) -> list[int]:
        return [r.number for r in self.rows if r.active]

    def to_dict(self) -> dict[str, Any]:
        return {
            "edits": [r.to_dict(self.class_names) for r in self.rows],
            "active": self.active_numbers,
            "composition": None if self.composition is None
            else self.composition.to_dict(self.class_names),
            "undo": self.undo,
            "redo": self.redo,
        }


def edit_stack(session: Session, inputs: ControlInputs | None = None) -> EditStack:
    """List the stack with each edit's effect alone and the composition of the active edits."""
    records = edit_records(session)
    if inputs is None:
        inputs = load_inputs(session)
    rows = []
    for i, record in enumerate(records):
        spec = EditSpec.from_dict(record)
        rows.append(EditRow(i + 1, spec, bool(record.get("active", True)),
                            float(record.get("recorded_at", 0.0)), list(record.get("exports", [])),
                            accuracy_change(inputs, spec)))
    active = [r.spec for r in rows if r.active]
    history = history_actions(session)
    return EditStack(rows, accuracy_change(inputs, active) if active else None,
                     list(inputs.class_names), history["undo"], history["redo"])


def compare_edits(stack: EditStack, first: int, second: int) -> dict[str, Any]:
    """Two listed edits side by side: per-class accuracy before, after each, and the gap."""
    rows = {r.number: r for r in stack.rows}
    for number in (first, second):
        if number not in rows:
            raise ValueError(f"there is no edit #{number}: the stack holds #1..#{len(stack.rows)}")
    a, b = rows[first].change, rows[second].change
    names = stack.class_names
    return {
        "first": rows[first].to_dict(names),
        "second": rows[second].to_dict(names),
        "per_class": [
            {"class": name, "before": before, "after_first": x, "after_second": y}
            for name, before, x, y in zip(names, a.per_class_before, a.per_class_after,
                                           b.per_class_after, strict=True)
        ],
    }
