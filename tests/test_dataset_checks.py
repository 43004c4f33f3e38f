"""Bad input (issue 19): a class with fewer than 2 images, or a class absent from the test
split, is refused with one clear message before any training, and no data is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import DataConfig
from core.discover.data import check_class_counts, load_dataset
from core.store.session import Session
from salve_tui.cli.main import main


def _tree(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    rng = np.random.default_rng(0)
    for split, classes in layout.items():
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, size=(20, 20, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_counts_checked_per_class() -> None:
    names = ["a", "b", "c"]
    check_class_counts(names, np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 2]), Path("tr"), Path("te"))
    with pytest.raises(ValueError) as err:
        check_class_counts(names, np.array([0, 0, 1, 2, 2]), np.array([0, 1]), Path("tr"), Path("te"))
    text = str(err.value)
    assert "fewer than 2 readable images in tr: b (1)" in text and "no readable image in te: c" in text
    assert "a (" not in text


@pytest.mark.parametrize(("layout", "expected"), [
    ({"train": {"a": 3, "b": 1}, "val": {"a": 1, "b": 1}}, "fewer than 2 readable images"),
    ({"train": {"a": 3, "b": 3}, "val": {"a": 1, "b": 0}}, "no readable image in"),
])
def test_folder_refused_before_training(tmp_path: Path, capsys, layout: dict, expected: str) -> None:
    root = _tree(tmp_path / "images", layout)
    with pytest.raises(ValueError, match=expected):
        load_dataset(DataConfig(kind="imagefolder", path=str(root), image_size=16))
    sessions = tmp_path / "sessions"
    assert main(["new", "bad", "--sessions-dir", str(sessions), "--data", "imagefolder",
                 "--data-path", str(root), "--image-size", "16"]) == 0
    capsys.readouterr()
    assert main(["run", "bad", "--sessions-dir", str(sessions)]) != 0
    err = capsys.readouterr().err
    assert expected in err and "b" in err and "Traceback" not in err
    with Session.open(sessions / "bad.h5", read_only=True) as session:
        stages = session.stages()
        assert stages["data"].state == "failed" and expected in stages["data"].message
        assert not session.has("class_names") and not session.has("data/train/labels")
        assert all(stages.get(s) is None or stages[s].state == "pending"
                   for s in ("backbone", "activations", "sae", "rankings"))
    assert not (sessions / "bad.checkpoints").exists()
