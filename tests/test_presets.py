"""`--preset paper` per architecture and dataset kind, and the augmentation setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.config import BackboneConfig, augment_mode
from core.discover.backbone import augment_batch
from salve_tui.cli.main import main


@pytest.mark.parametrize(("arch", "d", "epochs", "sae_batch"),
                         [("resnet18", 512, 10, 32), ("vit_tiny", None, 5, 16)])
@pytest.mark.parametrize("data", ["shapes", "imagefolder"])
def test_paper_preset(tmp_path: Path, capsys, arch: str, d: int | None, epochs: int,
                      sae_batch: int, data: str) -> None:
    from core.discover.backbone import head_input_dim

    d = d or head_input_dim(arch, 64)
    args = ["new", f"p-{arch}-{data}", "--sessions-dir", str(tmp_path), "--preset", "paper",
            "--arch", arch, "--data", data, "--image-size", "64", "--json"]
    if data == "imagefolder":
        (tmp_path / "images").mkdir()
        args += ["--data-path", str(tmp_path / "images")]
    assert main(args) == 0
    cfg = json.loads(capsys.readouterr().out)["config"]
    b, s = cfg["backbone"], cfg["sae"]
    assert (b["epochs"], b["batch_size"], b["lr"], b["schedule"]) == (epochs, 16, 1e-4, "constant")
    assert (s["epochs"], s["batch_size"], s["lr_step_epochs"], s["lr_gamma"]) == (1000, sae_batch, 200, 0.8)
    assert s["hidden"] == 2 * d  # overcomplete by default


def test_augment_setting(tmp_path: Path, capsys) -> None:
    assert main(["new", "digits", "--sessions-dir", str(tmp_path), "--augment", "shift", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["backbone"]["augment"] == "shift"
    assert augment_mode(True) == "flip+shift" and augment_mode(False) == "none"
    assert "augment must be one of" in " ".join(BackboneConfig(augment="rotate").validate())
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    assert torch.equal(augment_batch(x, torch.Generator().manual_seed(0), mode="none"), x)
    flipped = augment_batch(x, torch.Generator().manual_seed(0), mode="flip")
    for i in range(2):  # each image is itself or its mirror, never shifted
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
    # flip+shift consumes the generator as before (stored sessions train the same way)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    both = augment_batch(x, g1, mode="flip+shift")
    flip = torch.rand(2, generator=g2) < 0.5
    ref = torch.where(flip[:, None, None, None], x.flip(-1), x)
    dx, dy = (int(v) for v in torch.randint(-4, 5, (2,), generator=g2))
    assert torch.equal(both, torch.roll(ref, shifts=(dy, dx), dims=(-2, -1)))


@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny"])
def test_real_data_default_sae_is_small_and_follows_the_classes(tmp_path: Path, capsys, arch: str) -> None:
    """Without a preset, real data gets the small SAE chosen by measured outcome (issue 19):
    h = max(64, 4·C) rounded up to 64, whatever the architecture's d; normalised; the
    from-scratch backbone recipe. A forced width is kept and no width gate fires."""
    from core.config import real_data_sae_hidden
    from core.workflow.quality import check_sae

    def folder(n_classes: int) -> Path:
        root = tmp_path / f"images{n_classes}"
        for c in range(n_classes):
            (root / "train" / f"c{c}").mkdir(parents=True, exist_ok=True)
        return root

    base = ["--sessions-dir", str(tmp_path), "--arch", arch, "--data", "imagefolder", "--image-size", "64", "--json"]
    for n_classes, hidden in ((10, 64), (16, 64), (17, 128), (100, 448)):
        assert real_data_sae_hidden(n_classes) == hidden
        assert main(["new", f"real-{arch}-{n_classes}", *base, "--data-path", str(folder(n_classes))]) == 0
        config = json.loads(capsys.readouterr().out)["config"]
        sae = config["sae"]
        assert sae["hidden"] == hidden and sae["normalize"] is True and sae["l1_coeff"] == pytest.approx(1e-2)
        assert sae["epochs"] == 200 and sae["lr_step_epochs"] == 40
        assert config["backbone"]["batch_size"] == 64 and config["backbone"]["schedule"] == "onecycle"
    assert real_data_sae_hidden(None) == 64

    assert main(["new", f"forced-{arch}", *base, "--data-path", str(folder(10)), "--sae-hidden", "64",
                 "--l1", "0.05"]) == 0
    forced = json.loads(capsys.readouterr().out)["config"]["sae"]
    assert forced["hidden"] == 64 and forced["l1_coeff"] == pytest.approx(0.05)
    assert check_sae(forced["hidden"], None, None) == []


def test_fine_tuning_real_data_keeps_the_paper_backbone_recipe(tmp_path: Path, capsys) -> None:
    from core.config import real_data_config

    tuned = real_data_config("x", 10, from_scratch=False).backbone
    assert (tuned.batch_size, tuned.lr, tuned.epochs) == (16, 1e-4, 10)
    scratch = real_data_config("x", 10).backbone
    assert (scratch.batch_size, scratch.lr, scratch.epochs) == (64, 2e-3, 8)


def test_paper_sae_hidden_is_a_multiple_of_d() -> None:
    from core.config import default_sae_hidden

    assert default_sae_hidden(64) == 128 and default_sae_hidden(512, 4) == 2048  # paper preset: 2·d
    with pytest.raises(ValueError, match="multiple ≥ 2"):
        default_sae_hidden(64, 1)
