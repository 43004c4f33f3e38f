"""The session's edit log: build an edit for any method, preview it, record, list and clear.

Records are :class:`~core.control.spec.EditSpec` dicts plus ``recorded_at`` (and ``exports``),
so every recorded edit replays bit-for-bit with ``core.control.edit.replay``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from core.control.curves import confusion_matrix, per_class_accuracy
from core.control.edit import apply_edit
from core.control.spec import EditSpec, check_features
from core.control.sweep import EditEffect
from core.store.session import Session
from core.workflow.inputs import ControlInputs, check_writable, load_inputs


def build_spec(
    inputs: ControlInputs,
    method: str = "salve",
    features: Sequence[int] | int | None = None,
    target_class: int | None = None,
    mode: str = "suppress",
    alpha: float = 0.0,
    modulation: str = "linear",
    rome_sample: int | None = None,
) -> EditSpec:
    """An :class:`EditSpec` for any method, filling in what the method needs from the inputs.

    SALVE and steering default to ``target_class``'s dominant feature; ROME needs a class
    (or a feature, whose owning class is used) and stores its key so it replays anywhere.
    ``alpha`` is α (SALVE), β (steering) or the target value (ROME).
    """
    from core.control.methods.rome import rome_spec
    from core.control.methods.steering import steer_spec

    if isinstance(features, int):
        features = [features]
    features = None if features is None else [int(k) for k in features]
    if features:
        check_features(inputs.D, features)
    if target_class is None and features:
        target_class = inputs.feature_class(features[0])
    if method == "salve":
        if not features:
            if target_class is None:
                raise ValueError("a SALVE edit needs a feature or a class (its dominant feature)")
            features = [inputs.dominant_feature(target_class)]
        return EditSpec(tuple(features), mode, alpha, modulation, "salve")
    if target_class is None:
        raise ValueError(f"a {method} edit needs a target class (or a feature of that class)")
    if method == "rome":
        if mode != "suppress":
            raise ValueError("the ROME baseline only suppresses (it sets the class logit)")
        return rome_spec(inputs.A, inputs.labels, target_class, alpha, rome_sample)
    if method == "steer":
        if not features:
            features = [inputs.dominant_feature(target_class)]
        return steer_spec(inputs.M, target_class, alpha, features, mode)
    raise ValueError(f"method must be one of salve, rome, steer, got '{method}'")

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
    session: Session | None,
    spec: EditSpec,
    inputs: ControlInputs | None = None,
    split: str = "test",
) -> EditEffect:
    """Per-class accuracy before/after and confusion matrices of ``spec``; writes nothing.

    Fast enough for every keypress: cached inputs and unedited predictions, one matmul.
    Pass ``inputs`` to skip even the cache lookup (``session`` may then be None).
    """
    if inputs is None:
        if session is None:
            raise ValueError("preview_edit needs a session or ControlInputs")
        inputs = load_inputs(session, split)
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
    check_writable(session, True)
    entry: dict[str, Any] = {**spec.to_dict(), "recorded_at": time.time()}
    if exports:
        entry["exports"] = [str(p) for p in exports]
    if note:
        entry["note"] = note
    log = list(session.read_json("control/edits", []) or [])
    log.append(entry)
    with session.transaction() as tx:
        tx.write_json("control/edits", log)
        tx.update_json("summary", edits=len(log))
    return len(log) - 1

def edit_records(session: Session) -> list[dict[str, Any]]:
    """The raw edit log: each spec's fields plus ``recorded_at`` (and ``exports``/``note``)."""
    return list(session.read_json("control/edits", []) or [])

def list_edits(session: Session) -> list[EditSpec]:
    """The recorded edits, oldest first, as specs that replay exactly (``core.control.edit.replay``)."""
    return [EditSpec.from_dict(d) for d in edit_records(session)]

def clear_edits(session: Session) -> None:
    check_writable(session, True)
    with session.transaction() as tx:
        tx.delete("control/edits")
        tx.update_json("summary", edits=0)
