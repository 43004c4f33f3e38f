"""Figures: exact pixel sizes, hand-checked colour maths, safe names, cheap import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.workflow.figures import (
    colorize,
    overlay,
    safe_filename,
    save_alpha_crit_distributions,
    save_confusion_matrices,
    save_feature_class_matrix,
    save_heatmap_overlay,
    save_image_grid,
    save_prediction_distribution,
    save_suppression_curves,
    save_top_activating_grid,
    to_uint8_image,
    top_activating_indices,
)

RNG = np.random.default_rng(0)
CLASSES = ["disc", "ring", "tower", "star"]


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()  # decodes the whole file: a truncated PNG fails here
        return image.size


def test_colorize_anchor_colours() -> None:
    rgb = colorize(np.array([[0.0, 0.5], [1.0, np.nan]]))
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [0, 0, 128]  # dark blue
    assert rgb[0, 1].tolist() == [128, 255, 128]  # halfway between cyan and yellow
    assert rgb[1, 0].tolist() == [128, 0, 0]  # dark red
    assert rgb[1, 1].tolist() == [0, 0, 128]  # NaN treated as 0
    assert colorize(np.array([2.0, -1.0])).tolist() == [[128, 0, 0], [0, 0, 128]]


def test_overlay_2x2_by_hand() -> None:
    image = np.array([[[0, 0, 0], [255, 255, 255]], [[100, 50, 0], [10, 20, 30]]], dtype=np.uint8)
    heat = np.array([[1.0, 0.0], [0.5, 0.0]])
    out = overlay(image, heat, alpha=0.25)
    # 0.75·image + 0.25·jet(map), rounded.
    assert out[0, 0].tolist() == [32, 0, 0]  # 0.25·(128, 0, 0)
    assert out[0, 1].tolist() == [191, 191, 223]  # 0.75·255 + 0.25·(0, 0, 128)
    assert out[1, 0].tolist() == [107, 101, 32]  # 0.75·(100, 50, 0) + 0.25·(128, 255, 128)
    assert out[1, 1].tolist() == [8, 15, 54]  # 0.75·(10, 20, 30) + 0.25·(0, 0, 128)
    assert np.array_equal(overlay(image, heat, alpha=0.0), image)
    with pytest.raises(ValueError, match="does not match"):
        overlay(image, np.zeros((3, 3)))


def test_to_uint8_image_layouts() -> None:
    chw = np.zeros((3, 2, 2))
    chw[0] = 1.0
    hwc = to_uint8_image(chw)
    assert hwc.shape == (2, 2, 3) and hwc[..., 0].tolist() == [[255, 255], [255, 255]]
    assert hwc[..., 1:].max() == 0


def test_safe_filename() -> None:
    assert safe_filename("gradfam", "sample", 12, "feature 3", ext="png") == (
        "gradfam_sample_12_feature-3.png"
    )
    assert safe_filename("suppress α=0.5", "class: church/tower") == (
        "suppress-alpha-0.5_class-church-tower"
    )
    assert safe_filename("../../etc", "") == "etc"
    assert safe_filename("") == "figure"
    assert len(safe_filename("x" * 500, ext=".png")) == 154


def test_top_activating_indices_both_signs() -> None:
    latents = np.array([[0.0, 3.0], [0.0, -5.0], [0.0, 1.0], [0.0, 7.0], [0.0, -1.0]])
    highest, lowest = top_activating_indices(latents, feature=1, k=2)
    assert highest.tolist() == [3, 0]
    assert lowest.tolist() == [1, 4]


def test_every_figure_is_a_png_of_the_expected_size(tmp_path: Path) -> None:
    image = RNG.random((32, 32, 3))
    heat = RNG.random((32, 32))
    alphas = np.linspace(0, 4, 9)
    accuracy = np.clip(1 - alphas[:, None] * RNG.random((1, 4)), 0, 1)
    fractions = RNG.random((9, 4))
    fractions /= fractions.sum(axis=1, keepdims=True)
    per_class = [RNG.random(20) * 3 for _ in CLASSES]
    confusion = RNG.integers(0, 20, (4, 4))

    written = {
        save_heatmap_overlay(image, heat, tmp_path / "a" / "overlay.png", title="f3"): (480, 400),
        save_heatmap_overlay(image, heat, tmp_path / "big.png", figsize=(3, 2), dpi=50): (150, 100),
        save_image_grid([image] * 5, list("abcde"), tmp_path / "grid.png", ncols=3): (390, 290),
        save_top_activating_grid(
            [image] * 3, ["+"] * 3, [image] * 2, ["-"] * 2, tmp_path / "top.png"
        ): (390, 320),
        save_suppression_curves(
            alphas,
            accuracy,
            CLASSES,
            tmp_path / "curve.png",
            target=2,
            std=accuracy * 0.1,
            marker=1.5,
            marker_label="α50",
        ): (640, 400),
        save_prediction_distribution(
            alphas, fractions, CLASSES, tmp_path / "dist.png", target=1, marker=2.0
        ): (640, 400),
        save_feature_class_matrix(
            RNG.normal(size=(4, 16)), CLASSES, tmp_path / "matrix.png", dominant=[0, 5, 9, 15]
        ): (800, 400),
        save_alpha_crit_distributions(
            per_class, per_class[::-1], CLASSES, tmp_path / "box.png", alpha50=[1, 2, 1.5, 0.5]
        ): (720, 400),
        save_alpha_crit_distributions(
            per_class, [np.array([])] * 4, CLASSES, tmp_path / "hist.png", kind="hist"
        ): (720, 400),
        save_confusion_matrices(
            {"before": confusion, "after": confusion.T}, CLASSES, tmp_path / "cm.png"
        ): (800, 400),
    }
    for path, size in written.items():
        assert path.exists(), path
        assert png_size(path) == size, path


def test_shape_mismatches_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="class name"):
        save_suppression_curves(np.arange(3), np.zeros((3, 2)), CLASSES, tmp_path / "x.png")
    with pytest.raises(ValueError, match="expected \\(4, 4\\)"):
        save_confusion_matrices({"m": np.zeros((3, 3))}, CLASSES, tmp_path / "x.png")
    with pytest.raises(ValueError, match="does not match"):
        save_heatmap_overlay(np.zeros((8, 8, 3)), np.zeros((4, 4)), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_import_does_not_load_matplotlib_or_torch() -> None:
    code = "import sys, core.workflow.figures; print('matplotlib' in sys.modules, 'torch' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.split() == ["False", "False"]
