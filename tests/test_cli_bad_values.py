"""Every CLI command with a table of bad values: rc ≠ 0, one message, no traceback, disk untouched."""

from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
from pathlib import Path

import pytest

from core.store.session import copy_session
from salve_tui.cli.main import main

LONG = "n" * 300


def run_cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue() + err.getvalue()


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its digest (lock files, which a writer may create, left out)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


class Evil:
    def __reduce__(self):
        return (print, ("code ran",))


@pytest.fixture(scope="module")
def workspace(built_session_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-values")
    (root / "sessions").mkdir()
    copy_session(built_session_path, root / "sessions" / "tiny.h5")
    (root / "empty.pt").write_bytes(b"")
    (root / "text.pt").write_text("just some notes\n")
    with open(root / "evil.pt", "wb") as f:
        pickle.dump({"fc.weight": Evil()}, f)
    (root / "existing.pt").write_bytes(b"a previous good export")
    (root / "folder").mkdir()
    return root


S = "tiny"
BAD: dict[str, list[list[str]]] = {
    "new": [
        ["new", "{name}", "--lr", "inf"], ["new", "{name}", "--lr", "nan"], ["new", "{name}", "--lr", "0"],
        ["new", "{name}", "--l1", "nan"], ["new", "{name}", "--l1", "-1"], ["new", "{name}", "--seed", "-5"],
        ["new", "{name}", "--sae-hidden", "0"], ["new", "{name}", "--batch-size", "0"],
        ["new", "{name}", "--image-size", "0"], ["new", "{name}", "--n-train", "-1"],
        ["new", "{name}", "--epochs", "-1"], ["new", "{name}", "--sae-epochs", "0"],
        ["new", "{name}", "--sae-lr", "inf"], ["new", "{name}", "--topk", "0"], ["new", "{name}", "--max-per-class", "0"],
        ["new", "{name}", "--sae-batch-size", "abc"], ["new", LONG],
        ["new", "{name}", "--weights", "{root}/empty.pt"], ["new", "{name}", "--weights", "{root}/text.pt"],
        ["new", "{name}", "--weights", "{root}/evil.pt"], ["new", "{name}", "--weights", "{root}/missing.pt"],
        ["new", S],  # exists already
    ],
    "demo": [["demo", "--name", "../escape"], ["demo", "--name", LONG]],
    "run": [["run", "missing"], ["run", S, "bogus-stage"], ["run", LONG]],
    "info": [["info", "missing"], ["info", LONG]],
    "verify": [["verify", "missing"]],
    "sweep": [
        ["sweep", S, "--class", "0", "--alphas", "nan,1"], ["sweep", S, "--class", "0", "--alphas", "inf:1:5"],
        ["sweep", S, "--class", "0", "--alphas", "0:1:1"], ["sweep", S, "--class", "0", "--alphas", ""],
        ["sweep", S, "--class", "0", "--n-alphas", "-5"], ["sweep", S, "--class", "0", "--n-alphas", "0"],
        ["sweep", S, "--feature", "-1"], ["sweep", S, "--class", "no-such-class"],
        ["sweep", S, "--class", "0", "--method", "rome", "--rome-sample", "-1"], ["sweep", S],
    ],
    "alpha-crit": [
        ["alpha-crit", S, "--feature", "-1"], ["alpha-crit", S, "--class", "no-such-class"],
        ["alpha-crit", S, "--class", "0", "--csv", "{root}/folder"],
    ],
    "edit": [
        ["edit", S, "--class", "0", "--alpha", "inf"], ["edit", S, "--class", "0", "--alpha", "nan"],
        ["edit", S, "--class", "0", "--alpha", "1", "--out", "{root}/folder"],
        ["edit", S, "--class", "0", "--alpha", "1", "--out", "{root}/model.bin"],
        ["edit", S, "--class", "0", "--alpha", "1", "--out", "{root}/existing.pt"],
        ["edit", S, "--feature", "99999", "--alpha", "1", "--out", "{root}/new.pt"],
        ["edit", S, "--class", "0"],
    ],
    "robustness": [
        ["robustness", S, "--seeds", "0"], ["robustness", S, "--n-alphas", "0"],
        ["robustness", S, "--epochs", "0"], ["robustness", S, "--class", "no-such-class"],
    ],
    "saliency": [
        ["saliency", S, "--sample", "-1", "--class", "0"], ["saliency", S, "--sample", "99999", "--class", "0"],
        ["saliency", S, "--sample", "0", "--feature", "-1"], ["saliency", S, "--sample", "0"],
        ["saliency", S, "--sample", "0", "--class", "0", "--out", "{root}/x.jpg"],
    ],
    "actmax": [
        ["actmax", S, "--feature", "-1"], ["actmax", S, "--feature", "0", "--steps", "0"],
        ["actmax", S, "--feature", "0", "--seed", "-1"], ["actmax", S, "--feature", "99999"],
    ],
    "top-samples": [
        ["top-samples", S, "--feature", "0", "-k", "0"], ["top-samples", S, "--feature", "0", "-k", "17"],
        ["top-samples", S, "--feature", "-1"],
    ],
    "export": [["export", S]],
    "groundtruth": [["groundtruth", S, "--max-samples", "0"], ["groundtruth", S, "--layer", "no.such.layer"]],
}
CASES = [(cmd, i) for cmd, rows in BAD.items() for i in range(len(rows))]


@pytest.mark.parametrize(("command", "row"), CASES, ids=[f"{c}-{i}" for c, i in CASES])
def test_bad_value_is_refused_with_one_message(workspace: Path, command: str, row: int, capfd) -> None:
    argv = [a.replace("{root}", str(workspace)).replace("{name}", f"case{row}") for a in BAD[command][row]]
    argv += ["--sessions-dir", str(workspace / "sessions")]
    before = snapshot(workspace)
    rc, out = run_cli(argv)
    captured = capfd.readouterr()
    text = out + captured.out + captured.err
    assert rc != 0, f"{argv} was accepted:\n{text}"
    assert "Traceback" not in text and "code ran" not in text, text
    assert "error" in text, text
    assert snapshot(workspace) == before, f"{argv} changed files on disk"


def test_command_module_error_is_one_message_under_python_m(tmp_path: Path) -> None:
    """Run as ``python -m salve_tui.cli.main`` (as torchrun and the child-process tests do), a
    command module's ``CliError`` is still one ``error:`` line with exit status 2. When command
    modules imported ``cli.main``, they raised a second copy's ``CliError``, which the
    ``__main__`` copy did not catch: a traceback and exit status 1."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    argv = [sys.executable, "-m", "salve_tui.cli.main", "saliency", "nosuch", "--sample", "0",
            "--sessions-dir", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=root, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "error: give exactly one of --feature K (Grad-FAM) or --class C (Grad-CAM)"
