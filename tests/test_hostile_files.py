"""Hostile files (issue 23): a session from someone else, or a folder with links, never makes the
tool touch files outside the session.

Every case is a fixture that builds the hostile layout in its own sessions folder beside one
shared ``victim/`` folder. The module checks itself that ``victim/`` is byte-for-byte unchanged
after all its tests ran (``victim_unchanged``), whatever the tests asserted.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_helpers import run_cli

import core.store.arrayfiles as arrayfiles
from core.config import demo_config
from core.store.session import (
    Session,
    SessionError,
    copy_session,
    data_dir,
    list_sessions,
    verify_session,
)

ROOT = Path(__file__).resolve().parents[1]
ROWS, DIM = 64, 8


# ----------------------------------------------------------------------------- the victim


def _tree_digest(folder: Path) -> dict[str, str]:
    """Name → sha256 (or link target) of everything under ``folder``, links not followed."""
    out: dict[str, str] = {}
    for item in sorted(folder.rglob("*")):
        rel = str(item.relative_to(folder))
        if item.is_symlink():
            out[rel] = "link:" + os.readlink(item)
        elif item.is_file():
            out[rel] = hashlib.sha256(item.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


@pytest.fixture(scope="module")
def hostile_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def victim(hostile_root: Path) -> Path:
    """Files that belong to someone else, beside the sessions folders: text, an HDF5 file (the
    kind a clean-up would delete) and a JSON document in an HDF5 file."""
    folder = hostile_root / "victim"
    folder.mkdir()
    (folder / "precious.txt").write_text("years of notes\n" * 100)
    (folder / "readme.txt").write_text("do not delete\n")
    with h5py.File(folder / "secret.h5", "w") as f:
        f["data"] = np.full((ROWS, DIM), 7.0, dtype=np.float32)
        f["json/summary"] = json.dumps({"secret": True})
    (folder / "notes-0123456789ab.h5").write_bytes((folder / "secret.h5").read_bytes())  # an array-file name
    return folder


@pytest.fixture(scope="module", autouse=True)
def victim_unchanged(victim: Path):
    """After every test of the module: the victim folder is exactly as it was."""
    before = _tree_digest(victim)
    yield
    assert _tree_digest(victim) == before, "a hostile-files test changed files outside the session"


@pytest.fixture
def folder(hostile_root: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh sessions folder beside ``victim/``."""
    path = hostile_root / f"sessions-{request.node.name}"[:120]
    path.mkdir()
    return path


def _make_session(path: Path, monkeypatch: pytest.MonkeyPatch, rows: int = ROWS) -> Path:
    """A small real session whose arrays live in array files (``<name>.data/``)."""
    monkeypatch.setattr(arrayfiles, "EXTERNAL_MIN_BYTES", 1)
    with Session.create(path, demo_config(path.stem)) as s:
        with s.transaction() as tx:
            tx.write_arrays("backbone/state_dict", {"fc.weight": np.ones((3, DIM), np.float32),
                                                    "fc.bias": np.zeros(3, np.float32)})
        for start in (0, rows // 2):
            with s.transaction() as tx:
                tx.append_rows("activations/test", start, rows, {
                    "a": np.arange(start * DIM, (start + rows // 2) * DIM, dtype=np.float32).reshape(-1, DIM),
                    "labels": np.arange(start, start + rows // 2)})
    return path


@pytest.fixture
def session(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return _make_session(folder / "s.h5", monkeypatch)




def run_cli_child(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI in a child process: for files that could hang or crash the process reading them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "salve_tui.cli.main", *argv], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=ROOT)


def _rewrite_virtual(path: Path, key: str, source: str, dset: str = "data",
                     rows: int = ROWS, dim: int = DIM) -> None:
    """Re-point ``key`` of the small file at ``source`` (any path HDF5 accepts)."""
    with h5py.File(path, "r+") as f:
        del f[key]
        layout = h5py.VirtualLayout(shape=(rows, dim), dtype=np.float32)
        layout[:] = h5py.VirtualSource(source, dset, shape=(rows, dim))
        f.create_virtual_dataset(key, layout, fillvalue=0)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ----------------------------------------------------------------------------- 1. links


@pytest.fixture
def lock_link(session: Path, victim: Path) -> Path:
    (session.parent / "s.h5.lock").unlink()  # the lock file the writer left
    (session.parent / "s.h5.lock").symlink_to(Path("..") / victim.name / "precious.txt")
    return session


def test_a_linked_lock_file_is_refused_and_not_written(lock_link: Path) -> None:
    with pytest.raises(SessionError, match="lock file .* symbolic link"):
        Session.open(lock_link)
    rc, out = run_cli("delete", str(lock_link), "--yes")  # removes the link, never writes through it
    assert rc == 0 and not lock_link.exists() and "Traceback" not in out


@pytest.fixture
def folder_link(session: Path, victim: Path) -> Path:
    """``s.data`` replaced by a link to the victim folder (the session's own files moved there
    would be found; the victim's own .h5 files are what a clean-up would delete)."""
    data = data_dir(session)
    for item in data.iterdir():
        item.unlink()
    data.rmdir()
    data.symlink_to(Path("..") / victim.name)
    return session


def test_a_linked_array_folder_is_refused_for_reading_and_writing(folder_link: Path) -> None:
    for read_only in (False, True):
        with pytest.raises(SessionError, match=r"array folder s\.data/ is a symbolic link"):
            Session.open(folder_link, read_only=read_only)
    rc, out = run_cli("verify", str(folder_link))
    assert rc == 1 and "symbolic link" in out


@pytest.fixture
def shared_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Two sessions; the second's array folder is a link to the first's."""
    a = _make_session(folder / "a.h5", monkeypatch)
    b = _make_session(folder / "b.h5", monkeypatch)
    for item in data_dir(b).iterdir():
        os.link(item, data_dir(a) / item.name)  # b's files still exist, through the link
        item.unlink()
    data_dir(b).rmdir()
    data_dir(b).symlink_to(data_dir(a).name)
    return a, b


def test_a_writer_never_cleans_another_sessions_folder(shared_folder: tuple[Path, Path]) -> None:
    a, b = shared_folder
    before = sorted(p.name for p in data_dir(a).iterdir())
    with pytest.raises(SessionError, match="symbolic link"):
        with Session.open(b) as s, s.transaction() as tx:
            tx.write_json("note", {"x": 1})
    assert sorted(p.name for p in data_dir(a).iterdir()) == before
    assert verify_session(a).ok


@pytest.fixture
def linked_session_file(folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    real = _make_session(folder / "real.h5", monkeypatch)
    link = folder / "alias.h5"
    link.symlink_to(real.name)
    return real, link


def test_a_session_file_that_is_a_link_is_read_but_never_written(linked_session_file) -> None:
    real, link = linked_session_file
    before = real.read_bytes()
    with Session.open(link, read_only=True) as s:  # resolved once, with a notice
        assert s.path == real.resolve() and "link" in s.notices[0]
        assert s.read_array("backbone/state_dict/fc.weight").shape == (3, DIM)
    with pytest.raises(SessionError, match="session file is a symbolic link"):
        Session.open(link)
    assert link.is_symlink() and real.read_bytes() == before


@pytest.fixture
def copy_source_with_links(session: Path, victim: Path) -> Path:
    """An array folder holding a link (named like an array file) to a file outside."""
    (data_dir(session) / "extra-0123456789ab.h5").symlink_to(Path("../..") / victim.name / "secret.h5")
    return session


def test_copy_never_follows_a_link(copy_source_with_links: Path) -> None:
    target = copy_source_with_links.parent / "copy.h5"
    rc, out = run_cli("copy", str(copy_source_with_links), str(target))
    assert rc != 0 and "symbolic link" in out and "Traceback" not in out
    assert not target.exists() and not data_dir(target).exists()


def test_delete_removes_links_without_following_them(copy_source_with_links: Path, victim: Path) -> None:
    rc, out = run_cli("delete", str(copy_source_with_links), "--yes")
    assert rc == 0, out
    assert not data_dir(copy_source_with_links).exists() and (victim / "secret.h5").is_file()


# ----------------------------------------------------------------------------- 2. only its own files


@pytest.fixture(params=["absolute", "dotdot", "other-session"])
def foreign_source(request, session: Path, victim: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``activations/test/a`` re-pointed at a file that is not the session's own."""
    if request.param == "absolute":
        source = str(victim / "secret.h5")
    elif request.param == "dotdot":
        source = f"s.data/../../{victim.name}/secret.h5"
    else:
        other = _make_session(session.parent / "other.h5", monkeypatch)
        name = sorted(p.name for p in data_dir(other).iterdir() if p.name.startswith("activations"))[0]
        source = f"other.data/{name}"
    with h5py.File(session, "r+") as f:
        group = f["activations/test"]
        attrs = dict(group.attrs)
    _rewrite_virtual(session, "activations/test/a", source, "data" if request.param != "other-session" else "a",
                     rows=ROWS if request.param != "other-session" else ROWS // 2)
    with h5py.File(session, "r+") as f:  # the shards attribute is left as the writer made it
        for k, v in attrs.items():
            f["activations/test"].attrs[k] = v
    return session


def test_a_virtual_source_outside_the_session_is_refused(foreign_source: Path) -> None:
    with pytest.raises(SessionError, match="not its own|not a relative path|not a file of"):
        Session.open(foreign_source, read_only=True)
    report = verify_session(foreign_source)
    assert not report.ok and any("activations/test/a" in p for p in report.problems)
    rc, out = run_cli("copy", str(foreign_source), str(foreign_source.parent / "c.h5"))
    assert rc != 0 and not (foreign_source.parent / "c.h5").exists()


@pytest.fixture
def external_json_link(session: Path, victim: Path) -> Path:
    with h5py.File(session, "r+") as f:
        del f["json/summary"]
        f["json/summary"] = h5py.ExternalLink(str(victim / "secret.h5"), "json/summary")
    return session


def test_an_external_link_is_refused(external_json_link: Path) -> None:
    with pytest.raises(SessionError, match="external link"):
        Session.open(external_json_link, read_only=True)
    rc, out = run_cli("info", str(external_json_link))
    assert rc != 0 and "external link" in out and '"secret": true' not in out and "Traceback" not in out
    assert not verify_session(external_json_link).ok


@pytest.fixture
def external_storage(session: Path, victim: Path) -> Path:
    """``fc.weight`` whose bytes are stored in the victim's text file (HDF5 external storage)."""
    with h5py.File(session, "r+") as f:
        del f["backbone/state_dict/fc.weight"]
        f.create_dataset("backbone/state_dict/fc.weight", shape=(3, DIM), dtype=np.float32,
                         external=[(str(victim / "precious.txt"), 0, 3 * DIM * 4)])
    return session


def test_external_raw_storage_is_refused(external_storage: Path) -> None:
    with pytest.raises(SessionError, match="external file"):
        Session.open(external_storage, read_only=True)
    report = verify_session(external_storage)
    assert not report.ok and any("fc.weight" in p for p in report.problems)


@pytest.fixture(params=["not-hdf5", "foreign-hdf5"])
def not_a_session(request, folder: Path) -> Path:
    """A user's file with a user's folder beside it, named as a session would be."""
    path = folder / ("notes.txt" if request.param == "not-hdf5" else "notes.h5")
    if request.param == "not-hdf5":
        path.write_text("my notes\n")
    else:
        with h5py.File(path, "w") as f:
            f["x"] = np.arange(3)
    (folder / "notes.data").mkdir()
    (folder / "notes.data" / "mine.h5").write_text("mine\n")
    return path


def test_create_never_replaces_a_file_that_is_not_a_session(not_a_session: Path) -> None:
    before = not_a_session.read_bytes()
    with pytest.raises(SessionError, match="not a"):
        Session.create(not_a_session.with_suffix(".h5") if not_a_session.suffix == ".h5" else not_a_session,
                       demo_config("notes"), overwrite=True)
    assert not_a_session.read_bytes() == before and (not_a_session.parent / "notes.data" / "mine.h5").exists()


def test_delete_refuses_a_file_that_is_not_a_session(not_a_session: Path) -> None:
    before = not_a_session.read_bytes()
    rc, out = run_cli("delete", str(not_a_session), "--yes")
    assert rc != 0 and "not a" in out and "Traceback" not in out
    assert not_a_session.read_bytes() == before and (not_a_session.parent / "notes.data" / "mine.h5").exists()


# ----------------------------------------------------------------------------- 3. bounded parsing


@pytest.fixture
def deep_json(session: Path) -> Path:
    """``json/summary`` nested 200,000 deep, with a matching digest (only the depth is hostile)."""
    text = "[" * 200_000 + "]" * 200_000
    with h5py.File(session, "r+") as f:
        del f["json/summary"]
        ds = f.create_dataset("json/summary", data=text)
        ds.attrs["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    return session


def test_deeply_nested_json_gets_a_message(deep_json: Path) -> None:
    rc, out = run_cli("info", str(deep_json))
    assert rc != 0 and "nested 200000 levels" in out and "Traceback" not in out
    (row,) = list_sessions(deep_json.parent)
    assert "nested" in row["error"]


@pytest.fixture
def huge_declared(session: Path) -> Path:
    """A virtual dataset declaring 2**32 x 512 float32 (8 TiB) over a small array file."""
    with h5py.File(session, "r") as f:
        (source,) = {(vs.file_name, vs.dset_name) for vs in f["backbone/state_dict/fc.weight"].virtual_sources()}
    with h5py.File(session, "r+") as f:
        del f["backbone/state_dict/fc.weight"]
        layout = h5py.VirtualLayout(shape=(1 << 32, 512), dtype=np.float32)
        layout[0:3, 0:DIM] = h5py.VirtualSource(source[0], source[1], shape=(3, DIM))
        f.create_virtual_dataset("backbone/state_dict/fc.weight", layout, fillvalue=0)
    return session


def test_a_declared_shape_past_the_files_is_refused_before_allocating(huge_declared: Path) -> None:
    with Session.open(huge_declared, read_only=True) as s, pytest.raises(SessionError, match="declares"):
        s.read_array("backbone/state_dict/fc.weight")
    with Session.open(huge_declared, read_only=True) as s, pytest.raises(SessionError, match="declares"):
        with s.rows("backbone/state_dict/fc.weight"):  # streamed block by block: refused as well
            pass


@pytest.fixture
def fifo_in_folder(session: Path) -> Path:
    os.mkfifo(session.parent / "pipe.h5")
    return session.parent


def test_list_skips_a_fifo_instead_of_hanging(fifo_in_folder: Path) -> None:
    proc = run_cli_child("list", "--sessions-dir", str(fifo_in_folder), timeout=120)
    assert proc.returncode == 0 and "pipe" not in proc.stdout and " s " in f" {proc.stdout} "


# ----------------------------------------------------------------------------- 4. leftovers


@pytest.fixture
def interrupted_delete(session: Path) -> Path:
    """What ``kill -9`` right after the old delete's unlink of the ``.h5`` left: folder and lock."""
    (session.parent / "s.h5.lock").write_text("12345")
    session.unlink()
    return session


def test_rerunning_delete_finishes_an_interrupted_delete(interrupted_delete: Path) -> None:
    assert data_dir(interrupted_delete).is_dir()
    rc, out = run_cli("delete", str(interrupted_delete), "--yes")
    assert rc == 0 and "interrupted" in out, out
    assert not data_dir(interrupted_delete).exists() and not (interrupted_delete.parent / "s.h5.lock").exists()


@pytest.fixture
def killed_copy(session: Path) -> tuple[Path, int]:
    """The temp file and folder of a ``salve copy`` that was killed, and of one still running."""
    dead = _dead_pid()
    (session.parent / f".c.h5.tmp-{dead}").write_bytes(session.read_bytes())
    (session.parent / f".c.data.tmp-{dead}").mkdir()
    (session.parent / f".c.data.tmp-{dead}" / "x-0123456789ab.h5").write_bytes(b"partial")
    (session.parent / f".live.h5.tmp-{os.getpid()}").write_bytes(b"a copy in progress")
    return session.parent, dead


def test_temp_files_of_a_killed_copy_are_removed_by_the_next_list(killed_copy) -> None:
    folder, dead = killed_copy
    rc, out = run_cli("list", "--sessions-dir", str(folder))
    assert rc == 0 and f"process {dead} is gone" in out
    assert not (folder / f".c.h5.tmp-{dead}").exists() and not (folder / f".c.data.tmp-{dead}").exists()
    assert (folder / f".live.h5.tmp-{os.getpid()}").exists()  # its process still runs


# ----------------------------------------------------------------------------- 5. corruption


@pytest.fixture
def crashing_flip(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One flipped bit in a virtual dataset's mapping (the source selection's type after the
    source's dataset name, in the small file's global heap: "all" becomes "points"): HDF5 2.0
    segfaults when it parses it (found by flipping random bits; 400 rows make it crash)."""
    session = _make_session(folder / "s.h5", monkeypatch, rows=400)
    raw = bytearray(session.read_bytes())
    at = raw.index(b".h5\x00a\x00") + len(b".h5\x00a\x00")
    assert raw[at] == 3  # H5S_SEL_ALL
    raw[at] ^= 0x02
    session.write_bytes(bytes(raw))
    return session


def test_a_file_that_crashes_hdf5_is_reported_as_damage(crashing_flip: Path) -> None:
    proc = run_cli_child("verify", str(crashing_flip))
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-500:])
    assert "damaged" in proc.stdout.lower()
    for argv in (["copy", str(crashing_flip), str(crashing_flip.parent / "c.h5")], ["info", str(crashing_flip)]):
        proc = run_cli_child(*argv)  # the first open of a file this process did not write: in a child
        assert proc.returncode > 0 and "crashed the HDF5 library" in proc.stderr + proc.stdout, proc


@pytest.fixture
def shards_flip(session: Path) -> Path:
    """One flipped byte in the ``shards`` attribute's file name, the arrays left as they were."""
    with h5py.File(session, "r+") as f:
        text = f["activations/test"].attrs["shards"]
        text = text.decode() if isinstance(text, bytes) else text
        f["activations/test"].attrs["shards"] = text.replace("s.data/", "t.data/", 1)
    return session


def test_a_flip_in_the_shards_attribute_fails_verify(shards_flip: Path) -> None:
    report = verify_session(shards_flip)
    assert not report.ok and any("shards" in p for p in report.problems)


# ----------------------------------------------------------------------------- 6. inputs


def test_a_session_name_with_control_characters_is_refused(folder: Path) -> None:
    with pytest.raises(SessionError, match="control characters"):
        Session.create(folder / "bad\nname.h5", demo_config("bad"))
    assert list(folder.iterdir()) == []
    with pytest.raises(SessionError, match="control characters"):
        copy_session(folder / "missing.h5", folder / "x\ty.h5")


@pytest.fixture
def wide_images(folder: Path) -> dict[str, Path]:
    """A 16-bit grayscale PNG and a float TIFF (0..1), both a left-to-right ramp (mean half
    scale), and a float TIFF with values no 8-bit scale fits."""
    from PIL import Image

    ramp = np.tile(np.linspace(0.0, 1.0, 64), (64, 1))
    paths = {"png16": folder / "ramp16.png", "tiff01": folder / "ramp01.tif", "tiffbad": folder / "bad.tif"}
    Image.fromarray(np.rint(ramp * 65535).astype(np.uint16)).save(paths["png16"])
    Image.fromarray(ramp.astype(np.float32), mode="F").save(paths["tiff01"])
    Image.fromarray((ramp * 5000).astype(np.float32), mode="F").save(paths["tiffbad"])
    return paths


def test_16_bit_and_float_images_keep_their_range(wide_images: dict[str, Path]) -> None:
    from core.discover.data import _is_readable_image, load_image_file

    for name in ("png16", "tiff01"):
        pixels = load_image_file(wide_images[name], 64)
        assert pixels[:, 0].max() <= 1 and pixels[:, -1].min() >= 254, name  # black to white
        assert abs(float(pixels.mean()) - 127.5) < 1.5, name
    assert not _is_readable_image(wide_images["tiffbad"])  # refused at scan time


@pytest.fixture
def nan_checkpoint(folder: Path) -> Path:
    import torch

    from core.discover.backbone import build_model

    state = build_model("resnet18", 3, image_size=32).state_dict()
    state["fc.weight"] = torch.full_like(state["fc.weight"], float("nan"))
    path = folder / "diverged.pt"
    torch.save(state, path)
    return path


def test_a_checkpoint_with_nan_weights_is_refused_at_creation(nan_checkpoint: Path) -> None:
    folder = nan_checkpoint.parent
    rc, out = run_cli("new", "n", "--weights", str(nan_checkpoint), "--sessions-dir", str(folder))
    assert rc == 2 and "NaN or infinite" in out and "fc.weight" in out and not (folder / "n.h5").exists()


def test_an_image_size_below_the_architecture_minimum_is_refused_at_new(folder: Path) -> None:
    rc, out = run_cli("new", "inc", "--arch", "inception_v3", "--image-size", "32", "--sessions-dir", str(folder))
    assert rc == 2 and "at least 75x75" in out and not (folder / "inc.h5").exists()


def test_a_bad_device_is_refused_when_parsed(folder: Path) -> None:
    rc, out = run_cli("new", "dev", "--device", "bogus:7", "--sessions-dir", str(folder))
    assert rc == 2 and "unknown device 'bogus:7'" in out and not (folder / "dev.h5").exists()


def test_out_into_a_missing_folder_is_refused_unless_asked(session: Path) -> None:
    out = session.parent / "no" / "such" / "x.png"
    argv = ["top-samples", str(session), "--feature", "0", "--out", str(out)]
    rc, text = run_cli(*argv)
    assert rc == 2 and "does not exist" in text and not (session.parent / "no").exists()
    run_cli(*argv, "--parents")  # asked for: the folder is made (the command itself then runs)
    assert out.parent.is_dir()


FULL_DISK_WRITE = """
import resource, signal, sys
import torch
from core.atomic import WriteFailed, atomic_write
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
try:
    with atomic_write(sys.argv[1], overwrite=True) as f:  # how the backbone checkpoint is written
        torch.save({"w": torch.zeros(1 << 20)}, f)
except WriteFailed as exc:
    print("message:", exc)
"""


def test_a_full_disk_during_a_checkpoint_is_one_message(folder: Path) -> None:
    target = folder / "backbone.pt"
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_WRITE, str(target)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-800:]
    assert proc.stdout.startswith("message: no space left to write") and str(target) in proc.stdout
    assert list(folder.iterdir()) == []  # no temp file left
