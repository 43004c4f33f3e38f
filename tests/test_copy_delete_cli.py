"""`salve copy` to a path without a suffix, and `salve delete` with the session's exports folder
(issue 20, CLI): the copy is found by `list`/`info`; the delete removes only the files the tool
wrote under ``<name>.exports/`` and lists what it keeps and why, never following a link."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli_streams as run_cli

from core.config import demo_config
from core.store.exports_cleanup import SIDECAR_FORMAT, plan_exports
from core.store.session import Session, data_dir, exports_dir, list_sessions


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A sessions folder holding ``demo.h5`` with an array file under ``demo.data/``."""
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    with Session.create(sessions / "demo.h5", demo_config("demo")) as s, s.transaction() as tx:
        tx.write_array("activations/test/a", np.arange(400_000, dtype=np.float32).reshape(2000, 200))
    assert any(data_dir(sessions / "demo.h5").iterdir())
    return sessions


# ----------------------------------------------------------------------------- copy


def test_copy_to_a_path_without_suffix_adds_h5_and_list_info_find_it(folder: Path, tmp_path: Path) -> None:
    other = tmp_path / "x"
    rc, out, err = run_cli("copy", "demo", str(other / "demo"), "--sessions-dir", str(folder))
    assert rc == 0, err
    assert (other / "demo.h5").is_file() and not (other / "demo").exists()
    assert "demo.h5" in out
    assert [r["name"] for r in list_sessions(other)] == ["demo"]
    rc, out, err = run_cli("info", "demo", "--sessions-dir", str(other))
    assert rc == 0, err
    # a dotted name keeps its dots: runs/v1.2 -> runs/v1.2.h5 (not runs/v1.h5)
    rc, _, err = run_cli("copy", "demo", str(other / "v1.2"), "--sessions-dir", str(folder))
    assert rc == 0, err
    assert (other / "v1.2.h5").is_file()
    assert sorted(r["name"] for r in list_sessions(other)) == ["demo", "v1.2"]


def test_copy_into_an_existing_folder_keeps_the_name(folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "backup"
    target.mkdir()
    rc, _, err = run_cli("copy", "demo", f"{target}/", "--sessions-dir", str(folder))
    assert rc == 0, err
    assert (target / "demo.h5").is_file() and [r["name"] for r in list_sessions(target)] == ["demo"]
    rc, _, err = run_cli("copy", "demo", str(target), "--sessions-dir", str(folder))  # same, no slash
    assert rc == 2 and "already exists" in err


def test_copy_session_refuses_a_file_name_list_cannot_find(folder: Path, tmp_path: Path) -> None:
    from core.store.session import SessionError, copy_session

    with pytest.raises(SessionError, match=r"demo\.h5"):
        copy_session(folder / "demo.h5", tmp_path / "demo")
    assert not (tmp_path / "demo").exists()


# ----------------------------------------------------------------------------- delete


def _export_like_the_tool(session: Path) -> list[Path]:
    """The files the tool writes into ``<name>.exports/`` (weights with sidecar and README,
    figures, heatmaps, tables), as the writers name them."""
    root = exports_dir(session)
    files = []
    for weights in ("demo-edited-0123456789ab.pt", "demo-edited-0123456789ab.safetensors"):
        (root / weights).parent.mkdir(parents=True, exist_ok=True)
        (root / weights).write_bytes(b"weights")
        (root / f"{weights}.json").write_text(json.dumps({"format": SIDECAR_FORMAT, "sha256": "x"}))
        (root / f"{weights}.README.txt").write_text("how to load\n")
        files += [root / weights, root / f"{weights}.json", root / f"{weights}.README.txt"]
    for rel in ("figures/feature_class_matrix.png", "figures/curve_salve-f3-c1.png",
                "heatmaps/gradfam_sample-11_feature-31_layer3.png",
                "tables/alpha_crit_suppress-linear.csv", "tables/alpha_crit_suppress-linear.samples.csv"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"\x89PNG" if rel.endswith(".png") else b"a,b\n")
        files.append(root / rel)
    return files


def test_delete_removes_the_exports_folder_the_tool_wrote(folder: Path) -> None:
    session = folder / "demo.h5"
    files = _export_like_the_tool(session)
    rc, _, err = run_cli("delete", "demo", "--sessions-dir", str(folder))
    assert rc == 2 and "demo.exports/" in err and f"{len(files)} file(s)" in err
    assert all(p.exists() for p in files)  # nothing removed without --yes
    rc, out, err = run_cli("delete", "demo", "--yes", "--json", "--sessions-dir", str(folder))
    assert rc == 0, err
    payload = json.loads(out)
    assert payload["kept"] == []
    assert not exports_dir(session).exists() and not session.exists() and not data_dir(session).exists()
    assert set(payload["removed"]) >= {str(p) for p in files}


def test_delete_keeps_what_the_tool_did_not_write_and_says_why(folder: Path, tmp_path: Path) -> None:
    session = folder / "demo.h5"
    files = _export_like_the_tool(session)
    root = exports_dir(session)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.png").write_bytes(b"mine")
    (root / "notes.txt").write_text("my notes")  # the user's own file
    (root / "figures" / "linked.png").symlink_to(elsewhere / "precious.png")  # a link with a png name
    (root / "heatmaps" / "elsewhere").symlink_to(elsewhere, target_is_directory=True)
    (root / "mine").mkdir()
    (root / "mine" / "plot.png").write_bytes(b"mine too")
    (root / "foreign.pt").write_bytes(b"weights without a salve-tui sidecar")
    (root / "other.pt.json").write_text(json.dumps({"format": "someone else's"}))
    (root / "figures" / "draft.txt").write_text("draft")
    rc, out, err = run_cli("delete", "demo", "--yes", "--sessions-dir", str(folder))
    assert rc == 0, err
    kept = {"notes.txt", "figures/linked.png", "heatmaps/elsewhere", "mine", "foreign.pt", "other.pt.json",
            "figures/draft.txt"}
    remaining = {str(p.relative_to(root)) for p in root.rglob("*")} - {"figures", "heatmaps"}
    assert remaining == kept | {"mine/plot.png"}
    assert not any(p.exists() for p in files)
    assert "kept 7 item(s) in" in out and "symbolic link" in out and "notes.txt" in out
    assert (elsewhere / "precious.png").read_bytes() == b"mine"  # never followed
    assert not session.exists()
    # the JSON report carries each kept path with its reason
    plan = plan_exports(root)
    assert plan.owned == [] and {str(p.relative_to(root)) for p, _ in plan.kept} == kept
    assert all(reason for _, reason in plan.kept)


def test_delete_keeps_an_exports_folder_that_is_a_link(folder: Path, tmp_path: Path) -> None:
    session = folder / "demo.h5"
    target = tmp_path / "big-disk"
    (target / "figures").mkdir(parents=True)
    (target / "figures" / "m.png").write_bytes(b"png")
    exports_dir(session).symlink_to(target, target_is_directory=True)
    rc, out, err = run_cli("delete", "demo", "--yes", "--sessions-dir", str(folder))
    assert rc == 0, err
    assert (target / "figures" / "m.png").read_bytes() == b"png"  # not followed
    assert exports_dir(session).is_symlink() and "symbolic link" in out
    assert not session.exists()


def test_a_rerun_of_delete_removes_exports_left_by_an_interrupted_delete(folder: Path) -> None:
    session = folder / "demo.h5"
    files = _export_like_the_tool(session)
    os.unlink(session)  # a delete killed after the small file went (worst case order)
    rc, out, err = run_cli("delete", "demo", "--yes", "--sessions-dir", str(folder))
    assert rc == 0, err
    assert not any(p.exists() for p in files) and not exports_dir(session).exists()


def test_killed_writers_temps_are_removed_live_ones_kept(folder: Path) -> None:
    session = folder / "demo.h5"
    _export_like_the_tool(session)
    root = exports_dir(session)
    dead = root / "figures" / ".m.png.999999999-abc.tmp"  # no such pid
    live = root / "figures" / f".n.png.{os.getpid()}-abc.tmp"
    dead.write_bytes(b"half")
    live.write_bytes(b"half")
    plan = plan_exports(root)
    assert dead in plan.owned and live not in plan.owned
    assert any(p == live and "being written" in why for p, why in plan.kept)


def test_sidecar_format_is_the_one_the_exporter_writes() -> None:
    from core.workflow.export import SIDECAR_FORMAT as written

    assert SIDECAR_FORMAT == written


async def test_tui_delete_names_the_exports_and_removes_them(folder: Path) -> None:
    from test_tui_helpers import wait_for

    from salve_tui.app.app import SalveApp
    from salve_tui.app.screens.confirm import ConfirmModal

    session = folder / "demo.h5"
    files = _export_like_the_tool(session)
    (exports_dir(session) / "notes.txt").write_text("mine")
    app = SalveApp(sessions_folder=folder)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert f"the {len(files)} file(s) salve-tui wrote in demo.exports/" in app.screen.question
        await pilot.press("y")
        await wait_for(pilot, lambda: not session.exists(), 10, "the delete")
        await pilot.pause()
        assert not session.exists() and not any(p.exists() for p in files)
        assert (exports_dir(session) / "notes.txt").read_text() == "mine"
        messages = [str(n.message) for n in app._notifications]
        assert any("kept 1 item(s)" in m for m in messages), messages
