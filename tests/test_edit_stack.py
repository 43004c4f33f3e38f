"""The edit stack (core.workflow.edits + ``salve edits``) and export dedupe, on a real tiny session.

Numbers are checked against independent computations: each row's accuracy change against
``edit_effect`` on arrays read separately, the composition against replaying the specs, an
exported file's head against ``replay`` of the active edits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from core.control.edit import replay_linear
from core.control.sweep import edit_effect
from core.store.session import Session, copy_session
from core.workflow.edits import (
    active_edits,
    build_spec,
    clear_edits,
    compare_edits,
    edit_records,
    edit_stack,
    list_edits,
    record_edit,
    redo_edit,
    remove_edit,
    set_edit_active,
    undo_edit,
)
from core.workflow.export import export_edited_model, folder_size
from core.workflow.inputs import load_inputs
from salve_tui.cli.main import main as salve


@pytest.fixture
def session_path(tmp_path: Path, built_session_path: Path) -> Path:
    path = tmp_path / "tiny.h5"
    copy_session(built_session_path, path)
    return path


def three_edits(session: Session) -> list:
    x = load_inputs(session)
    specs = [build_spec(x, target_class=0, alpha=4.0),
             build_spec(x, features=[3, 5], alpha=0.7, modulation="clamped"),
             build_spec(x, "steer", target_class=1, alpha=0.5)]
    for spec in specs:
        record_edit(session, spec)
    return specs


def head_of(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    state = safetensors.torch.load_file(str(path))
    return state["fc.weight"], state["fc.bias"]


def replay(x, edits) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    """The recorded edits replayed on the session's head (``core.control.edit.replay_linear``)."""
    layer = torch.nn.Linear(x.W.shape[1], x.W.shape[0])
    with torch.no_grad():
        layer.weight.copy_(x.W)
        layer.bias.copy_(x.b)
    edited = replay_linear(layer, x.D, edits)
    return edited.weight.detach(), edited.bias.detach()


def same(a: tuple, b: tuple) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_remove_undo_redo_persist_and_replay_exactly(session_path: Path) -> None:
    with Session.open(session_path) as session:
        a, b, c = three_edits(session)
        assert remove_edit(session, 2) == b
        assert list_edits(session) == [a, c]
        with pytest.raises(ValueError, match="no edit #7"):
            remove_edit(session, 7)
    with Session.open(session_path) as session:  # undo survives closing the session
        assert undo_edit(session).startswith("remove #2")
        assert list_edits(session) == [a, b, c]
        assert redo_edit(session).startswith("remove #2")
        assert list_edits(session) == [a, c]
        assert redo_edit(session) is None  # nothing left to redo
        clear_edits(session)
        assert list_edits(session) == []
        undo_edit(session)
        recorded = list_edits(session)
        assert recorded == [a, c]
        x = load_inputs(session)
        # Records that went through remove/undo/redo/clear still replay bit-for-bit.
        assert same(replay(x, recorded), replay(x, [a, c]))
        # A new change after an undo drops the redo branch.
        undo_edit(session)
        record_edit(session, b)
        assert redo_edit(session) is None


def test_stack_rows_and_composition_match_independent_effects(session_path: Path) -> None:
    with Session.open(session_path) as session:
        a, b, c = three_edits(session)
        set_edit_active(session, 2, False)
        x = load_inputs(session)
        stack = edit_stack(session, x)
    assert [r.number for r in stack.rows] == [1, 2, 3]
    assert stack.active_numbers == [1, 3]
    labels, C = x.labels, x.num_classes
    counts = torch.bincount(labels, minlength=C).double()
    for row, spec in zip(stack.rows, (a, b, c), strict=True):
        effect = edit_effect(x.A, labels, x.W, x.b, x.D, spec)
        delta = (effect.accuracy_after - effect.accuracy_before).double()
        present = counts > 0
        assert row.change.worst_delta == pytest.approx(float(delta[present].min()))
        overall_after = float((effect.accuracy_after.double().nan_to_num() * counts).sum() / counts.sum())
        assert row.change.overall_after == pytest.approx(overall_after)
    W, bias = x.W, x.b
    from core.control.edit import apply_edit

    for spec in (a, c):
        W, bias = apply_edit(W, bias, x.D, spec)
    after = (x.A @ W.T + bias).argmax(1)
    assert stack.composition.overall_after == pytest.approx(float((after == labels).double().mean()))
    compared = compare_edits(stack, 1, 3)
    assert [r["after_first"] for r in compared["per_class"]] == stack.rows[0].change.per_class_after
    assert [r["after_second"] for r in compared["per_class"]] == stack.rows[2].change.per_class_after


def test_export_writes_the_active_composition_and_reuses_identical_exports(session_path: Path) -> None:
    with Session.open(session_path) as session:
        a, b, c = three_edits(session)
        x = load_inputs(session)
        first = export_edited_model(session)
        assert not first.reused
        st = next(p for p in first.files if p.suffix == ".safetensors")
        assert same(head_of(st), replay(x, [a, b, c]))
        size_once = folder_size(session.exports_dir)
        again = export_edited_model(session)
        assert again.reused and again.files == first.files
        assert folder_size(session.exports_dir) == size_once  # no second copy
        remove_edit(session, 1)
        after_removal = export_edited_model(session)
        assert not after_removal.reused and after_removal.files != first.files
        st2 = next(p for p in after_removal.files if p.suffix == ".safetensors")
        assert same(head_of(st2), replay(x, [b, c]))
        meta = json.loads(after_removal.sidecar.read_text())
        assert [e["method"] for e in meta["edits"]] == ["salve", "steer"]
        # A damaged earlier file is not reused: it is written again.
        st.write_bytes(b"truncated")
        undo_edit(session)
        rewritten = export_edited_model(session)
        assert not rewritten.reused
        assert same(head_of(st), replay(x, [a, b, c]))
        assert active_edits(session) == [a, b, c]


def test_cli_edits_list_remove_undo_compare_export(session_path: Path, capsys) -> None:
    with Session.open(session_path) as session:
        three_edits(session)
    base = ["--sessions-dir", str(session_path.parent)]
    assert salve(["edits", "tiny", "--json", *base]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [e["number"] for e in listing["edits"]] == [1, 2, 3]
    assert listing["edits"][0]["method"] == "salve" and listing["edits"][0]["strength"] == 4.0
    assert set(listing["edits"][0]) >= {"features", "mode", "modulation", "overall_delta",
                                        "worst_class_delta", "worst_class", "exports"}
    assert salve(["edits", "tiny", "--remove", "2", *base]) == 0
    out = capsys.readouterr().out
    assert "removed #2" in out and "undo (--undo): remove #2" in out
    with Session.open(session_path, read_only=True) as session:
        assert len(edit_records(session)) == 2
    assert salve(["edits", "tiny", "--undo", "--json", *base]) == 0
    assert len(json.loads(capsys.readouterr().out)["edits"]) == 3
    assert salve(["edits", "tiny", "--compare", "1", "3", *base]) == 0
    assert "#1: SALVE suppress" in capsys.readouterr().out
    assert salve(["edits", "tiny", "--export", "--json", *base]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert not exported["export"]["reused"]
    assert all(exported["export"]["files"][0] in e["exports"] for e in exported["edits"])
    assert salve(["edits", "tiny", "--export", *base]) == 0
    assert "reused" in capsys.readouterr().out
    assert salve(["edits", "tiny", "--remove", "9", *base]) == 2
    assert "no edit #9" in capsys.readouterr().err
    assert salve(["edits", "tiny", "--clear", "--undo", *base]) == 2
    assert "one change at a time" in capsys.readouterr().err
    assert salve(["edits", "tiny", "--clear", *base]) == 0
    assert "no edits recorded" in capsys.readouterr().out
    assert salve(["edits", "tiny", "--redo", *base]) == 2
    assert "nothing to redo" in capsys.readouterr().err
