"""Paper figures from a session: matrix, top samples, α_crit, sweeps, Grad-FAM grids, in one export.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.jobs import CancelToken, ProgressFn, ProgressReporter, check_cancel
from core.store.session import Session
from core.workflow.assets import FIGURES_DIR, require_stages, target_path
from core.workflow.quality import figure_warning_lines
from core.workflow.results import ALPHA_CRIT, ROBUSTNESS
from core.workflow.saliency_maps import class_gradfam_png

TOP_SAMPLES_SHOWN = 8

def top_samples_png(
    session: Session, feature: int, out: str | Path | None = None, k: int = TOP_SAMPLES_SHOWN,
    caption: list[str] | None = None,
) -> Path:
    """The ``k`` test samples with the highest and the lowest ``u_feature``, labelled with
    their class and latent value. Default file: ``<exports>/figures/top_samples_feature-K.png``.
    ``caption``: lines under the figure (default: the session's quality warnings).
    """
    from core.workflow.figures import safe_filename, save_top_activating_grid
    from core.workflow.pipeline import load_activations, load_data, load_sae

    require_stages(session)
    sae = load_sae(session)
    h = int(sae.encoder.out_features)
    if not 0 <= int(feature) < h:
        raise ValueError(
            f"feature {feature} is out of range: the SAE has {h} latent features (0..{h - 1})"
        )
    feature = int(feature)
    top_pos = np.asarray(session.read_array("rankings/top_pos"))[feature, :k]
    top_neg = np.asarray(session.read_array("rankings/top_neg"))[feature, :k]
    test = load_activations(session, "test")
    names = [str(c) for c in session.read_json("class_names")]
    source = load_data(session.config).test
    rows = []
    for indices in (top_pos, top_neg):
        with torch.no_grad():
            u = sae.encode(torch.from_numpy(np.asarray(test["a"][indices], dtype=np.float32)))
        values = u[:, feature].numpy()
        labels = [
            f"#{i} {names[int(test['labels'][i])]}\nu={v:+.3g}"
            for i, v in zip(indices, values, strict=True)
        ]
        rows.append((list(source.raw_images(indices)), labels))
    name = safe_filename("top_samples", f"feature {feature}", ext=".png")
    return save_top_activating_grid(
        rows[0][0],
        rows[0][1],
        rows[1][0],
        rows[1][1],
        target_path(out, session.exports_dir / FIGURES_DIR / name),
        feature_name=f"feature {feature}",
        caption=figure_warning_lines(session) if caption is None else caption,
    )

def feature_class_matrix_png(
    session: Session, out: str | Path | None = None, caption: list[str] | None = None
) -> Path:
    """The feature–class matrix μ as a heatmap with each class's dominant feature boxed;
    default ``<exports>/figures/feature_class_matrix.png``, captioned with the warnings."""
    from core.workflow.figures import save_feature_class_matrix

    require_stages(session, ("rankings",))
    names = [str(c) for c in session.read_json("class_names")]
    means = np.asarray(session.read_array("rankings/class_means"), dtype=np.float64)
    dominant = [int(k) for k in session.read_array("rankings/dominant")]
    default = session.exports_dir / FIGURES_DIR / "feature_class_matrix.png"
    return save_feature_class_matrix(
        means, names, target_path(out, default), dominant=dominant,
        caption=figure_warning_lines(session) if caption is None else caption,
    )

def alpha_crit_png(
    session: Session, mode: str = "suppress", modulation: str = "linear",
    warnings: list[str] | None = None,
) -> Path | None:
    """The stored α_crit distributions of one setting (analytic beside numerical, α50 marked)
    into ``<exports>/figures``; None when none are stored for it."""
    from core.workflow.alpha_crit import current_per_class, load_alpha_crit, recorded_times
    from core.workflow.figures import safe_filename, save_alpha_crit_distributions

    stored = load_alpha_crit(session, mode, modulation)
    if not stored:
        return None
    dominant = [int(k) for k in session.read_array("rankings/dominant")]
    results = current_per_class(stored, dominant, recorded_times(session, mode, modulation))
    names = [str(c) for c in session.read_json("class_names")]
    setting = f"{mode}-{modulation}"
    return save_alpha_crit_distributions(
        [r.analytic.numpy() for r in results],
        [r.numerical.numpy() for r in results],
        [f"{names[r.target_class]} (f{r.feature})" for r in results],
        session.exports_dir / FIGURES_DIR / safe_filename("alpha_crit", setting, ext=".png"),
        alpha50=[math.nan if r.alpha50 is None else r.alpha50 for r in results],
        title=f"critical threshold α_crit ({mode}, {modulation})",
        caption=alpha_crit_caption(results, names)
        + (figure_warning_lines(session) if warnings is None else warnings),
    )


def alpha_crit_caption(results: list[Any], names: list[str]) -> list[str]:
    """Caption lines of an α_crit figure: excluded samples per reason and the analytic caveat."""
    lines = []
    ablated = [f"{names[r.target_class]} {int(r.total_ablation_mask.sum())}/{r.z.numel()}"
               for r in results if bool(r.total_ablation_mask.any())]
    if ablated:
        lines.append("excluded, root only at total ablation: " + ", ".join(ablated))
    notes = sorted({r.note for r in results if r.note})
    lines += [f"note: {n}" for n in notes]
    return lines


def figure_gaps(session: Session) -> list[str]:
    """The figure groups :func:`export_figures` will skip because their data is not in the
    session yet, each with the command that produces it."""
    from core.workflow.edits import edit_records
    from core.workflow.sweeps import list_sweeps

    gaps = []
    name = session.name
    if not list_sweeps(session):
        gaps.append(f"suppression curves: no sweeps recorded (run `salve sweep {name} --class C`)")
    if not ALPHA_CRIT.load(session):
        gaps.append(f"α_crit distributions: none recorded (run `salve alpha-crit {name}`)")
    if not ROBUSTNESS.load(session):
        gaps.append(f"seed-robustness curves: none recorded (run `salve robustness {name}`)")
    if not edit_records(session):
        gaps.append(
            f"confusion matrices: no edits recorded (run `salve edit {name} --class C --alpha A`)"
        )
    return gaps

def export_figures(
    session: Session, progress: ProgressFn | None = None, cancel: CancelToken | None = None
) -> list[Path]:
    """Every figure the session's data supports, into ``<exports>/figures`` and ``/heatmaps``.

    Always: the feature–class matrix, the top-activating grid of each dominant feature and the
    Grad-FAM overlay of each class's dominant feature on the test sample that drives it most.
    When the control commands stored them: suppression curves + prediction shares of every
    sweep, α_crit distributions per setting, seed-robustness curves (mean ± std) and the
    before/after confusion matrices of every recorded edit. :func:`figure_gaps` lists the
    groups left out. Existing files of the same name are overwritten.
    """
    from core.workflow.edits import list_edits
    from core.workflow.sweeps import list_sweeps

    require_stages(session)
    figures = session.exports_dir / FIGURES_DIR
    names = [str(c) for c in session.read_json("class_names")]
    dominant = [int(k) for k in session.read_array("rankings/dominant")]
    edits = list_edits(session)
    warnings = figure_warning_lines(session)  # computed once: every figure carries them

    # each job draws one figure (a path), several (a list) or none (None: nothing to draw)
    jobs: list[tuple[str, Callable[[], Path | list[Path] | None]]] = [
        ("feature-class matrix", partial(feature_class_matrix_png, session, caption=warnings))]
    jobs += [(f"top samples feature {k}", partial(top_samples_png, session, k, caption=warnings))
             for k in sorted({k for k in dominant if k >= 0})]
    jobs += [(f"Grad-FAM {names[c]}", partial(class_gradfam_png, session, c, caption=warnings))
             for c, k in enumerate(dominant) if k >= 0]
    jobs += [(f"sweep {key}", partial(sweep_figures, session, key, names, figures, warnings))
             for key in sorted(list_sweeps(session))]
    jobs += [(f"α_crit {s}", partial(alpha_crit_png, session, *s.split("-", 1), warnings))
             for s in sorted(ALPHA_CRIT.load(session))]
    jobs += [(f"robustness {s}", partial(robustness_figures, session, s, names, figures, warnings))
             for s in sorted(ROBUSTNESS.load(session))]
    jobs += [(f"confusion edit {i}", partial(edit_confusion_png, session, i, spec, names, figures, warnings))
             for i, spec in enumerate(edits)]
    reporter = ProgressReporter("export figures", len(jobs), progress)
    written: list[Path] = []
    for done, (label, job) in enumerate(jobs):
        check_cancel(cancel)
        drawn = job()
        written += drawn if isinstance(drawn, list) else [] if drawn is None else [drawn]
        reporter.report(done + 1, label)
    return written


def robustness_figures(session: Session, setting: str, names: list[str], figures: Path,
                       warnings: list[str]) -> list[Path]:
    """One mean ± std suppression-curve figure per class of a stored seed-robustness setting."""
    from core.workflow.figures import safe_filename, save_suppression_curves
    from core.workflow.robustness import load_robustness

    mode, modulation = setting.split("-", 1)
    return [save_suppression_curves(
        arrays["alphas"].numpy(), arrays["accuracy_mean"].numpy().T, names,
        figures / safe_filename("robustness", setting, names[c], ext=".png"),
        target=c, std=arrays["accuracy_std"].numpy().T,
        title=f"{mode} {names[c]}'s dominant feature: mean ± std over {arrays['n_seeds']} SAE seeds",
        caption=warnings,
    ) for c, arrays in sorted(load_robustness(session, mode, modulation).items())]


def edit_confusion_png(session: Session, number: int, spec: Any, names: list[str], figures: Path,
                       warnings: list[str]) -> Path:
    """The before/after confusion matrices of recorded edit ``number`` on the cached test split."""
    from core.workflow.edits import describe_spec, preview_edit
    from core.workflow.figures import safe_filename, save_confusion_matrices

    effect = preview_edit(session, spec)
    return save_confusion_matrices(
        {"before": effect.confusion_before.numpy(), "after": effect.confusion_after.numpy()},
        names, figures / safe_filename("confusion", f"edit {number}", describe_spec(spec), ext=".png"),
        title=f"edit {number}: {describe_spec(spec)}", caption=warnings,
    )


def _strength_label(result: Any) -> str:
    """A sweep's x-axis: its method's strength symbol (α, β, target)."""
    from core.control.methods.registry import get_method

    return get_method(result.method).symbol


def sweep_figures(
    session: Session, key: str, names: list[str] | None = None, folder: Path | None = None,
    warnings: list[str] | None = None,
) -> list[Path]:
    """A stored sweep as a per-class accuracy figure and, with a target class, the share of
    its samples predicted as each class (paper Fig. 4b); default folder ``<exports>/figures``.
    Every figure's caption carries ``warnings`` (default: the session's quality warnings)."""
    from core.workflow.figures import (
        safe_filename,
        save_prediction_distribution,
        save_suppression_curves,
    )
    from core.workflow.sweeps import curve_alpha50, load_sweep

    names = names if names is not None else [str(c) for c in session.read_json("class_names")]
    folder = folder if folder is not None else session.exports_dir / FIGURES_DIR
    result = load_sweep(session, key)
    warnings = figure_warning_lines(session) if warnings is None else warnings
    target = result.target_class
    a50 = curve_alpha50(result)[target] if target is not None else None
    alphas = result.alphas.numpy()
    title = f"{result.method} {result.mode}"
    if result.features:
        title += " feature " + "+".join(str(k) for k in result.features)
    if target is not None:
        title += f" (target {names[target]})"
    written = [
        save_suppression_curves(
            alphas,
            result.per_class_accuracy.numpy().T,
            names,
            folder / safe_filename("curve", key, ext=".png"),
            target=target,
            marker=a50,
            marker_label="α50" if a50 is not None else "",
            title=title,
            xlabel=_strength_label(result),
            caption=warnings,
        )
    ]
    if target is not None:
        written.append(
            save_prediction_distribution(
                alphas,
                result.target_prediction.numpy(),
                names,
                folder / safe_filename("predictions", key, ext=".png"),
                target=target,
                marker=a50,
                title=f"predictions for {names[target]} samples: {title}",
                caption=warnings,
            )
        )
        written.append(selectivity_png(session, result, key, folder, title, warnings))
    return written


def selectivity_png(session: Session, result: Any, key: str, folder: Path, title: str,
                    warnings: list[str] | None = None) -> Path:
    """Selectivity of a sweep with its controls (``selectivity_<key>.png``)."""
    from core.workflow.figures import safe_filename, save_selectivity_curves
    from core.workflow.selectivity import selectivity_lines, selectivity_report

    report = selectivity_report(session, result)
    rows = report["per_strength"]
    controls = {name: np.asarray([np.nan if v is None else v for v in c["target_accuracy"]])
                for name, c in (report["controls"] or {}).items()}
    return save_selectivity_curves(
        result.alphas.numpy(),
        np.asarray([np.nan if r["target_accuracy"] is None else r["target_accuracy"] for r in rows]),
        np.asarray([np.nan if r["worst_other_kept"] is None else r["worst_other_kept"] for r in rows]),
        controls,
        folder / safe_filename("selectivity", key, ext=".png"),
        window=report["selective_window"],
        title=f"selectivity: {title}",
        xlabel=_strength_label(result),
        caption=selectivity_lines(report)[1:]
        + (figure_warning_lines(session) if warnings is None else warnings),
    )
