"""What ``w`` in the edit preview runs as an app job: export the edited model, then record the
edit in the session's edit stack with the written paths (once: pressed twice, no copy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.control.spec import EditSpec
    from core.store.session import Session
    from core.workflow.export import ExportResult


def record_and_export(session: Session, spec: EditSpec) -> ExportResult:
    """Export the model with ``spec`` applied, then record the edit with the written paths."""
    from core.workflow.edits import list_edits, record_edit
    from core.workflow.export import export_edited_model

    result = export_edited_model(session, spec)
    recorded = list_edits(session)
    if recorded and recorded[-1] == spec:  # w pressed twice: the stack gets no identical copy
        result.metadata["edit_index"] = len(recorded) - 1
        result.metadata["duplicate"] = True
        return result
    index = record_edit(session, spec, exports=[str(p) for p in result.files])
    result.metadata["edit_index"] = index
    return result
