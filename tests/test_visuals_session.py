"""Session-level visuals (core.workflow: assets, saliency_maps, actmax_images, figure_export, ground_truth) through the ``salve`` CLI, on a copy of the tiny session."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.config import DataConfig, SessionConfig
from core.store.session import Session, copy_session
from core.validate.groundtruth import pointing_game
from core.validate.saliency import grad_cam
from core.workflow.alpha_crit import run_alpha_crit
from core.workflow.edits import build_spec, record_edit
from core.workflow.figures import safe_filename
from core.workflow.inputs import load_inputs
from core.workflow.pipeline import load_activations, load_data, load_model, load_sae
from core.workflow.robustness import run_seed_robustness
from core.workflow.sweeps import run_sweep, sweep_id
from salve_tui.cli.main import main

DPI = 100  # core.workflow.figures draws at 100 dpi: PNG size = figsize × 100


@pytest.fixture
def workspace(tmp_path: Path, built_session_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A session copy in ``tmp/sessions`` and an empty working directory ``tmp/cwd``."""
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    copy_session(built_session_path, sessions / "tiny.h5")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return tmp_path


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        return image.size


def png_caption(path: Path) -> str:
    """The caption a figure carries under its axes (also stored in the PNG's Description)."""
    with Image.open(path) as image:
        return str(image.info.get("Description", ""))


def assert_warns(path: Path) -> None:
    """The tiny session trains 1 epoch on 80 images: the near-chance gate shows."""
    caption = png_caption(path)
    assert caption.startswith("warnings: ") or "\nwarnings: " in caption, (path.name, caption)
    assert "backbone_near_chance" in caption, path.name


def test_saliency_cli_writes_overlays_with_the_sample_scores(
    workspace: Path, capsys: pytest.CaptureFixture
) -> None:
    session_file = workspace / "sessions" / "tiny.h5"
    exports = workspace / "sessions" / "tiny.exports"
    before = files_under(workspace)

    code, out, _ = run_cli(capsys, "saliency", str(session_file), "--sample", "3",
                           "--feature", "2", "--json")
    assert code == 0
    fam = json.loads(out)
    assert Path(fam["path"]) == exports / "heatmaps" / safe_filename(
        "gradfam", "sample 3", "feature 2", fam["layer"], ext=".png")
    assert png_size(Path(fam["path"])) == (480, 400)
    assert fam["layer"] == "layer2"  # at 32 px layer3 is 2×2, layer2 the deepest ≥ 4×4 stage

    own = workspace / "mine.png"
    code, out, _ = run_cli(capsys, "saliency", str(session_file), "--sample", "3", "--class",
                           "star", "--out", str(own), "--json")
    assert code == 0
    cam = json.loads(out)
    assert Path(cam["path"]) == own and png_size(own) == (480, 400)
    assert_warns(Path(fam["path"]))
    assert_warns(own)

    # The images reloaded through the model reproduce the cached activations of that sample.
    with Session.open(session_file, read_only=True) as session:
        cached = load_activations(session, "test")
        sae = load_sae(session)
        names = session.read_json("class_names")
    u = sae.encode(torch.from_numpy(cached["a"][3:4]))[0, 2].item()
    assert fam["score"] == pytest.approx(u, abs=1e-4)
    assert cam["score"] == pytest.approx(float(cached["logits"][3, names.index("star")]), abs=1e-4)
    assert cam["label"] == names[int(cached["labels"][3])]

    assert files_under(workspace) - before == {Path(fam["path"]), own}


def test_actmax_and_top_samples_cli(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    session_file = workspace / "sessions" / "tiny.h5"
    exports = workspace / "sessions" / "tiny.exports" / "figures"
    before = files_under(workspace)

    code, out, _ = run_cli(capsys, "actmax", str(session_file), "--feature", "1", "--steps", "12",
                           "--seed", "1", "--json")
    assert code == 0
    result = json.loads(out)
    assert Path(result["path"]) == exports / "actmax_feature-1_seed-1.png"
    assert result["snapshot_steps"] == [3, 6, 9, 12]
    # One row of four 1.6-inch cells plus a 0.3-inch title band.
    assert png_size(Path(result["path"])) == (4 * 160, 160 + 30)
    assert_warns(Path(result["path"]))
    gain = result["sign"] * (result["final_activation"] - result["start_activation"])
    assert gain > 0

    code, out, _ = run_cli(capsys, "top-samples", str(session_file), "--feature", "5", "--json")
    assert code == 0
    top = Path(json.loads(out)["path"])
    assert top == exports / "top-samples_feature-5.png"
    assert png_size(top) == (8 * 130, 2 * 130 + 60)  # two rows of eight 1.3-inch cells
    assert_warns(top)

    # The raw snapshots the TUI draws: a PNG strip at pixel size and its sidecar.
    from core.workflow.actmax_images import actmax_snapshots_path, load_actmax_snapshots

    with Session.open(session_file, read_only=True) as ro:
        strip = actmax_snapshots_path(ro, 1, seed=1)
        images, meta = load_actmax_snapshots(ro, 1, seed=1)
    assert meta["steps"] == [3, 6, 9, 12] and meta["size"] == 32
    assert meta["final_activation"] == pytest.approx(result["final_activation"], rel=1e-6)
    assert [im.shape for im in images] == [(32, 32, 3)] * 4
    assert files_under(workspace) - before == {Path(result["path"]), top, strip,
                                               strip.with_suffix(".json")}


def test_export_figures_follow_the_stored_control_results(
    workspace: Path, capsys: pytest.CaptureFixture
) -> None:
    session_file = workspace / "sessions" / "tiny.h5"
    exports = workspace / "sessions" / "tiny.exports"
    with Session.open(session_file, read_only=True) as session:
        dominant = [int(k) for k in session.read_array("rankings/dominant")]
        names = session.read_json("class_names")

    code, out, _ = run_cli(capsys, "export", str(session_file), "--figures", "--json")
    assert code == 0
    first = json.loads(out)
    written = {Path(p) for p in first["written"]}
    # Matrix + one grid per distinct dominant feature + one Grad-FAM overlay per class.
    assert len(written) == 1 + len(set(dominant)) + len(dominant)
    assert exports / "figures" / "feature_class_matrix.png" in written
    assert {exports / "figures" / f"top-samples_feature-{k}.png" for k in dominant} <= written
    assert len(first["skipped"]) == 4
    assert all(p.is_relative_to(exports) and png_size(p)[0] > 100 for p in written)
    for figure in written:  # matrix, top samples, Grad-FAM overlays: every caption warns
        assert_warns(figure)

    with Session.open(session_file) as session:
        sweep = run_sweep(session, target_class=2, n_alphas=9)
        run_alpha_crit(session, target_class=[1, 2], curve=sweep)
        spec = build_spec(load_inputs(session), "salve", None, 2, "suppress", 1.5)
        record_edit(session, spec)
        run_seed_robustness(session, k=2, target_class=2, epochs=1, n_alphas=9)
    matrix = exports / "figures" / "feature_class_matrix.png"
    before = matrix.read_bytes()
    code, _, err = run_cli(capsys, "export", str(session_file), "--figures", "--json")
    assert code == 2 and "--force" in err and matrix.read_bytes() == before  # nothing replaced
    code, out, _ = run_cli(capsys, "export", str(session_file), "--figures", "--json", "--force")
    assert code == 0
    second = json.loads(out)
    new = {Path(p) for p in second["written"]} - written
    key = sweep_id(sweep)
    assert {p.name for p in new} == {
        f"curve_{key}.png",
        f"predictions_{key}.png",
        f"selectivity_{key}.png",
        "alpha-crit_suppress-linear.png",
        f"robustness_suppress-linear_{names[2]}.png",
        safe_filename("confusion", "edit 0", f"SALVE suppress f{dominant[2]} α=1.5 linear",
                      ext=".png"),
    }
    assert second["skipped"] == []
    for figure in new:  # curves, predictions, selectivity, α_crit, robustness, confusion
        assert_warns(figure)
    confusion = next(p for p in new if p.name.startswith("confusion"))
    assert png_size(confusion) == (800, 400)  # two 4-inch panels
    assert all(p.is_relative_to(exports) and png_size(p) == (640, 400)  # 6.4 × 4 inches
               for p in new if p.name.startswith(("curve", "predictions", "robustness",
                                                  "selectivity")))


def test_groundtruth_is_stored_shown_by_info_and_matches_a_direct_computation(
    workspace: Path, capsys: pytest.CaptureFixture
) -> None:
    session_file = workspace / "sessions" / "tiny.h5"
    before = files_under(workspace)
    code, out, _ = run_cli(capsys, "groundtruth", str(session_file), "--json")
    assert code == 0
    result = json.loads(out)
    # Results go into the session only (the writer's lock file sits beside it).
    assert files_under(workspace) - before <= {session_file.with_name("tiny.h5.lock")}

    code, out, _ = run_cli(capsys, "info", str(session_file), "--json")
    shown = json.loads(out)["groundtruth"]
    assert shown["layer"] == result["layer"] and shown["n_images"] == 40
    assert shown["pointing_game"]["grad_fam"]["hit_rate"] == pytest.approx(
        result["pointing_game"]["grad_fam"]["hit_rate"])
    assert shown["shared_part"]["latent"] == result["shared_part"]["best_latent"]["latent"]

    with Session.open(session_file, read_only=True) as session:
        cached = load_activations(session, "test")
        sae = load_sae(session)
        source = load_data(session.config).test
        names = session.read_json("class_names")
        model = load_model(session, "cpu")
        assert session.read_json("groundtruth/results") == result
    latents = sae.encode(torch.from_numpy(cached["a"])).detach().numpy()
    presence = source.concept_present
    concepts = source.concept_names

    # Best latent per concept: brute-force pairwise AUROC over every latent.
    def pairwise_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
        pos, neg = scores[positive], scores[~positive]
        wins = sum(1.0 if p > q else 0.5 if p == q else 0.0
                   for p, q in itertools.product(pos, neg))
        return wins / (len(pos) * len(neg))

    for concept in ("tower", names[0]):
        j = concepts.index(concept)
        values = [pairwise_auroc(latents[:, k], presence[:, j]) for k in range(latents.shape[1])]
        best = int(np.argmax(np.abs(np.array(values) - 0.5)))
        assert result["concepts"][concept]["latent"] == best
        assert result["concepts"][concept]["auroc"] == pytest.approx(values[best], abs=1e-9)

    # Shared part: the latent with the best worse-class AUROC on the train split, scored on
    # the test split inside each class (brute force again).
    with Session.open(session_file, read_only=True) as session:
        train = load_activations(session, "train")
        train_source = load_data(session.config).train
    train_latents = sae.encode(torch.from_numpy(train["a"])).detach().numpy()
    tower = concepts.index("tower")
    pair = [names.index(c) for c in ("square", "circle")]

    def within(lat: np.ndarray, pres: np.ndarray, lab: np.ndarray, k: int) -> list[float]:
        return [pairwise_auroc(lat[lab == c, k], pres[lab == c, tower]) for c in pair]

    worst = []
    for k in range(train_latents.shape[1]):
        raw = within(train_latents, train_source.concept_present, np.asarray(train["labels"]), k)
        worst.append(max(min(raw), min(1 - v for v in raw)))
    shared = result["shared_part"]["best_latent"]
    assert shared["selected_on"] == "train" and shared["latent"] == int(np.argmax(worst))
    on_test = within(latents, presence, np.asarray(source.labels), shared["latent"])
    oriented = on_test if shared["sign"] > 0 else [1 - v for v in on_test]
    assert [shared["auroc_per_class"][c] for c in ("square", "circle")] == pytest.approx(oriented)

    # Grad-CAM pointing game of the true class, recomputed from the core pieces.
    labels = np.asarray(source.labels)
    images = source.load_batch(np.arange(len(labels)))
    maps = grad_cam(model, images, torch.from_numpy(labels), result["layer"]).numpy()
    dense = source.concept_masks(np.arange(len(labels)))
    own = [concepts.index(names[c]) for c in labels]
    masks = dense[np.arange(len(labels)), own]
    direct = pointing_game(maps, masks)
    stored = result["pointing_game"]["grad_cam"]
    assert stored["hit_rate"] == pytest.approx(direct.hit_rate, abs=1e-9)
    assert stored["chance_rate"] == pytest.approx(direct.chance_rate, abs=1e-9)
    assert stored["n_evaluated"] + stored["n_skipped"] == 40


def test_groundtruth_on_non_shapes_data_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = SessionConfig(name="folder", data=DataConfig(kind="imagefolder", path=str(tmp_path)))
    path = tmp_path / "folder.h5"
    with Session.create(path, config):
        pass
    code, _, err = run_cli(capsys, "groundtruth", str(path))
    assert code == 2
    assert "'imagefolder' data, which has no ground-truth concept masks" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["saliency", "--sample", "40", "--feature", "0"], "test sample 40 is out of range"),
        (["saliency", "--sample", "0", "--class", "hexagon"], "unknown class 'hexagon'"),
        (["saliency", "--sample", "0", "--feature", "16"], "feature 16 is out of range"),
        (["saliency", "--sample", "0", "--feature", "1", "--layer", "layer9"],
         "target layer 'layer9' is not a module"),
        (["saliency", "--sample", "0"], "give exactly one of --feature K"),
        (["saliency", "--sample", "0", "--feature", "1", "--out", "x.jpg"], "must be a .png"),
        (["actmax", "--feature", "99"], "feature 99 is out of range"),
        (["actmax", "--feature", "1", "--steps", "0"], "--steps: must be ≥ 1"),
        (["export"], "pass --figures"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    workspace: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str
) -> None:
    session_file = workspace / "sessions" / "tiny.h5"
    before = files_under(workspace)
    code, _, err = run_cli(capsys, argv[0], str(session_file), *argv[1:])
    assert code == 2
    assert message in err
    assert files_under(workspace) == before


def test_registering_visuals_commands_keeps_torch_unimported() -> None:
    probe = "import sys; from salve_tui.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=root,
                          check=True)
    assert done.stdout.strip() == "False"


def test_actmax_snapshots_are_the_run_pixels(workspace: Path) -> None:
    """The stored strip holds each snapshot's pixels exactly (to uint8 rounding)."""
    from core.workflow.actmax_images import (
        default_actmax_config,
        load_actmax_snapshots,
        run_actmax,
        save_actmax,
    )

    with Session.open(workspace / "sessions" / "tiny.h5") as session:
        config = default_actmax_config(session, 2, steps=6, snapshots=1, seed=4)
        result = run_actmax(session, 2, config)
        save_actmax(session, result, config)
        images, meta = load_actmax_snapshots(session, 2, seed=4)
        assert load_actmax_snapshots(session, 3, seed=4) is None
    assert meta["steps"] == [step for step, _ in result.snapshots] == [3, 6]
    for image, (_, snap) in zip(images, result.snapshots, strict=True):
        expected = (snap[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round()
        assert np.abs(image.astype(float) - expected).max() <= 1
