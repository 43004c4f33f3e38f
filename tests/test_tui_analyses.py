"""The feature card and the analysis screens of issue 10, driven with Pilot on the tiny real
session; what they show is checked against the core called independently in the test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_tui_helpers import cells_after, line_with, screen_text, wait_for
from textual.widgets import ContentSwitcher, DataTable, Input, Static

from core.control.alpha_crit import class_alpha_crit
from core.control.methods.base import EditRequest
from core.store.session import Session, copy_session
from core.workflow.edits import preview_edit
from core.workflow.feature_card import feature_card, split_latents
from core.workflow.ground_truth import run_groundtruth
from core.workflow.inputs import load_inputs
from core.workflow.pipeline import load_activations, load_classifier_head, load_sae_arrays
from core.workflow.saliency_maps import saliency_map
from core.workflow.sweeps import compute_sweep
from salve_tui.app.app import SalveApp
from salve_tui.app.screens.analysis_alpha_explorer import AlphaExplorerScreen
from salve_tui.app.screens.analysis_confusion import ConfusionScreen
from salve_tui.app.screens.analysis_edit import EditPreviewScreen
from salve_tui.app.screens.analysis_feature import (
    MIN_PIXELS,
    FeatureDetailScreen,
    Thumbnail,
    card_layout,
)
from salve_tui.app.screens.analysis_gallery import GalleryScreen
from salve_tui.app.screens.analysis_ground_truth import GroundTruthScreen
from salve_tui.app.screens.analysis_methods import MethodsScreen
from salve_tui.app.screens.analysis_saliency import SaliencyScreen
from salve_tui.app.screens.dashboard import DashboardScreen
from salve_tui.app.screens.number_input import parse_number
from salve_tui.app.widgets.histogram import histogram_text, stacked_cells
from salve_tui.app.widgets.image import ImageView

SIZE = (80, 24)


@pytest.fixture
def tiny_folder(tmp_path: Path, built_session_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SALVE_TUI_IMAGES", "halfblock")
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "sessions"
    folder.mkdir()
    copy_session(built_session_path, folder / "tiny.h5")
    return folder


def tiny_app(folder: Path) -> SalveApp:
    return SalveApp(sessions_folder=folder, start_session="tiny")


async def open_view(pilot, key: str, screen_type: type) -> object:  # noqa: ANN001
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen), what="dashboard")
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, screen_type), what=screen_type.__name__)
    return pilot.app.screen


def text_of(screen, selector: str) -> str:  # noqa: ANN001
    return str(screen.query_one(selector, Static).render())


# --------------------------------------------------------------------------- pure helpers


def test_card_layout_keeps_thumbnails_recognisable_and_grows() -> None:
    pixels, rows, per_row = card_layout(80, 24)
    assert pixels >= MIN_PIXELS and rows == 1 and per_row == 4  # 4 × 17 columns fit in 78
    big, big_rows, big_per_row = card_layout(200, 60)
    assert big > pixels and big_rows == 3 and big_per_row == 8
    assert 3 * (big // 2 + 2) + 3 + 11 <= 60  # three rows + header/info/footer + panels fit


def test_stacked_cells_colour_each_bar_by_class_share() -> None:
    counts = np.array([[2, 0, 1], [2, 1, 0]])  # bins: 4 (half/half), 1 (class 1), 1 (class 0)
    grid = stacked_cells(counts, rows=4, top=4)
    assert [row[0] for row in grid] == [1, 1, 0, 0]  # class 0 at the bottom, class 1 above
    assert [row[1] for row in grid] == [None, None, None, 1]
    assert [row[2] for row in grid] == [None, None, None, 0]
    text = histogram_text(counts, np.array([-1.0, 0.0, 1.0, 2.0]), width=4, height=5, marker=1.5)
    lines = text.plain.splitlines()
    assert lines[0] == "█  " and lines[3] == "███"
    assert lines[4] == "─┼▲"  # zero in bin 1, the marker in bin 2


def test_parse_number_refuses_what_the_prompt_forbids() -> None:
    assert parse_number(" 0.25 ") == 0.25 and parse_number("−3", None) == -3.0
    with pytest.raises(ValueError, match="not a number"):
        parse_number("abc")
    with pytest.raises(ValueError, match="≥ 0"):
        parse_number("-1", 0.0)
    with pytest.raises(ValueError, match="finite"):
        parse_number("inf")


# --------------------------------------------------------------------------- feature card


async def test_feature_card_matches_core_and_is_keyboard_driven(tiny_folder: Path) -> None:
    path = tiny_folder / "tiny.h5"
    with Session.open(path, read_only=True) as ro:
        acts = load_activations(ro, "test")
        W, _ = load_classifier_head(ro)
        D = load_sae_arrays(ro)["decoder.weight"]
        M = ro.read_array("rankings/class_means")
        dominant = ro.read_array("rankings/dominant")
        names = ro.read_json("class_names")
        u = split_latents(ro)
    labels = acts["labels"]
    expected = feature_card(u, labels, W, D, 2, M)
    app = tiny_app(tiny_folder)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        app.push_screen(FeatureDetailScreen(2))
        await pilot.pause()
        card_screen = app.screen
        await wait_for(pilot, lambda: card_screen.card is not None, what="card")
        card = card_screen.card
        np.testing.assert_array_equal(card.histogram, expected.histogram)
        np.testing.assert_allclose(card.direct_effect, W.astype(float) @ D[:, 2].astype(float), rtol=1e-6)
        assert card.nearest.tolist() == expected.nearest.tolist()
        assert card.quantile_samples.tolist() == expected.quantile_samples.tolist()
        # Thumbnails: at least 16×16 px at 80×24 (half-blocks: 2 px per cell vertically)
        await pilot.pause()
        thumb = card_screen.query_one("#row-top").query(Thumbnail).first()
        view = thumb.query_one(ImageView)
        assert view.size.width >= 16 and 2 * view.size.height >= 16
        # the drawn histogram has one bin per column, counted by the core's class_histogram
        from core.workflow.feature_card import class_histogram
        from salve_tui.app.widgets.histogram import ClassHistogram

        drawn = card_screen.query_one(ClassHistogram)
        bins = min(drawn.MAX_BINS, drawn.content_size.width)
        assert drawn.counts.shape == (len(names), bins) and drawn.counts.sum() == len(labels)
        np.testing.assert_array_equal(drawn.counts, class_histogram(u[:, 2], labels, len(names), bins)[1])
        # the classes panel lists μ and W·D of every class
        await pilot.press("2")
        assert card_screen.query_one(ContentSwitcher).current == "panel-classes"
        classes = text_of(card_screen, "#panel-classes-text")
        lines = classes.splitlines()
        assert len(lines) == len(names)
        for c, line in enumerate(lines):
            owner = "◆" if int(dominant[c]) == 2 else " "
            assert line.startswith(f"■{owner}{names[c][:8]}")
            assert line.endswith(f"{M[c, 2]:+6.2f} {expected.direct_effect[c]:+6.2f}")
        await pilot.press("3")
        nearest = text_of(card_screen, "#panel-nearest-text")
        assert f"{int(expected.nearest[0]):>7} {expected.nearest_cosine[0]:+.3f}" in nearest
        # ↓ selects the quantile row, then the lowest samples (it does not scroll the page)
        await pilot.press("down")
        assert card_screen.selection == (1, 0)
        assert card_screen.selected_sample == int(expected.quantile_samples[0])
        await pilot.press("down", "right")
        assert card_screen.selected_sample == int(expected.bottom[1])
        await wait_for(pilot, lambda: card_screen.preview is not None
                       and card_screen.preview.sample == int(expected.bottom[1]), what="Grad-FAM")
        assert card_screen.preview.latent == pytest.approx(u[int(expected.bottom[1]), 2], abs=1e-4)
        # act-max progress keeps naming the feature it runs for after > steps the card
        await pilot.press("a")
        await wait_for(pilot, lambda: app.jobs.busy, what="act-max job")
        await pilot.press("greater_than_sign")
        assert card_screen.feature == 3
        await wait_for(pilot, lambda: "%" in text_of(card_screen, "#feature-panel-title"), what="progress")
        assert "act-max feature 2:" in text_of(card_screen, "#feature-panel-title")
        await pilot.press("c")
        await wait_for(pilot, lambda: not app.jobs.busy, what="cancel")
        await wait_for(pilot, lambda: card_screen.card is not None and card_screen.card.feature == 3,
                       what="card of feature 3")


# --------------------------------------------------------------------------- analyses


async def test_ground_truth_screen_shows_the_stored_scores(tiny_folder: Path) -> None:
    with Session.open(tiny_folder / "tiny.h5") as session:
        result = run_groundtruth(session, max_samples=20)
    app = tiny_app(tiny_folder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_view(pilot, "g", GroundTruthScreen)
        await wait_for(pilot, lambda: screen.result is not None, what="ground truth")
        body = text_of(screen, "#truth-body") + text_of(screen, "#truth-concepts")
        fam = result["pointing_game"]["grad_fam"]
        assert f"{100 * fam['hit_rate']:.1f}%" in body and f"{100 * fam['chance_rate']:.1f}%" in body
        for name, row in result["concepts"].items():
            assert any(line.split()[:2] == [name[:13], str(row["latent"])] for line in body.splitlines())
        assert f"best latent {result['shared_part']['best_latent']['latent']}" in body


async def test_saliency_screen_class_and_layer_choice(tiny_folder: Path) -> None:
    app = tiny_app(tiny_folder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_view(pilot, "h", SaliencyScreen)
        await wait_for(pilot, lambda: screen.result is not None, what="first map")
        label = int(screen.labels[0])
        assert screen.result.method == "Grad-CAM" and screen.result.target == label
        await pilot.press("right_square_bracket")
        target = (label + 1) % len(screen.class_names)
        await wait_for(pilot, lambda: screen.result.target == target, what="next class")
        default_layer = screen.result.layer
        await pilot.press("l")
        await wait_for(pilot, lambda: screen.result.layer != default_layer, what="next layer")
        layer = screen.result.layer
        assert layer == screen.map_layers[(screen.map_layers.index(default_layer) + 1) % len(screen.map_layers)]
        with Session.open(tiny_folder / "tiny.h5", read_only=True) as ro:
            reference = saliency_map(ro, 0, class_=target, layer=layer)
        np.testing.assert_allclose(screen.result.heat, reference.heat, atol=1e-5)
        await pilot.press("g")  # Grad-FAM of the class's dominant feature at the same layer
        await wait_for(pilot, lambda: screen.result.method == "Grad-FAM", what="Grad-FAM")
        assert screen.result.target == int(screen.dominant[target]) and screen.result.layer == layer


async def test_alpha_explorer_any_feature_and_enhancement(tiny_folder: Path) -> None:
    path = tiny_folder / "tiny.h5"
    with Session.open(path, read_only=True) as ro:
        x = load_inputs(ro)

    def reference(c: int, k: int, mode: str):  # noqa: ANN202
        return class_alpha_crit(x.A, x.labels, x.W, x.b, x.D, c, k, mode, "linear")

    app = tiny_app(tiny_folder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_view(pilot, "j", AlphaExplorerScreen)
        await wait_for(pilot, lambda: screen.result is not None, what="α_crit")
        k0 = int(x.dominant[0])
        assert (screen.result.target_class, screen.result.feature) == (0, k0)
        ref = reference(0, k0, "suppress")
        torch.testing.assert_close(screen.result.analytic, ref.analytic, equal_nan=True)
        await pilot.press("greater_than_sign", "s")
        k1 = (k0 + 1) % x.num_features
        await wait_for(pilot, lambda: (screen.result.feature, screen.result.mode) == (k1, "enhance"),
                       what="cross-class enhancement")
        ref = reference(0, k1, "enhance")
        torch.testing.assert_close(screen.result.numerical, ref.numerical, equal_nan=True)
        summary = text_of(screen, "#explore-summary")
        assert "critical enhancement threshold" in summary
        assert f"qualifying analytic {int(torch.isfinite(ref.analytic).sum())}" in summary


async def test_methods_screen_plots_the_three_curves_of_one_target(tiny_folder: Path) -> None:
    with Session.open(tiny_folder / "tiny.h5", read_only=True) as ro:
        x = load_inputs(ro)
    app = tiny_app(tiny_folder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_view(pilot, "o", MethodsScreen)
        await wait_for(pilot, lambda: bool(screen.curves), what="sweeps")
        await pilot.press("down")
        await wait_for(pilot, lambda: screen.curves["salve"].target_class == 1, what="class 1")
        k = int(x.dominant[1])
        for method in ("salve", "rome", "steer"):
            ref = compute_sweep(x, method, EditRequest(1, None if method == "rome" else [k]))
            torch.testing.assert_close(screen.curves[method].per_class_accuracy, ref.per_class_accuracy,
                                       equal_nan=True)
        table = text_of(screen, "#methods-table")
        assert all(title in table for title in ("SALVE", "ROME", "steering"))


async def test_typed_strength_and_confusion_before_after(tiny_folder: Path) -> None:
    path = tiny_folder / "tiny.h5"
    app = tiny_app(tiny_folder)
    async with app.run_test(size=SIZE) as pilot:
        edit = await open_view(pilot, "e", EditPreviewScreen)
        await wait_for(pilot, lambda: edit.effect is not None, what="edit preview")
        await pilot.press("equals_sign")
        await wait_for(pilot, lambda: len(app.screen.query(Input)) == 1, what="strength input")
        app.screen.query_one(Input).value = ""
        await pilot.press(*"-2", "enter")  # refused: SALVE strengths are ≥ 0
        assert "≥ 0" in str(app.screen.query_one("#number-error", Static).render())
        app.screen.query_one(Input).value = ""
        await pilot.press(*"2.5", "enter")
        await wait_for(pilot, lambda: app.screen is edit, what="back to the edit")
        assert edit.alpha == 2.5 and edit.spec.alpha == 2.5
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfusionScreen), what="confusion")
        confusion = app.screen
        await wait_for(pilot, lambda: confusion.effect is not None, what="confusion effect")
        with Session.open(path, read_only=True) as ro:
            ref = preview_edit(ro, edit.spec)
        torch.testing.assert_close(confusion.effect.confusion_after, ref.confusion_after)
        torch.testing.assert_close(confusion.effect.confusion_before, ref.confusion_before)
        body = text_of(confusion, "#confusion-body")
        assert body.startswith("before") and "after the edit" in body.splitlines()[0]
        c = edit.target_class
        before = ref.confusion_before.numpy()[c]
        after = ref.confusion_after.numpy()[c]
        assert f"correct {int(before[c])} → {int(after[c])} of {int(before.sum())}" in body


async def test_gallery_lists_and_draws_exported_pngs(tiny_folder: Path) -> None:
    exports = tiny_folder / "tiny.exports" / "figures"
    exports.mkdir(parents=True)
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[:, :15] = (255, 0, 0)
    long_name = "gradfam_sample-11_feature-12_layer4.png"  # the caption did not fit (cut with …)
    Image.fromarray(pixels).save(exports / "a.png")
    Image.fromarray(pixels).save(exports / long_name)
    os.utime(exports / "a.png", (2e9, 2e9))  # newest first: a.png is shown
    app = tiny_app(tiny_folder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_view(pilot, "p", GalleryScreen)
        await wait_for(pilot, lambda: screen.shown is not None, what="preview")
        assert screen.files == [exports / "a.png", exports / long_name]
        np.testing.assert_array_equal(screen.query_one("#gallery-image", ImageView).image, pixels)
        assert "a.png · 30×20 px" in text_of(screen, "#gallery-caption")
        await pilot.press("down")
        await wait_for(pilot, lambda: screen.shown == exports / long_name, what="second preview")
        await pilot.pause()
        caption = screen.query_one("#gallery-caption", Static)
        assert text_of(screen, "#gallery-caption").endswith(" B") and caption.size.height == 2


async def test_gallery_empty_folder_message_wraps_at_80_columns(tmp_path: Path, synth60: Path) -> None:
    """Opened by absolute path, the session's export folder is long: the "no PNG" line wraps
    onto a second line instead of losing its end (what to press) to "…"."""
    app = SalveApp(sessions_folder=(tmp_path / "sessions").resolve(), start_session="synth")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_view(pilot, "p", GalleryScreen)
        info = screen.query_one("#gallery-info", Static)
        await wait_for(pilot, lambda: "no PNG" in text_of(screen, "#gallery-info"), what="listing")
        assert text_of(screen, "#gallery-info").endswith("export figures (x) or heatmaps first")
        assert len(text_of(screen, "#gallery-info")) > 78 and info.size.height >= 2


async def test_seed_robustness_job_draws_mean_and_std(tiny_folder: Path) -> None:
    from core.workflow.robustness import run_seed_robustness
    from salve_tui.app.screens.analysis_robustness import RobustnessScreen, curve_bands

    with Session.open(tiny_folder / "tiny.h5", read_only=True) as ro:
        expected = {r.target_class: r for r in run_seed_robustness(ro, k=2, record=False)}
    app = tiny_app(tiny_folder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_view(pilot, "n", RobustnessScreen)
        await wait_for(pilot, lambda: "no seed-robustness" in text_of(screen, "#robust-info"), what="empty")
        await pilot.press("minus", "r")  # K = 2
        await wait_for(pilot, lambda: bool(screen.curves) and not app.jobs.busy, what="robustness job")
        assert sorted(screen.curves) == sorted(expected)
        for c, ref in expected.items():
            np.testing.assert_allclose(screen.curves[c]["accuracy_mean"], ref.accuracy_mean.numpy(), atol=1e-9)
            np.testing.assert_allclose(screen.curves[c]["accuracy_std"], ref.accuracy_std.numpy(), atol=1e-9)
        bands = curve_bands(screen.curves[screen.target], screen.target)
        others = [j for j in range(len(screen.class_names)) if j != screen.target]
        mean = expected[screen.target].accuracy_mean.numpy()
        np.testing.assert_allclose(bands["others_mean"], np.nanmean(mean[others], axis=0), atol=1e-9)
        assert "2 SAE seeds" in text_of(screen, "#robust-info")


# --------------------------------------------------------------------------- snapshots (80×24)

GROUND_TRUTH = {
    "layer": "layer3", "n_images": 60, "n_scored": 60, "split": "test",
    "pointing_game": {
        "grad_fam": {"hit_rate": 0.8, "chance_rate": 0.2, "ratio_to_chance": 4.0, "energy_inside": 0.5,
                     "mask_area_share": 0.15, "method": "Grad-FAM (class-dominant feature)"},
        "grad_cam": {"hit_rate": 0.6, "chance_rate": 0.2, "ratio_to_chance": 3.0, "energy_inside": 0.4,
                     "mask_area_share": 0.15, "method": "Grad-CAM (true class)"},
    },
    "concepts": {"circle": {"latent": 1, "auroc": 0.97, "sign": 1, "strength": 0.97},
                 "tower": {"latent": 9, "auroc": 0.12, "sign": -1, "strength": 0.88}},
    "classes": {"circle": {"dominant_feature": 1, "n_images": 6, "dominant_auroc_for_shape": 0.97,
                           "grad_fam": {"hit_rate": 0.83, "energy_inside": 0.52},
                           "grad_cam": {"hit_rate": 0.5, "energy_inside": 0.31}}},
    "shared_part": {"concept": "tower", "classes": ["square", "star"],
                    "best_latent": {"latent": 9, "sign": -1, "auroc_overall": 0.12,
                                    "auroc_per_class": {"square": 0.9, "star": 0.85},
                                    "tracks_both": True, "threshold": 0.75}},
}


def test_ground_truth_columns_never_run_together() -> None:
    """The widest values (latent 120 with AUROC 1.33e-04 printed as ``0.000133``; a class AUROC
    of ``0.00144``) keep a space from their neighbours: every row splits into its cells."""
    from salve_tui.app.screens.analysis_ground_truth import groundtruth_text

    result = json.loads(json.dumps(GROUND_TRUTH))
    result["concepts"]["arrow"] = {"latent": 120, "auroc": 0.000133, "sign": -1, "strength": 0.999867}
    result["classes"]["circle"]["dominant_auroc_for_shape"] = 0.00144
    result["classes"]["circle"]["dominant_feature"] = 1234
    lines = groundtruth_text(result).plain.splitlines()
    assert next(line for line in lines if line.startswith("arrow")).split() == ["arrow", "120", "0.000133", "1"]
    circle = next(line for line in lines if line.startswith("circle") and "%" in line)
    assert circle.split() == ["circle", "1234", "0.00144", "83.0%", "50.0%", "52.0%", "31.0%"]


@pytest.fixture
def synth60(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The synthetic session of the matrix snapshots, with 60 Shapes test images for thumbnails."""
    from test_tui_analysis import make_synthetic_session
    from test_tui_helpers import tiny_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SALVE_TUI_IMAGES", "halfblock")
    folder = Path("sessions")
    folder.mkdir()
    make_synthetic_session(folder, config=tiny_config("synth", n_test=60))
    return folder


def class_means_of(folder: Path) -> np.ndarray:
    with Session.open(folder / "synth.h5", read_only=True) as ro:
        return np.asarray(ro.read_array("rankings/class_means"))


def save_handmade_robustness(folder: Path) -> None:
    """Stored seed-robustness curves written by hand (logistic in α), not trained: a snapshot of
    them shows the same numbers on every CPU."""
    from core.control.robustness import RobustnessResult
    from core.workflow.robustness import save_robustness

    alphas = torch.linspace(0, 8, 17, dtype=torch.float64)
    results = []
    for c in range(3):
        target = 1 / (1 + torch.exp(2 * (alphas - 3 - c)))
        accuracy = torch.ones(10, len(alphas), dtype=torch.float64)
        accuracy[c] = target
        std = torch.full_like(accuracy, 0.05)
        prediction = torch.full((len(alphas), 10), 0.1, dtype=torch.float64)
        results.append(RobustnessResult(c, "suppress", "linear", [6 * c + 1, 6 * c + 2], alphas, accuracy,
                                        std, prediction, torch.zeros_like(prediction), []))
    meta = {"n_seeds": 2, "seeds": [0, 1], "epochs": 5, "mode": "suppress", "modulation": "linear",
            "split": "test", "final_explained_variance": [0.9, 0.9],
            "classes": {str(r.target_class): r.features_per_seed for r in results},
            "recorded_at": 1_700_000_000.0}
    with Session.open(folder / "synth.h5") as session:
        meta["computed_from"] = dict(load_inputs(session).computed_from)  # current: not stale
        save_robustness(session, results, None, meta)


def synth(folder: Path) -> SalveApp:
    return SalveApp(sessions_folder=folder, start_session="synth", clock=lambda: 1_700_000_000.0)


def snapshot_view(key: str, screen_type: type, ready, *keys: str, check=None):  # noqa: ANN001, ANN201
    """A run_before that opens a dashboard view, waits until ``ready(screen)``, then presses keys;
    ``check(screen, text)`` then asserts what the snapshot is about on the shown text."""
    async def run(pilot) -> None:  # noqa: ANN001
        screen = await open_view(pilot, key, screen_type)
        await wait_for(pilot, lambda: ready(screen))
        if keys:
            await pilot.press(*keys)
        await pilot.pause(0.2)
        if check is not None:
            check(pilot.app.screen, screen_text(pilot.app))

    return run


def test_feature_card_snapshot(snap_compare, synth60: Path) -> None:
    async def run(pilot) -> None:  # noqa: ANN001
        from salve_tui.app.screens.analysis_matrix import MatrixScreen

        await open_view(pilot, "m", MatrixScreen)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, FeatureDetailScreen))
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.card is not None and bool(screen.preview_error))
        await pilot.press("right")
        await wait_for(pilot, lambda: bool(screen.preview_error) and not screen.images_pending)
        await pilot.pause(0.2)
        text = screen_text(pilot.app)
        means = class_means_of(synth60)
        assert f"feature 1/64 · dominant: circle · strongest μ circle {means[0, 1]:+.2f}" in text
        assert "▲ highest u_1" in text and screen.card.feature == 1
        assert "Grad-FAM failed" in text  # the synthetic session has no backbone weights

    assert snap_compare(synth(synth60), terminal_size=SIZE, run_before=run)


def test_feature_card_classes_panel_snapshot(snap_compare, synth60: Path) -> None:
    async def run(pilot) -> None:  # noqa: ANN001
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen))
        pilot.app.push_screen(FeatureDetailScreen(7))
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, FeatureDetailScreen))
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.card is not None and bool(screen.preview_error))
        await pilot.press("2", "down", "down")
        await wait_for(pilot, lambda: bool(screen.preview_error) and not screen.images_pending)
        await pilot.pause(0.2)
        text = screen_text(pilot.app)
        assert "feature 7/64 · dominant: square" in text
        assert "▼ lowest u_7" in text  # two rows down: the lowest activations
        assert "μ_ck" in text and "W·D" in text  # panel 2: per-class means and direct effect

    assert snap_compare(synth(synth60), terminal_size=SIZE, run_before=run)


def test_ground_truth_snapshot(snap_compare, synth60: Path) -> None:
    with Session.open(synth60 / "synth.h5") as session, session.transaction() as tx:
        tx.write_json("groundtruth/results", GROUND_TRUTH)
    def check(screen, text: str) -> None:  # noqa: ANN001
        # the stored scores, as written: hit rate, chance, hit/chance, energy, area
        assert line_with(text, "Grad-FAM") == ["Grad-FAM", "80.0%", "20.0%", "4", "50.0%", "15.0%"]
        assert line_with(text, "Grad-CAM") == ["Grad-CAM", "60.0%", "20.0%", "3", "40.0%", "15.0%"]
        assert line_with(text, "tower") == ["tower", "9", "0.12", "0.88"]

    run = snapshot_view("g", GroundTruthScreen, lambda s: s.result is not None, check=check)
    assert snap_compare(synth(synth60), terminal_size=SIZE, run_before=run)


def test_seed_robustness_snapshot(snap_compare, synth60: Path) -> None:
    from salve_tui.app.screens.analysis_robustness import RobustnessScreen

    save_handmade_robustness(synth60)

    def check(screen, text: str) -> None:  # noqa: ANN001
        assert "2 SAE seeds, suppress, linear: mean ± std over seeds" in text
        assert "out of date" not in text
        assert line_with(text, "circle")[:3] == ["circle", "1", "2"]  # features per seed, as stored
        assert line_with(text, "square")[:3] == ["square", "7", "8"]
        assert screen.target == 1 and "square mean" in text  # ↓ chose square's curves

    run = snapshot_view("n", RobustnessScreen, lambda s: bool(s.curves), "down", check=check)
    assert snap_compare(synth(synth60), terminal_size=SIZE, run_before=run)


async def test_seed_robustness_classes_page(synth60: Path) -> None:
    """With a page of 2 rows the table holds 2 of the 3 classes with curves; ] shows the third
    and draws its curves, [ comes back."""
    from core.workflow.robustness import run_seed_robustness
    from salve_tui.app.screens.analysis_robustness import RobustnessScreen

    with Session.open(synth60 / "synth.h5") as session:
        run_seed_robustness(session, k=2, target_class=[0, 1, 2], epochs=2)
    app = synth(synth60)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_view(pilot, "n", RobustnessScreen)
        await wait_for(pilot, lambda: bool(screen.curves), what="curves")
        screen.pager.size = 2
        screen._fill()
        table = screen.query_one(DataTable)
        assert [str(k.value) for k in table.rows] == ["0", "1"]
        assert "classes 1–2/3 [ ]" in text_of(screen, "#robust-info")
        await pilot.press("right_square_bracket")
        assert [str(k.value) for k in table.rows] == ["2"] and screen.target == 2
        assert "classes 3–3/3" in text_of(screen, "#robust-info")
        await pilot.press("left_square_bracket", "down")
        assert [str(k.value) for k in table.rows] == ["0", "1"] and screen.target == 1


def test_saliency_snapshot_says_what_failed(snap_compare, synth60: Path) -> None:
    """The synthetic session has no backbone weights: the screen names the problem."""
    def check(screen, text: str) -> None:  # noqa: ANN001
        assert text.splitlines()[1].strip().startswith("cannot draw saliency maps:")
        assert "Missing key(s) in state_dict" in text  # the loader's own words, not cut

    run = snapshot_view("h", SaliencyScreen, lambda s: "cannot" in text_of(s, "#saliency-info"),
                        check=check)
    assert snap_compare(synth(synth60), terminal_size=SIZE, run_before=run)


async def test_saliency_info_lines_fit_80_columns(tiny_folder: Path) -> None:
    """Grad-FAM on the real tiny session: the info lines (sample, feature, layer and its place,
    score, prediction) fit 80 columns without "…", and they state what is shown.

    A content test, not a snapshot: the score and the dominant feature come from a trained model
    and differ between CPUs (a saved SVG of them failed on every machine but the one it was made on).
    """
    app = tiny_app(tiny_folder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_view(pilot, "h", SaliencyScreen)
        await wait_for(pilot, lambda: screen.result is not None, what="a map")
        default = screen.map_layer
        await pilot.press("g", "l")  # Grad-FAM at the layer after the default (wrapping round)
        await wait_for(pilot, lambda: screen.result is not None and screen.result.method == "Grad-FAM"
                       and screen.result.layer == screen.map_layer != default,
                       what="Grad-FAM at the next layer")
        await pilot.pause(0.1)
        info = text_of(screen, "#saliency-info")
        assert "…" not in info and all(len(line) <= 78 for line in info.splitlines())
        lines = info.splitlines()
        assert len(lines) == 2, info
        result = screen.result
        assert lines[0].startswith(f"sample {screen.sample}/{len(screen.labels)} (")
        assert f"Grad-FAM of feature {screen.feature} (" in lines[0] and "dominant)" in lines[0]
        index = screen.map_layers.index(screen.map_layer) + 1
        assert lines[1].startswith(f"map at {screen.map_layer} ({index}/{len(screen.map_layers)})")
        assert f"u {result.score:+.3g}, predicted " in lines[1]
        assert screen.map_layer == screen.map_layers[(screen.map_layers.index(default) + 1)
                                                     % len(screen.map_layers)]


def test_alpha_explorer_snapshot(snap_compare, synth60: Path) -> None:
    with Session.open(synth60 / "synth.h5", read_only=True) as ro:
        x = load_inputs(ro)
    ref = class_alpha_crit(x.A, x.labels, x.W, x.b, x.D, 0, 1, "suppress", "linear")

    def check(screen, text: str) -> None:  # noqa: ANN001
        analytic = ref.analytic[torch.isfinite(ref.analytic)].double()
        assert cells_after(text, "analytic  ")[0] == f"{float(analytic.quantile(0.5)):.3g}"
        assert f"samples {len(ref.analytic)} · qualifying analytic {len(analytic)}" in text

    run = snapshot_view("j", AlphaExplorerScreen, lambda s: s.result is not None, check=check)
    assert snap_compare(synth(synth60), terminal_size=SIZE, run_before=run)


def test_methods_snapshot(snap_compare, synth60: Path) -> None:
    def check(screen, text: str) -> None:  # noqa: ANN001
        assert "circle · SALVE, steering: f1 · ROME: class-mean key" in text
        assert all(name in text for name in ("SALVE", "ROME", "steering"))
        assert set(screen.curves) == {"salve", "rome", "steer"}

    run = snapshot_view("o", MethodsScreen, lambda s: bool(s.curves), check=check)
    assert snap_compare(synth(synth60), terminal_size=SIZE, run_before=run)


def test_confusion_snapshot(snap_compare, synth60: Path) -> None:
    def check(screen, text: str) -> None:  # noqa: ANN001
        before = screen.effect.confusion_before.numpy()
        after = screen.effect.confusion_after.numpy()
        assert (before == 6 * np.eye(10)).all()  # the synthetic head is exact on every sample
        row = line_with(text, "circle")
        assert row[1:11] == ["6"] + ["0"] * 9  # before: circle row
        assert row[11] == "circle" and [int(v) for v in row[12:22]] == after[0].tolist()
        assert after[0].sum() == 6 and after[0, 0] < 6  # the edit moved circles elsewhere
        from core.control.methods.registry import get_method

        said = get_method(screen.spec.method).describe(screen.spec)  # the method's words, not the screen's
        assert text.splitlines()[1].strip() == f"{said} · dominant feature at its α50"

    run = snapshot_view("v", ConfusionScreen, lambda s: s.effect is not None, check=check)
    assert snap_compare(synth(synth60), terminal_size=SIZE, run_before=run)


def test_gallery_snapshot(snap_compare, synth60: Path) -> None:
    folder = synth60 / "synth.exports" / "figures"
    folder.mkdir(parents=True)
    ramp = np.zeros((32, 48, 3), np.uint8)
    ramp[..., 0] = np.linspace(0, 255, 48, dtype=np.uint8)[None, :]
    ramp[..., 2] = np.linspace(255, 0, 32, dtype=np.uint8)[:, None]
    Image.fromarray(ramp).save(folder / "ramp.png")
    def check(screen, text: str) -> None:  # noqa: ANN001
        size = (folder / "ramp.png").stat().st_size
        assert f"1 PNG file(s) in synth.exports/ ({size} B)" in text
        assert f"ramp.png · 48×32 px · {size} B" in text

    run = snapshot_view("p", GalleryScreen, lambda s: s.shown is not None, check=check)
    assert snap_compare(synth(synth60), terminal_size=SIZE, run_before=run)


def test_typed_strength_modal_snapshot(snap_compare, synth60: Path) -> None:
    def check(screen, text: str) -> None:  # noqa: ANN001
        assert not isinstance(screen, EditPreviewScreen)  # "x" is refused: the dialog stays open
        assert screen.query_one(Input).value == "x"  # and keeps what was typed
        assert "Type the SALVE strength α (≥ 0):" in text

    run = snapshot_view("e", EditPreviewScreen, lambda s: s.effect is not None and s.curve is not None,
                        "equals_sign", "x", "enter", check=check)
    assert snap_compare(synth(synth60), terminal_size=SIZE, run_before=run)
