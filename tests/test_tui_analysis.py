"""Analysis views (matrix, feature detail, edit preview, α_crit, exports) driven with Pilot.

The walk uses the tiny real session built once by ``conftest.built_session_path`` (copied, since
the app opens it as writer) and checks what the screens show against the core computed
independently: μ from the session arrays, per-class accuracy from ``core.control.sweep.edit_effect`` on
arrays loaded through ``core.workflow.pipeline`` (the screen uses the cached ``preview_edit`` path),
α_crit counts from ``core.control.alpha_crit.class_alpha_crit``.

Snapshots use a small synthetic session written directly (known arrays, no training), so they
are identical on every machine.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_tui_helpers import (
    line_with,
    make_session,
    screen_text,
    tiny_config,
    wait_for,
)
from textual.widgets import DataTable, Static

from core.control.alpha_crit import class_alpha_crit
from core.control.spec import EditSpec
from core.control.sweep import edit_effect
from core.discover.rankings import class_means, dominant_features, top_activating
from core.store.session import Session, copy_session
from core.workflow.alpha_crit import run_alpha_crit
from core.workflow.edits import list_edits
from core.workflow.inputs import load_inputs
from core.workflow.pipeline import (
    load_activations,
    load_classifier_head,
    load_data,
    load_sae_arrays,
)
from salve_tui.app.app import SalveApp
from salve_tui.app.screens.analysis_alpha_crit import (
    AlphaCritScreen,
    SampleSaliencyScreen,
    sort_rows,
)
from salve_tui.app.screens.analysis_edit import EditPreviewScreen, confusion_text
from salve_tui.app.screens.analysis_exports import ExportsScreen
from salve_tui.app.screens.analysis_feature import FeatureDetailScreen, Thumbnail, encode_latents
from salve_tui.app.screens.analysis_matrix import MatrixScreen, matrix_status
from salve_tui.app.screens.confirm import ConfirmModal
from salve_tui.app.screens.dashboard import DashboardScreen
from salve_tui.app.widgets.heatmap import Heatmap, signed_colour

SIZE = (80, 24)


def cell(table: DataTable, row_key: str, column_key: str) -> str:
    return str(table.get_cell(row_key, column_key))


def percent(text: str) -> float:
    """``'87.5%'`` → 0.875 (what the accuracy table shows)."""
    return float(text.rstrip("%")) / 100


def reference_effect(path: Path, spec: EditSpec):  # noqa: ANN201
    """The core's per-class effect of ``spec``, from arrays loaded independently of the screen."""
    with Session.open(path, read_only=True) as session:
        acts = load_activations(session, "test")
        W, b = load_classifier_head(session)
        D = load_sae_arrays(session)["decoder.weight"]
    return edit_effect(torch.from_numpy(acts["a"]).float(), torch.from_numpy(acts["labels"]).long(),
                       torch.from_numpy(W).float(), torch.from_numpy(b).float(),
                       torch.from_numpy(D).float(), spec)


def assert_table_matches(screen: EditPreviewScreen, path: Path) -> bool:
    """Every class's before/after/Δ cell equals the core's; returns whether any class changed."""
    assert screen.spec is not None, screen.error
    expected = reference_effect(path, screen.spec)
    table = screen.query_one(DataTable)
    changed = False
    for c in range(len(expected.accuracy_before)):
        before, after = float(expected.accuracy_before[c]), float(expected.accuracy_after[c])
        assert percent(cell(table, str(c), "before")) == pytest.approx(before, abs=5e-4)
        assert percent(cell(table, str(c), "after")) == pytest.approx(after, abs=5e-4)
        delta = cell(table, str(c), "delta")
        assert float(delta.replace("±", "")) == pytest.approx(100 * (after - before), abs=0.05)
        changed |= after != before
    return changed


# --------------------------------------------------------------------------- pure helpers


def test_signed_colour_scale_is_diverging_and_clipped() -> None:
    assert signed_colour(0.0, 1.0) == (247, 247, 247)
    assert signed_colour(1.0, 1.0) == (178, 24, 43)
    assert signed_colour(-5.0, 1.0) == (33, 102, 172)  # clipped to the scale
    half = signed_colour(0.5, 1.0)
    assert half == (round((247 + 178) / 2), round((247 + 24) / 2), round((247 + 43) / 2))
    assert signed_colour(float("nan"), 1.0) == (60, 60, 60)


def test_matrix_status_reports_rank_and_owners() -> None:
    M = np.array([[0.5, -2.0, 1.0], [0.1, 0.2, -0.3]])
    dominant = np.array([1, 2])
    text = matrix_status(M, dominant, ["a", "b"], 0, 2)
    assert text == "a · feature 2 · μ = +1.000 · rank 2/3 in class · dominant for b"


def test_sort_rows_puts_excluded_samples_last() -> None:
    rows = [{"v": 2.0}, {"v": None}, {"v": -1.0}, {"v": float("nan")}, {"v": 0.5}]
    assert [r["v"] for r in sort_rows(rows, "v")][:3] == [-1.0, 0.5, 2.0]
    assert [r["v"] for r in sort_rows(rows, "v", descending=True)][:3] == [2.0, 0.5, -1.0]
    assert all(r["v"] is None or np.isnan(r["v"]) for r in sort_rows(rows, "v")[3:])


def test_confusion_text_marks_changed_cells() -> None:
    before = np.array([[2, 0], [1, 1]])
    after = np.array([[1, 1], [1, 1]])
    text = confusion_text(before, after, ["ab", "cd"], 0)
    lines = text.plain.splitlines()
    assert lines[1].split() == ["0", "1"]  # columns numbered like the rows
    assert lines[2].split() == ["0", "ab", "1", "1"] and lines[3].split() == ["1", "cd", "1", "1"]
    yellow = [text.plain[span.start:span.end] for span in text.spans if "yellow" in str(span.style)]
    assert yellow == ["  1", "  1"]  # both cells of the first row changed
    # Three-digit counts widen the cells; too narrow for any matrix: the target row as a list.
    wide = confusion_text(before * 100, after * 100, ["ab", "cd"], 0).plain.splitlines()
    assert wide[2].endswith(" 100 100")
    listing = confusion_text(before, after, ["ab", "cd"], 0, width=8).plain.splitlines()
    assert listing[0] == "ab predicted as (after, before):"
    assert [line.split() for line in listing[1:]] == [["ab", "1", "(2)"], ["cd", "1", "(0)"]]


# --------------------------------------------------------------------------- the walk


@pytest.fixture
def walk_folder(tmp_path: Path, built_session_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SALVE_TUI_IMAGES", "halfblock")
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "sessions"
    folder.mkdir()
    copy_session(built_session_path, folder / "tiny.h5")
    return folder


async def test_walk_matrix_feature_edit_alpha_crit_export(walk_folder: Path) -> None:
    path = walk_folder / "tiny.h5"
    with Session.open(path, read_only=True) as ro:
        M = ro.read_array("rankings/class_means")
        dominant = ro.read_array("rankings/dominant")
        top_pos = ro.read_array("rankings/top_pos")
        names = ro.read_json("class_names")
        labels = load_activations(ro, "test")["labels"]
        test_images = load_data(ro.config).test
    app = SalveApp(sessions_folder=walk_folder)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")

        # ---- matrix: cursor starts on class 0's dominant feature, status shows the exact μ
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen) and app.screen.loaded, what="matrix")
        matrix = app.screen
        heatmap = matrix.query_one(Heatmap)
        assert heatmap.cursor == (0, int(dominant[0]))
        assert heatmap.shape == M.shape and (0, int(dominant[0])) in heatmap.marks
        status = str(matrix.query_one("#matrix-status", Static).render())
        assert f"μ = {M[0, dominant[0]]:+.3f}" in status and f"rank 1/{M.shape[1]}" in status
        await pilot.press("down", "home", "right")
        assert heatmap.cursor == (1, 1)
        status = str(matrix.query_one("#matrix-status", Static).render())
        rank = 1 + int((np.abs(M[1]) > abs(M[1, 1])).sum())
        assert f"{names[1]} · feature 1 · μ = {M[1, 1]:+.3f} · rank {rank}/" in status

        # ---- feature detail: thumbnails of the top samples, Grad-FAM preview in a worker
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, FeatureDetailScreen), what="feature")
        detail = app.screen
        assert detail.feature == 1
        await wait_for(pilot, lambda: detail.card is not None, what="feature card")
        thumbs = list(detail.query_one("#row-top").query(Thumbnail))
        captions = [str(t.query_one(".caption", Static).render()) for t in thumbs]
        assert [c.split()[0] for c in captions] == [names[labels[i]] for i in top_pos[1][:8]]
        bars = str(detail.query_one("#panel-classes-text", Static).render())
        assert all(f"{M[c, 1]:+6.2f}" in bars for c in range(len(names)))
        await wait_for(pilot, lambda: detail.preview is not None, what="Grad-FAM preview")
        preview = detail.preview
        assert preview.sample == int(top_pos[1][0]) and preview.feature == 1
        np.testing.assert_array_equal(preview.image, test_images.raw_images([preview.sample])[0])
        assert preview.heat.shape == preview.image.shape[:2]
        assert preview.heat.min() == 0.0 and preview.heat.max() == pytest.approx(1.0)
        u = encode_latents(app.session)
        assert preview.latent == pytest.approx(u[preview.sample, 1], abs=1e-4)
        await pilot.press("right")
        await wait_for(pilot, lambda: detail.preview.sample == int(top_pos[1][1]), what="2nd preview")
        # Activation maximisation is a job; cancelling it stores nothing.
        await pilot.press("a")
        await wait_for(pilot, lambda: app.jobs.busy, what="act-max job")
        await pilot.press("c")
        await wait_for(pilot, lambda: not app.jobs.busy, what="act-max cancelled")
        assert app.jobs.current.token.cancelled
        from core.workflow.actmax_images import actmax_path

        assert not actmax_path(app.session, 1).exists()  # the cancelled run wrote nothing

        # ---- edit preview: α keys, the table equals the core's edit_effect for the same spec
        await pilot.press("escape", "escape", "e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditPreviewScreen), what="edit")
        edit = app.screen
        await wait_for(pilot, lambda: edit.curve is not None and edit.effect is not None, what="curve")
        assert edit.features == [int(dominant[0])] and edit.target_class == 0
        coarse, fine = edit.steps()
        span = float(edit.curve.alphas.max() - edit.curve.alphas.min())
        # round steps (1, 2 or 5 × 10^k) not above a 20th and a 200th of the curve's range
        assert span / 40 < coarse <= span / 20 and span / 400 < fine <= span / 200
        assert all(round(step / 10 ** math.floor(math.log10(step)), 9) in (1, 2, 5) for step in (coarse, fine))
        await pilot.press("plus", "plus", "minus", "right_square_bracket")
        assert edit.alpha == pytest.approx(coarse + fine)
        assert edit.spec == EditSpec((int(dominant[0]),), "suppress", edit.alpha, "linear", "salve")
        changed = assert_table_matches(edit, path)
        presses = 0
        while not changed and presses < 20:  # stronger until some class's accuracy moves
            await pilot.press("plus")
            presses += 1
            changed = assert_table_matches(edit, path)
        assert changed, "no α in the curve's range changed any accuracy"
        await pilot.press("s")  # enhance
        assert edit.spec.mode == "enhance"
        assert_table_matches(edit, path)
        await pilot.press("m")  # ROME baseline at its default target
        assert edit.spec.method == "rome" and edit.alpha == -10.0
        assert_table_matches(edit, path)
        await pilot.press("m", "down")  # steering, target class 1 (its dominant feature)
        assert edit.spec.method == "steer" and edit.features == [int(dominant[1])]
        await pilot.press("plus", "plus", "plus")
        assert_table_matches(edit, path)
        await pilot.press("w")  # record + export weights
        await wait_for(pilot, lambda: "wrote" in edit.status, what="weights export")
        written = [Path(p) for p in edit.last_export.files]
        assert [p.suffix for p in written] == [".pt", ".safetensors"]
        assert all(p.exists() and p.stat().st_size > 0 for p in written)
        status = str(edit.query_one("#edit-status", Static).render())
        assert written[0].name in status and written[1].name in status
        await pilot.pause()  # laid out: the whole line is on screen (it was cut with … at 80 columns)
        assert edit.query_one("#edit-status").size.height * 78 >= len(status)
        assert list_edits(app.session) == [edit.spec]

        # ---- α_crit: compute as a job, rows present, sort, filter, Enter → Grad-FAM
        await pilot.press("escape", "k")
        await wait_for(pilot, lambda: isinstance(app.screen, AlphaCritScreen) and app.screen.loaded,
                       what="α_crit")
        crit = app.screen
        assert crit.results == [] and "press r" in str(crit.query_one("#crit-info", Static).render())
        await pilot.press("r")
        await wait_for(pilot, lambda: crit.results and not app.jobs.busy, what="α_crit job")
        summary = crit.query_one("#crit-summary", DataTable)
        samples = crit.query_one("#crit-samples", DataTable)
        present = sorted(set(int(c) for c in labels))
        assert summary.row_count == len(present) and samples.row_count == len(labels)
        with Session.open(path, read_only=True) as ro:
            acts = load_activations(ro, "test")
            W, b = load_classifier_head(ro)
            D = load_sae_arrays(ro)["decoder.weight"]
        for c in present:
            ref = class_alpha_crit(torch.from_numpy(acts["a"]).float(), torch.from_numpy(labels).long(),
                                   torch.from_numpy(W).float(), torch.from_numpy(b).float(),
                                   torch.from_numpy(D).float(), c, int(dominant[c]))
            assert cell(summary, str(c), "qual") == str(int(torch.isfinite(ref.analytic).sum()))
            assert cell(summary, str(c), "feature") == str(int(dominant[c]))
        await pilot.press("s")  # sort by the numerical α_crit, ascending, excluded last
        assert crit.sort_key == "alpha_crit_numerical"
        values = [r["alpha_crit_numerical"] for r in crit.rows]
        finite = [v for v in values if v is not None]
        assert finite == sorted(finite) and values[: len(finite)] == finite
        assert str(samples.get_row_at(0)[0]) == str(crit.rows[0]["index"])
        await pilot.press("i")
        finite_desc = [r["alpha_crit_numerical"] for r in crit.rows if r["alpha_crit_numerical"] is not None]
        assert finite_desc == sorted(finite, reverse=True)
        await pilot.press("f")  # only the class highlighted in the summary (the first)
        assert crit.filter_class == present[0]
        assert samples.row_count == int((labels == present[0]).sum())
        assert {r["class_index"] for r in crit.rows} == {present[0]}
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SampleSaliencyScreen), what="sample")
        sample_screen = app.screen
        assert sample_screen.sample == crit.rows[0]["index"]
        assert sample_screen.feature == int(dominant[present[0]])
        await wait_for(pilot, lambda: sample_screen.preview is not None, what="sample Grad-FAM")
        assert sample_screen.preview.heat.shape == sample_screen.preview.image.shape[:2]

        # ---- exports: the matrix PNG and the α_crit CSV, written paths listed
        await pilot.press("escape", "escape", "x")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportsScreen) and app.screen.loaded,
                       what="exports")
        exports = app.screen
        await pilot.press("enter")
        await wait_for(pilot, lambda: exports.last_written and not app.jobs.busy, what="matrix export")
        png = exports.last_written[0]
        assert png.name == "feature_class_matrix.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        listed = str(exports.query_one("#exports-files", Static).render())
        assert "feature_class_matrix.png" in listed
        before = png.stat().st_mtime_ns
        await pilot.press("enter")  # again: the file exists, so the screen asks before replacing it
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="replace question")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is exports and not app.jobs.busy, what="kept")
        assert png.stat().st_mtime_ns == before
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="replace question")
        await pilot.press("y")
        await wait_for(pilot, lambda: png.stat().st_mtime_ns != before and not app.jobs.busy, what="replaced")
        await pilot.press("down", "down", "down", "enter")  # α_crit tables
        await wait_for(pilot, lambda: any(p.suffix == ".csv" for p in exports.last_written)
                       and not app.jobs.busy, what="α_crit export")
        samples_csv = next(p for p in exports.last_written if p.name.endswith(".samples.csv"))
        with samples_csv.open() as handle:
            assert len(list(csv.DictReader(handle))) == len(labels)


# --------------------------------------------------------------------------- snapshots

SYNTH_NAMES = ["circle", "square", "triangle", "star", "cross", "ring", "crescent", "heart",
               "arrow", "hourglass"]


def make_synthetic_session(folder: Path, name: str = "synth", config=None) -> Path:  # noqa: ANN001
    """A complete session from known arrays: d=32 activations, h=64 SAE features, 10 classes.

    Class c's activations point along decoder column 6c+1, and the classifier row of c is that
    column, so the matrix, the edit curves and α_crit are all well defined without training.
    """
    rng = np.random.RandomState(0)
    C, d, h, per_class = len(SYNTH_NAMES), 32, 64, 6
    D = rng.normal(size=(d, h))
    D /= np.linalg.norm(D, axis=0, keepdims=True)
    owners = [6 * c + 1 for c in range(C)]
    labels = np.repeat(np.arange(C), per_class)
    A = np.stack([3.0 * D[:, owners[c]] + 0.4 * rng.normal(size=d) for c in labels]).astype(np.float32)
    W = (D[:, owners].T + 0.05 * rng.normal(size=(C, d))).astype(np.float32)
    b = np.zeros(C, dtype=np.float32)
    u = A.astype(np.float64) @ D
    M = class_means(u, labels, C)
    top = top_activating(u, 16)
    path = make_session(folder, name, config or tiny_config(name))
    with Session.open(path) as session, session.transaction() as tx:
        tx.write_json("class_names", SYNTH_NAMES)
        tx.write_json("backbone/head", "fc")
        tx.write_arrays("backbone/state_dict", {"fc.weight": W, "fc.bias": b})
        tx.write_arrays("activations/test", {"a": A, "logits": A @ W.T + b, "labels": labels})
        tx.write_arrays("activations/train", {"a": A, "logits": A @ W.T + b, "labels": labels})
        tx.write_arrays("sae/weights", {
            "encoder.weight": D.T.astype(np.float32), "encoder.bias": np.zeros(h, np.float32),
            "decoder.weight": D.astype(np.float32), "decoder.bias": np.zeros(d, np.float32)})
        tx.write_array("rankings/class_means", M)
        tx.write_array("rankings/dominant", dominant_features(M))
        tx.write_array("rankings/top_pos", top["pos"])
        tx.write_array("rankings/top_neg", top["neg"])
        for stage in ("data", "backbone", "activations", "sae", "rankings"):
            tx.set_stage(stage, "done", "synthetic")
    return path


@pytest.fixture
def synth_folder(synth_session_folder: Path) -> Path:
    return synth_session_folder  # conftest: the synthetic session in sessions/


def synth_app(folder: Path) -> SalveApp:
    return SalveApp(sessions_folder=folder, start_session="synth", clock=lambda: 1_700_000_000.0)


def test_synthetic_session_has_a_clean_class_basis(synth_folder: Path) -> None:
    with Session.open(synth_folder / "synth.h5", read_only=True) as session:
        dominant = session.read_array("rankings/dominant")
    assert dominant.tolist() == [6 * c + 1 for c in range(10)]


def test_matrix_snapshot(snap_compare, synth_folder: Path) -> None:
    async def open_matrix(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen))
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, MatrixScreen) and pilot.app.screen.loaded)
        await pilot.press("down", "right")
        await pilot.pause(0.1)
        with Session.open(synth_folder / "synth.h5", read_only=True) as ro:
            means = np.asarray(ro.read_array("rankings/class_means"))
        text = screen_text(pilot.app)
        assert f"square · feature 2 · μ = {means[1, 2]:.3g}" in text and "dominant for no class" in text
        for c, name in enumerate(SYNTH_NAMES):  # one ◆ per class row, at the class's dominant column
            row = next(line for line in text.splitlines() if line.startswith(name + " "))
            assert row.count("◆") == 1
            axis = next(line for line in text.splitlines() if line.strip().startswith("0 "))
            assert row.index("◆") == axis.index("0") + 6 * c + 1

    assert snap_compare(synth_app(synth_folder), terminal_size=SIZE, run_before=open_matrix)


def test_edit_preview_snapshot(snap_compare, synth_folder: Path) -> None:
    async def open_edit(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen))
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, EditPreviewScreen))
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.curve is not None and screen.effect is not None)
        await pilot.press(*["plus"] * 12)
        await wait_for(pilot, lambda: screen.effect is not None and screen.effect.spec.alpha == screen.alpha,
                       what="the effect at the new α")
        await pilot.pause(0.1)
        with Session.open(synth_folder / "synth.h5", read_only=True) as ro:
            x = load_inputs(ro)
        ref = edit_effect(x.A, x.labels, x.W, x.b, x.D, screen.spec)
        text = screen_text(pilot.app)
        for c, name in enumerate(SYNTH_NAMES):
            before, after = (100 * float(v) for v in (ref.accuracy_before[c], ref.accuracy_after[c]))
            row = next(line for line in text.splitlines() if line.startswith(f" {name} ") and "%" in line)
            assert row.split()[1:3] == [f"{before:.1f}%", f"{after:.1f}%"], name
        assert f"α={screen.alpha:.4g}" in text and screen.alpha > 0

    assert snap_compare(synth_app(synth_folder), terminal_size=SIZE, run_before=open_edit)


def test_alpha_crit_snapshot(snap_compare, synth_folder: Path) -> None:
    with Session.open(synth_folder / "synth.h5") as session:
        run_alpha_crit(session)

    async def open_crit(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen))
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, AlphaCritScreen) and pilot.app.screen.loaded)
        await pilot.press("s")
        await pilot.pause(0.1)
        with Session.open(synth_folder / "synth.h5", read_only=True) as ro:
            x = load_inputs(ro)
        text = screen_text(pilot.app)
        for c in (0, 5):
            ref = class_alpha_crit(x.A, x.labels, x.W, x.b, x.D, c, 6 * c + 1, "suppress", "linear")
            finite = ref.analytic[torch.isfinite(ref.analytic)].double()
            cells = line_with(text, SYNTH_NAMES[c])
            assert cells[1:5] == [str(6 * c + 1), "6", str(len(finite)), f"{float(finite.quantile(0.5)):.3g}"]
        rows = text.split("α numer")[1].splitlines()[1:8]  # the per-sample table, after `s` sorts it
        numerical = [float(line.split()[6]) for line in rows]
        assert numerical == sorted(numerical)

    assert snap_compare(synth_app(synth_folder), terminal_size=SIZE, run_before=open_crit)


async def test_heatmap_scrolls_to_keep_the_cursor_visible(synth_folder: Path) -> None:
    """With more features than columns, End scrolls right and the status names the shown range."""
    app = synth_app(synth_folder)
    async with app.run_test(size=(60, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen) and app.screen.loaded)
        heatmap = app.screen.query_one(Heatmap)
        assert heatmap.cell_width() == 1 and heatmap.visible_columns() < 64
        await pilot.press("end")
        start, stop = heatmap.visible_range()
        assert stop == 64 and start > 0
        status = str(app.screen.query_one("#matrix-status", Static).render())
        assert re.search(r"showing \d+–63", status), status
