"""Deletion / insertion faithfulness (core.validate.faithfulness): a hand-worked linear score,
and the session command on a real tiny session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.store.session import copy_session
from core.validate.faithfulness import auc, perturbed, saliency_order, sample_curves
from salve_tui.cli.main import main


def _region_case():
    image = torch.zeros(3, 4, 4)
    image[:, 0, :] = 1.0  # the region: the top row (4 of 16 pixels)
    heat = torch.zeros(4, 4)
    heat[0, :] = 1.0

    def score(x: torch.Tensor) -> torch.Tensor:  # linear in the region's pixels
        return x[:, :, 0, :].sum(dim=(1, 2))

    return image, heat, score


def test_hand_worked_deletion_and_insertion() -> None:
    image, heat, score = _region_case()
    # baseline = per-channel mean = 4/16 = .25; intact score 3·4·1 = 12.
    # Deletion in map order, 4 steps (0, 4, 8, 12, 16 pixels): the region goes first →
    # 3·4·.25 = 3 → normalised [1, .25, .25, .25, .25]; AUC = (.625 + 3·.25)/4 = .34375.
    c = sample_curves(score, image, heat, steps=4, n_random=8)
    torch.testing.assert_close(c.deletion, torch.tensor([1, .25, .25, .25, .25], dtype=torch.float64))
    torch.testing.assert_close(c.insertion, torch.tensor([.25, 1, 1, 1, 1], dtype=torch.float64))
    aucs = c.aucs()
    assert aucs["deletion"] == pytest.approx(0.34375)
    assert aucs["insertion"] == pytest.approx(0.90625)
    # A random order removes the region gradually: deletion AUC above, insertion below the map's.
    assert aucs["deletion_random"] > aucs["deletion"] and aucs["insertion_random"] < aucs["insertion"]
    assert c.deletion_random[0] == 1 and c.deletion_random[-1] == pytest.approx(0.25)


def test_perturbed_endpoints_and_order() -> None:
    image, heat, _ = _region_case()
    baseline = torch.full_like(image, 0.5)
    order = saliency_order(heat)
    assert set(order[:4].tolist()) == {0, 1, 2, 3}
    frames = perturbed(image, baseline, order, 4, "deletion")
    assert torch.equal(frames[0], image) and torch.equal(frames[-1], baseline)
    frames = perturbed(image, baseline, order, 4, "insertion")
    assert torch.equal(frames[0], baseline) and torch.equal(frames[-1], image)
    assert auc(torch.ones(5)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="deletion"):
        perturbed(image, baseline, order, 4, "erase")


def test_faithfulness_command_json(tmp_path: Path, built_session_path: Path, capsys) -> None:
    path = tmp_path / "tiny.h5"
    copy_session(built_session_path, path)
    rc = main(["faithfulness", str(path), "--feature", "1", "--samples", "2", "--steps", "4",
               "--random-orders", "1", "--json"])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    (entry,) = payload["features"]
    assert entry["feature"] == 1 and len(entry["samples"]) == 2
    for method in ("gradfam", "gradcam"):
        assert entry[method]["deletion_below_random"] == (
            entry[method]["deletion"] < entry[method]["deletion_random"])
    assert Path(payload["figure"]).exists()
    from PIL import Image

    with Image.open(payload["figure"]) as figure:  # the caption carries the quality warnings
        assert "warnings: backbone_near_chance" in figure.info["Description"]
    assert main(["faithfulness", str(path), "--steps", "1"]) == 2
