"""Session store: round trips, atomic transactions, one writer, crash safety, bad files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from core.config import SessionConfig, demo_config
from core.store.session import (
    SCHEMA_VERSION,
    Session,
    SessionCorrupt,
    SessionError,
    SessionLocked,
    SessionTooNew,
    delete_session,
    list_sessions,
    resolve_session_path,
    sessions_dir,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def session(tmp_path: Path):
    s = Session.create(tmp_path / "s.h5", demo_config("s"))
    yield s
    s.close()


def test_create_and_round_trip(session: Session) -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    with session.transaction() as tx:
        tx.write_array("activations/test/a", a)
        tx.write_arrays("sae/weights", {"encoder.weight": a.T, "decoder.bias": np.ones(3)})
        tx.write_json("class_names", ["cat", "dog"])
        tx.write_array("names", np.array(["x", "yy"]))
        tx.set_stage("data", "done", "ok", n=3)
    assert np.array_equal(session.read_array("activations/test/a"), a)
    weights = session.read_arrays("sae/weights")
    assert set(weights) == {"encoder.weight", "decoder.bias"}
    assert np.array_equal(weights["encoder.weight"], a.T)
    assert session.read_json("class_names") == ["cat", "dog"]
    assert list(session.read_array("names")) == ["x", "yy"]
    assert session.stages()["data"].state == "done"
    assert session.stages()["data"].info == {"n": 3}
    assert session.config == demo_config("s")
    assert session.array_shape("activations/test/a") == (3, 4)


def test_failed_transaction_changes_nothing(session: Session) -> None:
    with session.transaction() as tx:
        tx.write_json("summary", {"value": 1})
    before = session.path.read_bytes()
    with pytest.raises(RuntimeError):
        with session.transaction() as tx:
            tx.write_json("summary", {"value": 2})
            raise RuntimeError("boom")
    assert session.read_json("summary") == {"value": 1}
    assert session.path.read_bytes() == before
    assert not list(session.path.parent.glob(".*tmp-*"))


def test_row_streaming_resumes(session: Session) -> None:
    with session.transaction() as tx:
        tx.create_rows("x", (5, 2), np.float32)
        tx.write_rows("x", 0, np.ones((2, 2)))
    with session.transaction() as tx:
        tx.write_rows("x", 2, 2 * np.ones((3, 2)))
    assert session.read_array("x")[:, 0].tolist() == [1, 1, 2, 2, 2]


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )


def test_second_process_gets_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.h5"
    Session.create(path, demo_config("locked")).close()
    child = _child(
        f"""
        import time
        from core.store.session import Session
        s = Session.open({str(path)!r})
        print("ready", flush=True)
        time.sleep(30)
        """
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(SessionLocked, match=f"pid {child.pid}"):
            Session.open(path)
        with Session.open(path, read_only=True) as reader:  # readers are never blocked
            assert reader.config.name == "locked"
    finally:
        child.kill()
        child.wait()
    Session.open(path).close()  # the kernel released the dead writer's lock


def test_kill_9_mid_transaction_keeps_last_commit(tmp_path: Path) -> None:
    path = tmp_path / "crash.h5"
    with Session.create(path, demo_config("crash")) as s:
        with s.transaction() as tx:
            tx.write_json("summary", {"committed": True})
            tx.set_stage("data", "done")
    child = _child(
        f"""
        import time, numpy as np
        from core.store.session import Session
        s = Session.open({str(path)!r})
        with s.transaction() as tx:
            tx.write_array("big", np.zeros((2000, 512), np.float32))
            tx.write_json("summary", {{"committed": False}})
            print("inside", flush=True)
            time.sleep(30)
        """
    )
    assert child.stdout.readline().strip() == "inside"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert list(tmp_path.glob(".crash.h5.tmp-*")), "the half-done transaction left its temp copy"
    with Session.open(path) as s:  # writer reopens: lock free, stale temp removed
        assert s.read_json("summary") == {"committed": True}
        assert s.stages()["data"].state == "done"
        assert not s.has("big")
    assert not list(tmp_path.glob(".crash.h5.tmp-*"))


def test_corrupt_and_foreign_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.h5"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(SessionCorrupt, match="not a readable HDF5 file"):
        Session.open(junk)
    truncated = tmp_path / "trunc.h5"
    Session.create(truncated, demo_config("trunc")).close()
    truncated.write_bytes(truncated.read_bytes()[:700])
    with pytest.raises(SessionCorrupt):
        Session.open(truncated, read_only=True)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    with pytest.raises(SessionCorrupt, match="not a salve-tui session"):
        Session.open(foreign)
    rows = {r["name"]: r for r in list_sessions(tmp_path)}
    assert rows["junk"]["error"] and rows["foreign"]["error"]


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.h5"
    Session.create(path, demo_config("future")).close()
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(SessionTooNew, match="upgrade salve-tui"):
        Session.open(path, read_only=True)


def test_create_refuses_bad_config_and_existing(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="image size"):
        cfg = demo_config("x")
        cfg.data.image_size = 3
        Session.create(tmp_path / "x.h5", cfg)
    assert not (tmp_path / "x.h5").exists()
    Session.create(tmp_path / "y.h5", SessionConfig(name="y")).close()
    with pytest.raises(SessionError, match="already exists"):
        Session.create(tmp_path / "y.h5", SessionConfig(name="y"))


def test_read_only_cannot_write_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "ro.h5"
    Session.create(path, demo_config("ro")).close()
    with Session.open(path, read_only=True) as s:
        with pytest.raises(SessionError, match="read-only"):
            with s.transaction():
                pass
    with pytest.raises(SessionError, match="does not exist"):
        Session.open(tmp_path / "missing.h5")


def test_locations_and_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALVE_SESSIONS", str(tmp_path / "env"))
    assert sessions_dir() == tmp_path / "env"
    assert sessions_dir(tmp_path) == tmp_path
    assert resolve_session_path("demo") == tmp_path / "env" / "demo.h5"
    assert resolve_session_path(str(tmp_path / "a.h5")) == tmp_path / "a.h5"
    path = tmp_path / "env" / "gone.h5"
    Session.create(path, demo_config("gone")).close()
    holder = Session.open(path)
    with pytest.raises(SessionLocked):
        delete_session(path)
    holder.close()
    delete_session(path)
    assert not path.exists()


def test_overview_reads_no_large_arrays(session: Session) -> None:
    with session.transaction() as tx:
        tx.write_array("activations/train/a", np.zeros((10_000, 768), np.float32))
        tx.update_json("summary", sae={"l0": 3.5})
    overview = session.overview()
    assert overview["sae"] == {"l0": 3.5}
    assert overview["stages"]["data"]["state"] == "pending"
    assert "activations" not in overview  # summaries only; speed is measured in bench/bench_info.py


def test_rewrites_do_not_grow_the_file(session: Session) -> None:
    """Deleted datasets leave holes in HDF5 files; large frees trigger a compacting repack."""
    with session.transaction() as tx:
        tx.write_array("keep", np.ones(1000, np.float32))
    for i in range(4):
        with session.transaction() as tx:
            tx.write_array("checkpoint", np.full((1 << 21,), i, np.float64))  # 16 MiB each time
            tx.write_array(f"after{i}", np.ones(10))
    with session.transaction() as tx:
        tx.delete("checkpoint")
    assert session.path.stat().st_size < 1 << 20
    assert session.read_array("keep").sum() == 1000 and session.has("after3")
    assert session.stages()["data"].state == "pending"  # JSON documents survive the repack


def test_rows_slices_without_loading_everything(session: Session) -> None:
    a = np.arange(40, dtype=np.float32).reshape(10, 4)
    with session.transaction() as tx:
        tx.write_array("activations/train/a", a)
    with session.rows("activations/train/a") as ds:
        assert ds.shape == (10, 4)
        assert np.array_equal(ds[3:7], a[3:7])
    with pytest.raises(KeyError, match="run the stage"):
        with session.rows("activations/train/missing"):
            pass
