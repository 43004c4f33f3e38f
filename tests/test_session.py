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
    copy_session,
    data_dir,
    delete_session,
    list_sessions,
    resolve_session_path,
    session_bytes,
    sessions_dir,
    verify_session,
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
    assert len(list((tmp_path / "crash.data").glob("big-*.h5"))) == 1  # its array file, never committed
    with Session.open(path) as s:  # writer reopens: lock free, stale temp removed
        assert s.read_json("summary") == {"committed": True}
        assert s.stages()["data"].state == "done"
        assert not s.has("big")
    assert not list(tmp_path.glob(".crash.h5.tmp-*"))
    assert list((tmp_path / "crash.data").iterdir()) == []  # the orphan array file is collected


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
        assert len(list(data_dir(session.path).iterdir())) == 1  # replaced array files are deleted
    with session.transaction() as tx:
        tx.delete("checkpoint")
    assert session.path.stat().st_size < 1 << 20
    assert list(data_dir(session.path).iterdir()) == []
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


# ----------------------------------------------------------------------------- array files (schema 2)


def test_large_arrays_live_in_files_of_their_own(session: Session) -> None:
    """The small file stays small however much data the session holds: writes do not copy it."""
    big = np.random.default_rng(0).random((4000, 768)).astype(np.float32)  # 12 MB
    with session.transaction() as tx:
        tx.write_array("activations/test/a", big)
        tx.write_arrays("sae/weights", {"encoder.weight": big[:2000], "encoder.bias": np.ones(2000),
                                        "steps": np.int64(7), "names": np.array(["a", "b"])})
        tx.write_array("small", np.arange(10))
    assert session.path.stat().st_size < 200_000
    files = sorted(p.name for p in data_dir(session.path).iterdir())
    assert len(files) == 2 and files[0].startswith("activations-test-a-") and files[1].startswith("sae-weights-")
    assert np.array_equal(session.read_array("activations/test/a"), big)
    weights = session.read_arrays("sae/weights")
    assert np.array_equal(weights["encoder.weight"], big[:2000]) and weights["encoder.bias"].sum() == 2000
    assert int(weights["steps"]) == 7 and list(weights["names"]) == ["a", "b"]  # scalars, strings: inline
    with h5py.File(session.path, "r") as f:  # one tree: h5py sees the arrays where they were written
        assert f["activations/test/a"].is_virtual and f["activations/test/a"].shape == (4000, 768)
        assert not f["small"].is_virtual and not f["sae/weights/steps"].is_virtual
        assert f["sae/weights/encoder.bias"].is_virtual
    assert session.overview()["size_bytes"] > big.nbytes  # the session's size counts its array files


def test_append_rows_never_rewrites_earlier_rows(session: Session) -> None:
    a = np.arange(50, dtype=np.float32).reshape(25, 2)
    with session.transaction() as tx:
        tx.append_rows("activations/train", 0, 25, {"a": a[:10], "labels": np.arange(10)})
    first = sorted(data_dir(session.path).iterdir())
    stamp = first[0].stat().st_mtime_ns
    with session.transaction() as tx:
        tx.append_rows("activations/train", 10, 25, {"a": a[10:25], "labels": np.arange(10, 25)})
    assert first[0].stat().st_mtime_ns == stamp and len(list(data_dir(session.path).iterdir())) == 2
    assert np.array_equal(session.read_array("activations/train/a"), a)
    assert session.read_array("activations/train/labels").tolist() == list(range(25))
    with session.transaction() as tx:  # a resumed run continues where the last commit ended
        with pytest.raises(ValueError, match="cannot continue at 5"):
            tx.append_rows("activations/train", 5, 25, {"a": a[5:10], "labels": np.arange(5)})
    with session.transaction() as tx:  # starting at row 0 replaces every shard
        tx.append_rows("activations/train", 0, 3, {"a": a[:3] * 0, "labels": np.zeros(3, np.int64)})
    assert session.read_array("activations/train/a").sum() == 0
    assert len(list(data_dir(session.path).iterdir())) == 1


def test_failed_transaction_leaves_no_array_file(session: Session) -> None:
    with pytest.raises(RuntimeError):
        with session.transaction() as tx:
            tx.write_array("big", np.zeros((1000, 1000)))
            assert len(list(data_dir(session.path).iterdir())) == 1
            raise RuntimeError("boom")
    assert list(data_dir(session.path).iterdir()) == [] and not session.has("big")


def test_missing_or_damaged_array_file_is_named(session: Session) -> None:
    with session.transaction() as tx:
        tx.write_array("activations/test/a", np.ones((1000, 512), np.float32))
    array_file = next(data_dir(session.path).iterdir())
    with h5py.File(array_file, "r") as g:
        ds = g["data"]
        offset = ds.id.get_chunk_info(0).byte_offset
    raw = bytearray(array_file.read_bytes())
    raw[offset + 16] ^= 0xFF
    array_file.chmod(0o644)
    array_file.write_bytes(bytes(raw))
    with pytest.raises(SessionCorrupt, match="activations/test/a"):
        session.read_array("activations/test/a")
    report = verify_session(session.path)
    assert not report.ok and "activations/test/a" in report.problems[0]
    array_file.unlink()  # HDF5 would read a missing file as zeros: the store refuses instead
    with pytest.raises(SessionCorrupt, match=r"missing.*salve copy"):
        session.read_array("activations/test/a")
    with pytest.raises(SessionCorrupt, match="missing"):
        with session.rows("activations/test/a"):
            pass
    assert "missing" in verify_session(session.path).problems[0]


def _schema_1_session(path: Path, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """A session as schema 1 wrote it: every array inside the one file."""
    import core.store.arrayfiles as store

    big = np.arange(600_000, dtype=np.float32).reshape(1000, 600)
    monkeypatch.setattr(store, "EXTERNAL_MIN_BYTES", 1 << 62)
    with Session.create(path, demo_config("old")) as s:
        with s.transaction() as tx:
            tx.write_array("activations/test/a", big)
            tx.write_array("activations/test/logits", big[:, :300] * 2)
            tx.write_array("rankings/dominant", np.arange(3))
    monkeypatch.undo()
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 1
    return big


def test_schema_1_sessions_open_and_migrate_on_first_write(tmp_path: Path, monkeypatch, caplog) -> None:
    path = tmp_path / "old.h5"
    big = _schema_1_session(path, monkeypatch)
    with Session.open(path, read_only=True) as reader:  # read as it is, nothing changes
        assert np.array_equal(reader.read_array("activations/test/a"), big)
        assert reader.overview()["schema_version"] == 1
    size_before = path.stat().st_size
    with Session.open(path) as s:
        assert s.overview()["schema_version"] == 1  # opening is not a write
        with caplog.at_level("WARNING", logger="salve"), s.transaction() as tx:
            tx.write_json("note", "first write")
        assert s.notices and "migrated from schema 1 to 2" in s.notices[0]
        assert "migrated" in caplog.text
        assert s.overview()["schema_version"] == 2
        assert np.array_equal(s.read_array("activations/test/a"), big)
        assert np.array_equal(s.read_array("activations/test/logits"), big[:, :300] * 2)
        assert s.read_array("rankings/dominant").tolist() == [0, 1, 2]
        assert s.read_json("note") == "first write"
    assert len(list(data_dir(path).iterdir())) == 1  # one array file for the group, as a write makes
    assert path.stat().st_size < size_before / 10  # the large array moved out (and was repacked away)
    with h5py.File(path, "r") as f:
        assert f["activations/test/a"].is_virtual and not f["rankings/dominant"].is_virtual
    assert verify_session(path).ok


def test_copy_list_and_delete_treat_the_session_as_one_unit(tmp_path: Path) -> None:
    src = tmp_path / "a.h5"
    a = np.random.default_rng(1).random((2000, 300))
    with Session.create(src, demo_config("a")) as s:
        with s.transaction() as tx:
            tx.write_array("x", a)
            tx.append_rows("activations/train", 0, 4000, {"a": a})
        with s.transaction() as tx:
            tx.append_rows("activations/train", 2000, 4000, {"a": a + 1})
        sid = s.session_id
    other = tmp_path / "elsewhere" / "b.h5"
    copy_session(src, other)
    with pytest.raises(SessionError, match="already exists"):
        copy_session(src, other)
    delete_session(src)  # the copy refers to its own files only
    assert not src.exists() and not data_dir(src).exists()
    with Session.open(other) as b:
        assert b.session_id != sid
        assert np.array_equal(b.read_array("x"), a)
        assert np.array_equal(b.read_array("activations/train/a")[2000:], a + 1)
        with b.transaction() as tx:  # and can go on writing
            tx.write_array("x", a * 2)
        assert np.array_equal(b.read_array("x"), a * 2)
        assert verify_session(other).ok
    rows = list_sessions(other.parent)
    assert rows[0]["name"] == "b" and rows[0]["size_bytes"] > 2 * a.nbytes


def test_cli_copy_delete_and_migration_note(tmp_path: Path, monkeypatch, capsys) -> None:
    from salve_tui.cli.main import main

    folder = str(tmp_path)
    big = _schema_1_session(tmp_path / "old.h5", monkeypatch)
    assert main(["copy", "old", "new", "--sessions-dir", folder]) == 0
    assert "copied" in capsys.readouterr().out
    assert main(["copy", "old", "new", "--sessions-dir", folder]) == 2
    assert "already exists" in capsys.readouterr().err
    with Session.open(tmp_path / "new.h5") as s:  # the copy is still schema 1 until it is written
        assert np.array_equal(s.read_array("activations/test/a"), big)
    # the first write to the schema-1 session migrates it; the CLI shows the notice on one line
    from salve_tui.cli.common import show_store_notices

    show_store_notices()
    with Session.open(tmp_path / "old.h5") as s, s.transaction() as tx:
        tx.write_json("note", 1)
    err = capsys.readouterr().err
    assert err.count("note: session old.h5 was migrated from schema 1 to 2") == 1, err
    assert main(["delete", "old", "--sessions-dir", folder]) == 2
    assert "--yes" in capsys.readouterr().err and (tmp_path / "old.h5").exists()
    assert main(["delete", "old", "--yes", "--sessions-dir", folder]) == 0
    assert not (tmp_path / "old.h5").exists() and not (tmp_path / "old.data").exists()
    assert [r["name"] for r in list_sessions(tmp_path)] == ["new"]
    capsys.readouterr()
    assert main(["list", "--sessions-dir", folder]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("new") and f"{session_bytes(tmp_path / 'new.h5') / 1e6:.1f} MB" in line


def test_row_blocks_are_written_without_concatenating(session: Session) -> None:
    from core.store.session import RowBlocks

    parts = [np.full((n, 3), i, np.float32) for i, n in enumerate((4, 1, 5))]
    with session.transaction() as tx:
        tx.append_rows("activations/train", 0, 10, {"a": RowBlocks(tuple(parts)), "labels": np.arange(10)})
    assert np.array_equal(session.read_array("activations/train/a"), np.concatenate(parts))
    with pytest.raises(ValueError, match="differ in rows"):
        with session.transaction() as tx:
            tx.append_rows("activations/train", 0, 10, {"a": RowBlocks(tuple(parts)), "labels": np.arange(9)})
    with pytest.raises(ValueError, match="differ in shape"):
        RowBlocks((np.zeros((2, 3)), np.zeros((2, 4))))


def test_array_file_chunks_waste_little_space(session: Session) -> None:
    """Chunk rows are spread evenly: a 512-row weight is not padded out to three 227-row chunks."""
    w = np.ones((512, 512, 3, 3), np.float32)  # 9.4 MB, a ResNet-18 layer4 convolution
    with session.transaction() as tx:
        tx.write_array("backbone/state_dict/layer4.0.conv2.weight", w)
    (array_file,) = data_dir(session.path).iterdir()
    assert array_file.stat().st_size < w.nbytes * 1.02


def test_activation_stage_commits_by_bytes_as_well_as_by_time(session: Session, monkeypatch) -> None:
    """A fast model must not pile rows up for a whole commit interval: past ``max_pending_bytes``
    the stage commits a shard (so writing overlaps extraction and memory stays bounded), and the
    rows read back equal the model's, in order."""
    import torch

    from core.discover.activations import iter_activations
    from core.workflow.stage_activations import (
        COMMIT_MAX_BYTES,
        COMMIT_MIN_BYTES,
        commit_bytes,
        stream_activations,
    )

    monkeypatch.setattr("core.store.arrayfiles.EXTERNAL_MIN_BYTES", 1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3)).eval()

    class Rows:
        def __len__(self) -> int:
            return 50

        def iter_batches(self, batch_size: int, indices=None, **_):
            idx = np.arange(50) if indices is None else np.asarray(indices)
            for i in range(0, len(idx), batch_size):
                rows = idx[i : i + batch_size]
                yield torch.from_numpy(np.cos(np.outer(rows, np.arange(4.0))).astype(np.float32)), \
                    torch.from_numpy(rows % 3), torch.from_numpy(rows)

    # each batch of 10 rows is 10 * (6 + 3) * 4 + 10 * 8 = 440 bytes: a commit every 2 batches
    progress: dict[str, int] = {}
    stream_activations(session, "train", model, Rows(), torch.device("cpu"), 10, progress,
                       commit_interval_s=3600.0, max_pending_bytes=800)
    assert progress == {"train": 50}
    assert len(list(data_dir(session.path).iterdir())) == 3  # rows 0-20, 20-40, 40-50
    expected = list(iter_activations(model, Rows(), torch.device("cpu"), 50))[0]
    got = session.read_arrays("activations/train")
    np.testing.assert_array_equal(got["a"], expected[1])
    np.testing.assert_array_equal(got["logits"], expected[2])
    np.testing.assert_array_equal(got["labels"], expected[3])
    assert commit_bytes(1 << 40) == COMMIT_MAX_BYTES and commit_bytes(1 << 20) == COMMIT_MIN_BYTES
    assert commit_bytes(1 << 30) == (1 << 30) // 16
