"""The discover pipeline end to end on tiny real data: stages, resume after cancel/kill, ViT, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.jobs import CancelToken, JobCancelled, Progress
from core.store.session import Session, copy_session, data_dir
from core.workflow import pipeline, stage_activations
from core.workflow.pipeline import load_activations, load_model, load_sae, run_pipeline, run_stage
from salve_tui.cli.main import main as salve
from tests.conftest import tiny_config

REPO = Path(__file__).resolve().parents[1]


def test_built_session_is_consistent(built_session_path: Path) -> None:
    with Session.open(built_session_path, read_only=True) as s:
        assert {k: v.state for k, v in s.stages().items()} == dict.fromkeys(
            ("data", "backbone", "activations", "sae", "rankings"), "done"
        )
        test = load_activations(s, "test")
        model = load_model(s, torch.device("cpu"))
        _, _, fc = __import__("core.discover.backbone", fromlist=["final_linear"]).final_linear(model)
        # the cache is exactly the classifier's input: logits = W a + b
        logits = test["a"] @ fc.weight.detach().numpy().T + fc.bias.detach().numpy()
        assert np.allclose(logits, test["logits"], atol=1e-4)
        assert test["a"].shape == (40, 512)
        M = s.read_array("rankings/class_means")
        dominant = s.read_array("rankings/dominant")
        assert M.shape == (10, 16)
        assert np.array_equal(dominant, np.abs(M).argmax(1))
        sae = load_sae(s)
        u = sae.encode(torch.from_numpy(load_activations(s, "train")["a"])).detach().numpy()
        labels = s.read_array("data/train/labels")
        assert np.allclose(M[2], u[labels == 2].mean(0), atol=1e-5)


def test_cancelled_sae_resumes_to_the_same_weights(built_session_path: Path, tmp_path: Path) -> None:
    """Cancel mid-training, reopen, rerun: the result equals an uninterrupted run exactly."""
    path = tmp_path / "resume.h5"
    copy_session(built_session_path, path)
    reference = Session.open(built_session_path, read_only=True).read_arrays("sae/weights")
    token = CancelToken()

    def cancel_after_three_epochs(p: Progress) -> None:
        if p.stage == "sae" and p.done >= 3:
            token.cancel()

    with Session.open(path) as s:
        with pytest.raises(JobCancelled):
            run_stage(s, "sae", cancel_after_three_epochs, token)
        assert s.stages()["sae"].state == "partial"
        assert s.read_json("sae/checkpoint/meta")["epoch"] >= 2
    with Session.open(path) as s:  # a new process would see exactly this file
        run_stage(s, "sae")
        resumed = s.read_arrays("sae/weights")
        assert s.stages()["sae"].state == "done"
        assert s.stages()["rankings"].state == "stale"  # downstream of a rerun
    for name, value in reference.items():
        np.testing.assert_allclose(resumed[name], value, rtol=0, atol=1e-6, err_msg=name)


def test_activation_stream_resumes_after_cancel(built_session_path: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "acts.h5"
    copy_session(built_session_path, path)
    reference = Session.open(built_session_path, read_only=True).read_arrays("activations/train")
    monkeypatch.setattr(stage_activations, "COMMIT_INTERVAL_S", 0.0)  # commit every batch
    token = CancelToken()

    def cancel_midway(p: Progress) -> None:
        if p.stage == "activations" and p.done >= 40:
            token.cancel()

    with Session.open(path) as s:
        with pytest.raises(JobCancelled):
            pipeline.run_activations(s, cancel_midway, token, batch_size=16)
        rows = s.read_json("activations/progress")["train"]
        assert 0 < rows < 80 and s.stages()["activations"].state == "partial"
        pipeline.run_activations(s, batch_size=16)
        resumed = s.read_arrays("activations/train")
    np.testing.assert_allclose(resumed["a"], reference["a"], atol=1e-5)
    assert np.array_equal(resumed["labels"], reference["labels"])


def test_kill_9_during_pipeline_then_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real process killed with SIGKILL mid-SAE leaves a session that opens and resumes, with
    every array in an array file (weights, activations, checkpoints): none is left orphaned.
    (`test_fault_injection.py` kills at random moments of every stage: `make test-slow`.)"""
    from test_fault_injection import referenced_array_files

    from core.store import arrayfiles

    config = tiny_config("killed", sae_epochs=3000)
    config.sae.checkpoint_every = 50
    path = tmp_path / "killed.h5"
    Session.create(path, config).close()
    env = {**os.environ, "SALVE_ARRAY_FILE_MIN_BYTES": "0"}
    child = subprocess.Popen([sys.executable, "-m", "salve_tui.cli.main", "run", str(path)], cwd=REPO,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            time.sleep(0.3)
            with Session.open(path, read_only=True) as s:
                if s.stages()["sae"].state == "partial":
                    break
        else:
            pytest.fail("the SAE stage never checkpointed")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    with Session.open(path) as s:
        assert s.stages()["backbone"].state == "done"
        epoch = s.read_json("sae/checkpoint/meta")["epoch"]
        assert 0 < epoch < 3000
        s_config = s.config
    s_config.sae.epochs = epoch + 2  # finish quickly: resume only needs the remaining epochs
    monkeypatch.setattr(arrayfiles, "EXTERNAL_MIN_BYTES", 0)
    with Session.open(path) as s:
        with s.transaction() as tx:
            tx.write_json("config", s_config.to_dict())
        run_pipeline(s)
        assert s.stages()["rankings"].state == "done"
        assert s.read_array("sae/history/loss").shape == (epoch + 2,)
        with s.rows("activations/train/a") as ds:
            assert ds.is_virtual  # the killed run's arrays really went through array files
    files = {p.name for p in data_dir(path).iterdir()}
    assert {name.split("-")[0] for name in files} >= {"activations", "backbone", "sae", "rankings"}, files
    assert files == referenced_array_files(path)  # no orphan left by the kill, no temp file


def test_vit_pipeline(tmp_path: Path) -> None:
    config = tiny_config("vit", arch="vit_tiny", sae_epochs=2)
    with Session.create(tmp_path / "vit.h5", config) as s:
        run_pipeline(s)
        test = load_activations(s, "test")
        assert test["a"].shape == (40, 64)  # the [CLS] token width of vit_tiny
        assert s.read_array("rankings/class_means").shape == (10, 16)


def test_cli_info_json_and_list(built_session_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert salve(["info", str(built_session_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info["stages"]) >= {"data", "backbone", "activations", "sae", "rankings"}
    assert len(info["class_names"]) == 10
    assert 0 <= info["backbone"]["test_accuracy"] <= 1
    assert {"explained_variance", "l0", "dead"} <= set(info["sae"])
    # L1, CPU, d = 512 and h = 16: the compiled kernel ran, unless it is off (the variant suite)
    assert info["sae"]["engine"] == ("torch" if os.environ.get("SALVE_NATIVE") == "0" else "native")
    assert set(info["dominant_features"]) == set(info["class_names"])
    assert salve(["list", "--sessions-dir", str(built_session_path.parent), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "tiny" and rows[0]["stages"]["sae"] == "done"


def test_cli_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = salve(["new", "x", "--sessions-dir", str(tmp_path), "--data", "imagefolder",
                  "--data-path", str(tmp_path / "nowhere")])
    assert code == 0  # creation only records settings; the data stage checks the folder
    assert salve(["run", "x", "data", "--sessions-dir", str(tmp_path)]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert salve(["new", "bad", "--sessions-dir", str(tmp_path), "--image-size", "3"]) == 2
    assert "--image-size: must be ≥ 16" in capsys.readouterr().err
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    assert salve(["info", "junk", "--sessions-dir", str(tmp_path)]) == 2
    assert "not a readable HDF5 file" in capsys.readouterr().err
    assert salve(["info", "missing", "--sessions-dir", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert salve(["run", "x", "sae", "--sessions-dir", str(tmp_path)]) == 2
    assert "needs 'activations'" in capsys.readouterr().err


def _write_image_folder(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cats", "dogs"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    (root / "train" / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")


def test_image_folder_session_and_wrong_class_count(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Real-data path through the CLI: corrupt files are counted; an untrainable head is refused."""
    data = tmp_path / "folder"
    _write_image_folder(data)
    sessions = str(tmp_path / "sessions")
    assert salve(["new", "pets", "--sessions-dir", sessions, "--data", "imagefolder", "--data-path", str(data),
                  "--image-size", "32", "--epochs", "1"]) == 0
    assert salve(["run", "pets", "data", "--sessions-dir", sessions]) == 0
    capsys.readouterr()
    assert salve(["info", "pets", "--sessions-dir", sessions, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["class_names"] == ["cats", "dogs"]
    assert info["data"]["n_train"] == 6 and info["data"]["skipped_train"] == 1

    checkpoint = tmp_path / "ten_classes.pt"
    from core.discover.backbone import build_model

    torch.save(build_model("resnet18", 10).state_dict(), checkpoint)
    assert salve(["new", "frozen", "--sessions-dir", sessions, "--data", "imagefolder", "--data-path", str(data),
                  "--image-size", "32", "--weights", str(checkpoint), "--no-train"]) == 0
    assert salve(["run", "frozen", "--sessions-dir", sessions]) == 2
    err = capsys.readouterr().err
    assert "classify 10 classes but the dataset has 2" in err
    with Session.open(tmp_path / "sessions" / "frozen.h5", read_only=True) as s:
        assert s.stages()["data"].state == "done"  # work done before the refusal is kept
        backbone = s.stages()["backbone"]  # the refusal is kept, with its message, until rerun
        assert backbone.state == "failed" and "classify 10 classes" in backbone.message
