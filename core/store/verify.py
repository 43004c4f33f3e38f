"""Verification: read parts of a session and check them against their checksums.

``salve verify`` reads the whole session (:func:`verify_session`); :func:`require_intact` checks
only the parts an operation is about to use, so an export that reads the backbone weights never
reads gigabytes of activations first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import h5py

from core.store.h5io import _open_checked, _read_array, _read_json, _read_shards
from core.store.layout import DIGEST_ATTR, SHARDS_ATTR, SessionCorrupt, SessionError
from core.store.untrusted import link_problems, reference_problems

ROOT_ATTRS = ("format", "schema_version", "created", "updated")


class _HasPath(Protocol):
    path: Path


@dataclass
class VerifyReport:
    """What :func:`verify_session` found: damaged parts and datasets without any checksum."""

    path: Path
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _selected(name: str, only: Sequence[str] | None) -> bool:
    """Whether ``name`` is one of the keys ``only`` names, or lies under one (None: every key)."""
    if only is None:
        return True
    return any(name == key or name.startswith(key.rstrip("/") + "/") for key in only)


def _check_dataset(f: h5py.File, name: str, report: VerifyReport) -> None:
    """Read one dataset whole through its checksum; note it when it has none."""
    obj = f[name]
    if not isinstance(obj, h5py.Dataset):
        return
    if name.startswith("json/"):
        _read_json(f, name[5:])
    else:
        _read_array(f, name)
    report.checked += 1
    if obj.is_virtual:
        if not _sources_checksummed(f, obj):
            report.unchecked.append(name)
    elif not obj.fletcher32 and DIGEST_ATTR not in obj.attrs:
        report.unchecked.append(name)


def _check_file(f: h5py.File, report: VerifyReport, only: Sequence[str] | None) -> None:
    names: list[str] = []
    try:
        f.visit(names.append)
    except Exception as exc:
        report.problems.append(f"the group structure is damaged ({type(exc).__name__}: {exc})")
    for name in names:
        if not _selected(name, only):
            continue
        try:
            _check_dataset(f, name, report)
        except Exception as exc:
            report.problems.append(f"'{name}': {type(exc).__name__}: {exc}")
    if only is None:
        report.problems += _shard_problems(f)
    try:
        for attr in ROOT_ATTRS:
            f.attrs[attr]
    except Exception as exc:
        report.problems.append(f"the file's attributes are damaged ({type(exc).__name__}: {exc})")


def verify_session(path: str | os.PathLike, only: Sequence[str] | None = None) -> VerifyReport:
    """Read every dataset of a session in full (or those under the keys ``only`` names),
    checking fletcher32 checksums and stored digests."""
    path = Path(path)
    report = VerifyReport(path)
    report.problems += link_problems(path, writing=False)
    try:
        f = _open_checked(path)
    except SessionError as exc:
        report.problems.append(str(exc))
        return report
    except Exception as exc:
        report.problems.append(f"{path} cannot be opened: {type(exc).__name__}: {exc}")
        return report
    try:
        report.problems += reference_problems(f, path)  # files that are not the session's own
        _check_file(f, report, only)
    finally:
        try:
            f.close()
        except Exception as exc:
            report.problems.append(f"closing failed ({type(exc).__name__}: {exc})")
    return report


def _shard_problems(f: h5py.File) -> list[str]:
    """Each row-sharded group's ``shards`` attribute (checksummed) must name exactly the files its
    datasets read: the attribute is what later commits extend."""
    groups: list[str] = []
    try:
        f.visititems(lambda name, obj: groups.append(name)
                     if isinstance(obj, h5py.Group) and SHARDS_ATTR in obj.attrs else None)
    except Exception:
        return []  # the damaged structure is reported by the walk over every dataset
    problems: list[str] = []
    for name in groups:
        try:
            named = {rel for _a, _b, rel in _read_shards(f, name)}
            read = {vs.file_name for ds in f[name].values() if isinstance(ds, h5py.Dataset) and ds.is_virtual
                    for vs in ds.virtual_sources()}
        except Exception as exc:
            problems.append(f"'{name}': {type(exc).__name__}: {exc}")
            continue
        if named != read:
            problems.append(f"'{name}': its shards attribute names {sorted(named - read) or sorted(named)} "
                            f"but its arrays read {sorted(read - named) or sorted(read)}")
    return problems


def _sources_checksummed(f: h5py.File, ds: h5py.Dataset) -> bool:
    """Whether every array file behind a virtual dataset carries HDF5 checksums."""
    folder = Path(f.filename).parent
    for vs in ds.virtual_sources():
        with h5py.File(folder / vs.file_name, "r") as g:
            if not g[vs.dset_name].fletcher32:
                return False
    return True


def require_intact(session: _HasPath, keys: Sequence[str] | None = None) -> None:
    """Raise :class:`SessionCorrupt` unless the parts of ``session`` under ``keys`` (every part
    when None) pass their checksums. Callers name what they read: ``("json", "backbone")``."""
    report = verify_session(session.path, only=keys)
    if not report.ok:
        raise SessionCorrupt(
            f"session {session.path} is damaged ({len(report.problems)} part(s), first: "
            f"{report.problems[0]}); nothing was exported. Run `salve verify {session.path}`, then "
            "restore the file from a backup or rerun the damaged stages"
        )


def verify_isolated(path: str | os.PathLike, timeout: float | None = None) -> VerifyReport:
    """:func:`verify_session` run in a child process: a damaged file that crashes the HDF5 library
    itself (a segfault, seen with one flipped bit of a virtual dataset's mapping) is reported as
    damage instead of ending this process without a word."""
    path = Path(path)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run([sys.executable, "-m", "core.store.verify", str(path)], capture_output=True,
                              text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return VerifyReport(path, problems=[f"reading {path} did not finish in {timeout:.0f} s; it may be damaged"])
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return VerifyReport(path, problems=[
            f"reading {path} crashed the HDF5 library ({name}): the file is damaged and cannot be used; "
            "restore it from a backup or recreate the session"])
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        return VerifyReport(path, data["checked"], data["problems"], data["unchecked"])
    except (ValueError, IndexError, KeyError, TypeError):
        return VerifyReport(path, problems=[f"verifying {path} failed: {proc.stderr.strip()[-500:]}"])


if __name__ == "__main__":  # the child of verify_isolated
    _report = verify_session(sys.argv[1])
    print(json.dumps({"checked": _report.checked, "problems": _report.problems, "unchecked": _report.unchecked}))

