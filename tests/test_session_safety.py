"""Nothing lost: names resolve in the sessions folder, deletes lock first, checkpoints stay with
their session, corruption is detected and named, read-only folders and full disks get messages."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_helpers import run_cli

from core.config import demo_config
from core.store.session import (
    Session,
    SessionCorrupt,
    SessionError,
    copy_session,
    data_dir,
    list_sessions,
    resolve_session_path,
    verify_session,
)
from tests.conftest import tiny_config

# ----------------------------------------------------------------------------- names (item 3)


def test_bare_names_always_mean_the_sessions_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "sessions"
    (tmp_path / "data").mkdir()
    (tmp_path / "digits").write_text("not a session")
    assert resolve_session_path("data", folder) == folder / "data.h5"
    assert resolve_session_path("digits", folder) == folder / "digits.h5"
    assert resolve_session_path("foo.h5", folder) == folder / "foo.h5"
    assert resolve_session_path("./foo.h5", folder) == Path("./foo.h5")
    assert resolve_session_path(str(tmp_path / "x.h5"), folder) == tmp_path / "x.h5"

    rc, out = run_cli("info", "data", "--sessions-dir", str(folder))
    assert rc == 2 and str(folder / "data.h5") in out and "does not exist" in out
    rc, out = run_cli("new", "digits", "--sessions-dir", str(folder))
    assert rc == 0 and (folder / "digits.h5").is_file()
    assert (tmp_path / "digits").read_text() == "not a session"
    rc, out = run_cli("new", "foo.h5", "--sessions-dir", str(folder))
    assert rc == 0 and (folder / "foo.h5").is_file() and not (tmp_path / "foo.h5").exists()


# ----------------------------------------------------------------------------- demo --fresh (item 2)


def test_demo_fresh_takes_the_lock_and_never_touches_the_current_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "sessions"
    (tmp_path / "notes").write_text("my notes")
    path = folder / "notes.h5"
    writer = Session.create(path, tiny_config("notes"))  # another process would hold this lock
    before = path.read_bytes()
    try:
        rc, out = run_cli("demo", "--fresh", "--name", "notes", "--sessions-dir", str(folder))
    finally:
        writer.close()
    assert rc == 2 and "open for writing" in out
    assert path.read_bytes() == before
    assert (tmp_path / "notes").read_text() == "my notes"
    rc, out = run_cli("demo", "--fresh", "--name", "../notes", "--sessions-dir", str(folder))
    assert rc == 2 and (tmp_path / "notes").read_text() == "my notes"


def test_replacing_a_session_keeps_no_checkpoints_of_the_old_one(tmp_path) -> None:
    path = tmp_path / "st.h5"
    Session.create(path, tiny_config("st")).close()
    old_id = Session.open(path, read_only=True).session_id
    checkpoints = tmp_path / "st.checkpoints"
    checkpoints.mkdir()
    (checkpoints / "backbone.pt").write_bytes(b"old")
    with Session.create(path, tiny_config("st"), overwrite=True) as session:
        assert session.session_id != old_id
    assert not checkpoints.exists()


# ----------------------------------------------------------------------------- checkpoints (item 4)


def test_a_checkpoint_from_a_deleted_session_is_not_resumed(tmp_path) -> None:
    from core.discover.backbone import TrainState
    from core.workflow.stage_backbone import (
        _read_backbone_checkpoint,
        _write_backbone_checkpoint,
        backbone_checkpoint_path,
    )

    path = tmp_path / "st.h5"
    first = Session.create(path, tiny_config("st"))
    state = TrainState(1, {"fc.weight": np.zeros((3, 4), np.float32)}, {}, [{"epoch": 1, "loss": 1.0, "test_acc": 0.5}])
    _write_backbone_checkpoint(backbone_checkpoint_path(first), state, first.session_id)
    assert _read_backbone_checkpoint(backbone_checkpoint_path(first), first.session_id).epoch == 1
    first.close()
    path.unlink()  # deleted by hand, checkpoints folder left behind
    with Session.create(path, tiny_config("st")) as second:
        notes: list[str] = []
        assert _read_backbone_checkpoint(backbone_checkpoint_path(second), second.session_id, notes.append) is None
        assert notes and "another session" in notes[0]


def test_a_checkpoint_for_another_class_count_is_not_resumed() -> None:
    """Same session id but a head of another size (e.g. the dataset changed): start afresh, no traceback."""
    from core.discover.backbone import build_model, state_to_numpy
    from core.workflow.stage_backbone import _checkpoint_fits

    model = build_model("resnet18", 3, image_size=32)
    arrays = state_to_numpy(model)
    assert _checkpoint_fits(model, arrays)
    arrays["fc.weight"] = np.zeros((5, 512), np.float32)
    assert not _checkpoint_fits(model, arrays)
    del arrays["fc.bias"]
    assert not _checkpoint_fits(model, arrays)


# ----------------------------------------------------------------------------- corruption (item 5)


def _copy_built(built: Path, tmp_path: Path, name: str = "tiny") -> Path:
    target = tmp_path / f"{name}.h5"
    copy_session(built, target)
    return target


def _damage_json(path: Path, key: str) -> None:
    """Rewrite a JSON document in place with broken text, the way a stray byte flip would."""
    with h5py.File(path, "r+") as f:
        raw = f[f"json/{key}"][()]
        text = raw.decode() if isinstance(raw, bytes) else raw
        digest = dict(f[f"json/{key}"].attrs)
        del f[f"json/{key}"]
        f.create_dataset(f"json/{key}", data=text[:-5] + "#####")
        for k, v in digest.items():
            f[f"json/{key}"].attrs[k] = v


def test_damaged_json_in_one_session_does_not_break_the_list(built_session_path, tmp_path) -> None:
    good = _copy_built(built_session_path, tmp_path, "good")
    bad = _copy_built(built_session_path, tmp_path, "bad")
    _damage_json(bad, "stages")
    rows = {r["name"]: r for r in list_sessions(tmp_path)}
    assert rows["good"]["error"] is None
    assert "bad.h5" in rows["bad"]["error"] and "stages" in rows["bad"]["error"]
    rc, out = run_cli("list", "--sessions-dir", str(tmp_path))
    assert rc == 0 and "good" in out and "unreadable" in out
    rc, out = run_cli("info", "bad", "--sessions-dir", str(tmp_path))
    assert rc == 2 and str(bad) in out and "stages" in out and "Traceback" not in out
    assert good.exists()


def test_every_dataset_is_checksummed(built_session_path) -> None:
    """Inline datasets carry fletcher32 or a digest; virtual ones read only checksummed array files."""
    with h5py.File(built_session_path, "r") as f:
        unchecked: list[str] = []
        virtual: list[str] = []

        def visit(name: str, obj) -> None:
            if isinstance(obj, h5py.Dataset):
                if obj.is_virtual:
                    virtual.append(name)
                elif not (obj.fletcher32 or "sha256" in obj.attrs):
                    unchecked.append(name)

        f.visititems(visit)
    assert unchecked == []
    assert "activations/train/a" in virtual  # the large arrays live in files of their own
    for folder_file in data_dir(built_session_path).iterdir():
        with h5py.File(folder_file, "r") as g:
            g.visititems(lambda name, obj, file=folder_file.name: unchecked.append(f"{file}:{name}")
                         if isinstance(obj, h5py.Dataset) and not obj.fletcher32 else None)
    assert unchecked == []
    assert verify_session(built_session_path).unchecked == []


def _all_content(path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, np.asarray(o[()]).tobytes())
                     if isinstance(o, h5py.Dataset) else None)
        out["@attrs"] = json.dumps({k: str(v) for k, v in f.attrs.items()}, sort_keys=True).encode()
    return out


def _flip_bytes(built: Path, tmp_path: Path, flips: int) -> int:
    """Flip one random bit at a time (restored after each check); count the flips verify reports.

    The bit is drawn uniformly over every byte of the session: the small file and its array
    files. Every flip is either reported by ``verify_session`` or left every readable value
    unchanged (it hit free space or padding): no flip changes data silently.
    """
    target = tmp_path / "flip.h5"
    copy_session(built, target)
    reference = _all_content(target)
    files = [target, *sorted(data_dir(target).iterdir())]
    sizes = np.array([p.stat().st_size for p in files])
    rng = np.random.default_rng(0)
    detected = 0
    for i in range(flips):
        offset = int(rng.integers(0, sizes.sum()))
        index = int(np.searchsorted(np.cumsum(sizes), offset, side="right"))
        path, offset = files[index], offset - int(sizes[:index].sum())
        with open(path, "r+b") as f:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ (1 << int(rng.integers(0, 8)))]))
        try:
            if verify_session(target).problems:
                detected += 1
                continue
            try:
                content = _all_content(target)
            except Exception as exc:  # pragma: no cover - would be an undetected corruption
                pytest.fail(f"flip {i} at byte {offset} of {path.name}: verify passed but reading failed: {exc}")
            assert content == reference, f"flip {i} at byte {offset} of {path.name} changed data undetected"
        finally:
            with open(path, "r+b") as f:
                f.seek(offset)
                f.write(bytes([byte]))
    return detected


def test_random_byte_flips_are_detected_or_harmless(built_session_path, tmp_path) -> None:
    assert _flip_bytes(built_session_path, tmp_path, 30) >= 20  # most bytes are checksummed data


@pytest.mark.slow
def test_200_random_byte_flips_are_detected_or_harmless(built_session_path, tmp_path) -> None:
    assert _flip_bytes(built_session_path, tmp_path, 200) >= 150


def test_corrupt_array_read_names_the_dataset_and_blocks_export(built_session_path, tmp_path) -> None:
    path = _copy_built(built_session_path, tmp_path)
    target = path
    with h5py.File(path, "r") as f:
        ds = f["backbone/state_dict/fc.weight"]
        if ds.is_virtual:  # the state dict went to an array file: damage the bytes there
            (source,) = ds.virtual_sources()
            target = path.parent / source.file_name
            with h5py.File(target, "r") as g:
                ds = g[source.dset_name]
                offset = ds.id.get_offset() if ds.chunks is None else ds.id.get_chunk_info(0).byte_offset
        else:
            offset = ds.id.get_offset() if ds.chunks is None else ds.id.get_chunk_info(0).byte_offset
    with open(target, "r+b") as f:
        f.seek(offset + 8)
        b = f.read(1)[0]
        f.seek(offset + 8)
        f.write(bytes([b ^ 0xFF]))
    session = Session.open(path, read_only=True)
    with pytest.raises(SessionCorrupt, match="backbone/state_dict/fc.weight"):
        session.read_arrays("backbone/state_dict")
    rc, out = run_cli("verify", "tiny", "--sessions-dir", str(tmp_path))
    assert rc != 0 and "backbone/state_dict/fc.weight" in out
    out_file = tmp_path / "model.pt"
    rc, out = run_cli("edit", "tiny", "--sessions-dir", str(tmp_path), "--class", "0", "--alpha", "1",
                      "--out", str(out_file), "--no-record")
    assert rc != 0 and not out_file.exists() and "Traceback" not in out and "salve verify" in out
    rc, out = run_cli("verify", "tiny", "--sessions-dir", str(tmp_path))
    rc_good, out_good = run_cli("verify", str(built_session_path))
    assert rc_good == 0 and "ok" in out_good


def _flip_first_chunk(path: Path, key: str) -> Path:
    """Flip one byte of the first stored chunk of ``key`` (in its array file when it has one)."""
    target, name = path, key
    with h5py.File(path, "r") as f:
        if f[key].is_virtual:
            (source,) = {(s.file_name, s.dset_name) for s in f[key].virtual_sources()}
            target, name = path.parent / source[0], source[1]
    with h5py.File(target, "r") as g:
        ds = g[name]
        offset = ds.id.get_offset() if ds.chunks is None else ds.id.get_chunk_info(0).byte_offset
    with open(target, "r+b") as f:
        f.seek(offset + 8)
        b = f.read(1)[0]
        f.seek(offset + 8)
        f.write(bytes([b ^ 0xFF]))
    return target


def test_edit_export_checks_only_what_it_reads(built_session_path, tmp_path) -> None:
    """Damaged training activations: ``verify`` fails on them, yet an edit export (which never
    reads them) works, so an export does not read the whole session first (issue 21 item 6)."""
    path = _copy_built(built_session_path, tmp_path)
    _flip_first_chunk(path, "activations/train/a")
    rc, out = run_cli("verify", "tiny", "--sessions-dir", str(tmp_path))
    assert rc != 0 and "activations/train/a" in out
    out_file = tmp_path / "model.pt"
    rc, out = run_cli("edit", "tiny", "--sessions-dir", str(tmp_path), "--class", "0", "--alpha", "1",
                      "--out", str(out_file), "--no-record")
    assert rc == 0, out
    assert out_file.exists() and "Traceback" not in out


# ----------------------------------------------------------------------------- environment (item 8)


@contextlib.contextmanager
def read_only_folder(folder: Path):
    """Make ``folder`` unwritable for real: permissions for a normal user; root ignores those, so
    there it becomes a read-only bind mount (EROFS), or the test is skipped."""
    import subprocess

    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
    if mounted:
        mounted = subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode == 0
        if not mounted:
            subprocess.run(["umount", str(folder)], capture_output=True)
    if not mounted:
        pytest.skip("cannot make a folder read-only here (root without mount rights)")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_read_only_folder_reads_without_a_lock(built_session_path, tmp_path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    copy_session(built_session_path, folder / "tiny.h5")
    with read_only_folder(folder):
        rc, out = run_cli("run", "tiny", "--sessions-dir", str(folder))
        assert rc == 0 and "Traceback" not in out, out
        rc, out = run_cli("info", "tiny", "--sessions-dir", str(folder))
        assert rc == 0, out
        rc, out = run_cli("verify", "tiny", "--sessions-dir", str(folder))
        assert rc == 0, out
        rc, out = run_cli("alpha-crit", "tiny", "--sessions-dir", str(folder))
        assert rc == 2 and "read-only" in out and "--no-record" in out, out
        rc, out = run_cli("alpha-crit", "tiny", "--no-record", "--sessions-dir", str(folder))
        assert rc == 0, out
        rc, out = run_cli("new", "other", "--sessions-dir", str(folder))
        assert rc == 2 and "Traceback" not in out and "read-only" in out, out
        rc, out = run_cli("export", "tiny", "--figures", "--sessions-dir", str(folder))
        assert rc == 2 and "Traceback" not in out and "read-only" in out, out
        assert sorted(p.name for p in folder.iterdir()) == ["tiny.data", "tiny.h5"]


def test_free_space_is_checked_before_a_transaction(tmp_path, monkeypatch) -> None:
    from core import atomic

    path = tmp_path / "s.h5"
    session = Session.create(path, demo_config("s"))
    monkeypatch.setattr(atomic, "FREE_SPACE_MARGIN", shutil.disk_usage(tmp_path).free + (1 << 40))
    with pytest.raises(SessionError, match="not enough free space"):
        with session.transaction() as tx:
            tx.write_json("x", 1)
    assert not any(p.name.startswith(".s.h5.tmp") for p in tmp_path.iterdir())
    session.close()


# ----------------------------------------------------------------------------- image files (item 8)


def _folder(root: Path, per_class: int = 3) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"img{i}.jpg", quality=90)


def test_truncated_jpeg_is_caught_by_the_scan(tmp_path) -> None:
    from core.config import DataConfig
    from core.discover.data import load_dataset

    _folder(tmp_path)
    good = tmp_path / "train" / "dog" / "img0.jpg"
    truncated = tmp_path / "train" / "dog" / "cut.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    bundle = load_dataset(DataConfig(kind="imagefolder", path=str(tmp_path), image_size=16))
    assert bundle.train.skipped == 1 and len(bundle.train) == 6


def test_data_stage_recounts_after_files_are_removed(tmp_path) -> None:
    from core.config import BackboneConfig, DataConfig, SessionConfig
    from core.workflow.pipeline import run_pipeline, run_stage

    _folder(tmp_path / "imgs")
    config = SessionConfig(name="f", data=DataConfig(kind="imagefolder", path=str(tmp_path / "imgs"), image_size=16),
                           backbone=BackboneConfig(epochs=1, batch_size=4), device="cpu")
    with Session.create(tmp_path / "f.h5", config) as session:
        run_pipeline(session, ["data"])
        assert len(session.read_array("data/train/labels")) == 6
        (tmp_path / "imgs" / "train" / "dog" / "img1.jpg").unlink()  # the user removes a file
        with pytest.raises(SessionError, match="changed since the data stage"):
            run_stage(session, "backbone")
        outcomes = run_pipeline(session, ["data"])
        assert "rescanned" in outcomes[0].message
        assert len(session.read_array("data/train/labels")) == 5
        assert session.stages()["data"].info["n_train"] == 5


# ----------------------------------------------------------------------------- full disk (item 8)


_FULL_DISK_SCRIPT = """
import resource, signal, sys
import numpy as np
from core.config import demo_config
from core.store.session import Session, SessionError
from core.atomic import WriteFailed, write_bytes
from core.store.session import copy_session
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path = sys.argv[1]
session = Session.create(path, demo_config("full"))
with session.transaction() as tx:
    tx.write_array("kept", np.arange(100_000, dtype=np.float64))  # 0.8 MB: kept inside the small file
limit = 512 * 1024  # the file system now takes at most 0.5 MB per file: the copy cannot finish
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
    with session.transaction() as tx:
        tx.write_json("x", 1)
except SessionError as exc:
    print("SESSION:", exc)
small = Session.create(sys.argv[2], demo_config("small"))  # a few kB: its copy fits
try:
    with small.transaction() as tx:  # a large array goes to a file of its own, which cannot finish
        tx.write_array("big", np.arange(300_000, dtype=np.float64))
except SessionError as exc:
    print("ARRAY:", exc)
try:
    write_bytes(path + ".export.pt", b"x" * (8 * 1024 * 1024))
except WriteFailed as exc:
    print("EXPORT:", exc)
"""


def test_full_disk_gives_a_message_and_leaves_no_temp_file(tmp_path) -> None:
    """A real write failure (file-size limit, EFBIG) during the session copy and an export."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    path = tmp_path / "full.h5"
    small = tmp_path / "small.h5"
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK_SCRIPT, str(path), str(small)], capture_output=True,
                          text=True, timeout=120, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert out.count("no space left") == 3 and "SESSION:" in out and "EXPORT:" in out and "ARRAY:" in out, out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "small.data") == [
        "full.h5", "full.h5.lock", "small.h5", "small.h5.lock"]
    assert not list((tmp_path / "small.data").glob("*"))  # no array file, not even a temp file
    with Session.open(path, read_only=True) as s:
        assert not s.has("x") and len(s.read_array("kept")) == 100_000
    with Session.open(small, read_only=True) as s:
        assert not s.has("big")


def test_a_large_write_is_refused_before_the_disk_fills(tmp_path, monkeypatch) -> None:
    from core import atomic

    session = Session.create(tmp_path / "s.h5", demo_config("s"))
    free = shutil.disk_usage(tmp_path).free
    monkeypatch.setattr(atomic, "FREE_SPACE_MARGIN", free - (1 << 20))  # 1 MB of room left
    with pytest.raises(SessionError, match="not enough free space"):
        with session.transaction() as tx:
            tx.write_array("big", np.zeros(1 << 19, np.float64))  # 4 MB
    assert not session.has("big")
    session.close()
