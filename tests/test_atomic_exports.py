"""Exports: atomic files, one sidecar per weight file, no silent overwrite, one file mode."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from core.atomic import OutputExists, WriteFailed, atomic_write, default_file_mode, overwrite_policy
from core.store.session import Session, copy_session
from core.workflow.edits import build_spec
from core.workflow.export import export_edited_model, load_exported, sidecar_path
from core.workflow.inputs import load_inputs


@pytest.fixture
def session(tmp_path: Path, built_session_path: Path):
    path = tmp_path / "tiny.h5"
    copy_session(built_session_path, path)
    with Session.open(path) as s:
        yield s


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "figure.png"
    target.write_bytes(b"old good figure")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write(b"half a new fig")
            raise RuntimeError("killed mid-way")
    assert target.read_bytes() == b"old good figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]


def test_stale_temp_of_a_killed_writer_is_removed_on_the_next_write(tmp_path: Path) -> None:
    stale = tmp_path / ".out.csv.999999999-abc.tmp"  # no such pid
    stale.write_bytes(b"partial")
    live = tmp_path / f".out.csv.{os.getpid()}-xyz.tmp"  # a writer that still runs
    live.write_bytes(b"in progress")
    with atomic_write(tmp_path / "out.csv", "w") as handle:
        handle.write("a,b\n")
    assert not stale.exists() and live.exists()


def test_overwrite_needs_permission_and_folders_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    target.write_text("previous")
    with overwrite_policy(False):
        with pytest.raises(OutputExists, match="--force"):
            with atomic_write(target, "w") as handle:
                handle.write("new")
        with pytest.raises(WriteFailed, match="is a folder"):
            with atomic_write(tmp_path, "w") as handle:
                handle.write("new")
    assert target.read_text() == "previous"


def test_pt_and_safetensors_with_one_stem_get_their_own_sidecars(session: Session, tmp_path: Path) -> None:
    x = load_inputs(session)
    first = build_spec(x, features=[2], alpha=1.0)
    second = build_spec(x, features=[3], alpha=2.0)
    pt = export_edited_model(session, first, out=tmp_path / "model.pt")
    st = export_edited_model(session, second, out=tmp_path / "model.safetensors")
    assert pt.sidecar == tmp_path / "model.pt.json" and st.sidecar == tmp_path / "model.safetensors.json"
    pt_meta = json.loads(pt.sidecar.read_text())
    st_meta = json.loads(st.sidecar.read_text())
    assert list(pt_meta["files"]) == ["model.pt"] and list(st_meta["files"]) == ["model.safetensors"]
    assert pt_meta["edits"][0]["features"] == [2] and st_meta["edits"][0]["features"] == [3]
    load_exported(tmp_path / "model.pt")
    load_exported(tmp_path / "model.safetensors")
    modes = {stat.S_IMODE(p.stat().st_mode) for p in [*pt.written, *st.written]}
    assert modes == {default_file_mode()}


def test_an_export_never_clobbers_a_users_config_json(session: Session, tmp_path: Path) -> None:
    user = tmp_path / "config.json"
    user.write_text('{"mine": true}')
    spec = build_spec(load_inputs(session), features=[2], alpha=1.0)
    export_edited_model(session, spec, out=tmp_path / "config.pt")
    assert user.read_text() == '{"mine": true}'
    foreign = sidecar_path(tmp_path / "other.pt")
    foreign.write_text('{"not": "ours"}')
    with pytest.raises(WriteFailed, match="not a salve-tui sidecar"):
        export_edited_model(session, spec, out=tmp_path / "other.pt")
    assert foreign.read_text() == '{"not": "ours"}' and not (tmp_path / "other.pt").exists()


def test_a_sidecar_that_describes_another_file_is_refused(session: Session, tmp_path: Path) -> None:
    spec = build_spec(load_inputs(session), features=[2], alpha=1.0)
    result = export_edited_model(session, spec, out=tmp_path / "m.pt")
    state = torch.load(result.files[0], weights_only=True)
    state["fc.bias"] = state["fc.bias"] + 1
    torch.save(state, result.files[0])  # weights replaced, sidecar still describes the old file
    with pytest.raises(ValueError, match="does not describe this m.pt"):
        load_exported(result.files[0])


def test_existing_export_is_replaced_only_with_force(session: Session, tmp_path: Path) -> None:
    spec = build_spec(load_inputs(session), features=[2], alpha=1.0)
    out = tmp_path / "m.pt"
    export_edited_model(session, spec, out=out)
    before = out.read_bytes()
    with overwrite_policy(False):
        with pytest.raises(OutputExists):
            export_edited_model(session, build_spec(load_inputs(session), features=[3], alpha=2.0), out=out)
    assert out.read_bytes() == before
    with overwrite_policy(True):
        export_edited_model(session, build_spec(load_inputs(session), features=[3], alpha=2.0), out=out)
    assert out.read_bytes() != before and load_exported(out) is not None
