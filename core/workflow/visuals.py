"""Session-level validation visuals: saliency PNGs, activation maximisation, top samples, figure
exports and the ground-truth scores of Shapes sessions (SPEC §6, §8).

The CLI (``salve_tui.cli.visuals``) and the TUI both call these functions; the maths lives in
``core.validate.saliency``, ``core.validate.actmax``, ``core.validate.groundtruth`` and the drawing in ``core.workflow.figures``.
Files go to the session's export folder (``<name>.exports/heatmaps`` for saliency overlays,
``<name>.exports/figures`` for everything else) under descriptive names, unless the caller
passes ``out``: nothing is ever written anywhere else.

The model, SAE and dataset of a session are loaded once per process and cached, keyed on the
session file and the timestamps of the stages that produced them, so a TUI that asks for many
heatmaps reloads nothing. The cached model is shared: every use takes :data:`MODEL_LOCK`,
because saliency and activation maximisation attach hooks to it.

Ground truth (:func:`run_groundtruth`) is stored as ``json/groundtruth/results`` (everything),
``groundtruth/auroc`` (the latent × concept AUROC table) and a compact ``groundtruth`` entry of
the session summary, which ``salve info --json`` shows.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.jobs import CancelToken, ProgressFn, ProgressReporter, check_cancel
from core.store.session import Session, SessionError

HEATMAPS_DIR = "heatmaps"
FIGURES_DIR = "figures"
TOP_SAMPLES_SHOWN = 8
ACTMAX_CELL_INCHES = 1.6
MODEL_LOCK = threading.RLock()  # hooks make a shared model single-use at a time
_CACHE_SIZE = 2
_assets_cache: OrderedDict[tuple[Any, ...], VisualAssets] = OrderedDict()
_ASSET_STAGES = ("data", "backbone", "sae", "rankings")


# ----------------------------------------------------------------------------- inputs


@dataclass
class VisualAssets:
    """What every visual needs: the classifier (eval, on its device), the SAE (same device),
    the dataset bundle (test split = the samples the rankings index) and the class names."""

    model: torch.nn.Module
    sae: torch.nn.Module
    bundle: Any
    class_names: list[str]
    image_size: int
    device: torch.device

    @property
    def n_features(self) -> int:
        return int(self.sae.encoder.out_features)

    @property
    def test(self) -> Any:
        return self.bundle.test


def require_stages(session: Session, stages: Sequence[str] = ("backbone", "sae", "rankings")) -> None:
    """Visuals need a trained backbone and SAE; name the missing stage and the command."""
    states = session.stages()
    for stage in stages:
        state = states.get(stage)
        if state is None or state.state != "done":
            now = "missing" if state is None else state.state
            raise SessionError(
                f"session {session.name} needs the '{stage}' stage done first (it is {now}); "
                f"run `salve run {session.name}`"
            )


def load_assets(session: Session, device: str | torch.device | None = None) -> VisualAssets:
    """Model, SAE and data of ``session``, cached while their stages are unchanged."""
    from core.device import resolve_device
    from core.workflow.pipeline import load_data, load_model, load_sae

    require_stages(session)
    target = torch.device(device) if device is not None else resolve_device(session.config.device)
    states = session.stages()
    stamps = tuple(states[s].updated if s in states else None for s in _ASSET_STAGES)
    key = (str(Path(session.path).resolve()), stamps, str(target))
    with MODEL_LOCK:
        cached = _assets_cache.get(key)
        if cached is not None:
            _assets_cache.move_to_end(key)
            return cached
        config = session.config
        model = load_model(session, target)
        sae = load_sae(session).to(target).eval()
        assets = VisualAssets(
            model=model,
            sae=sae,
            bundle=load_data(config),
            class_names=[str(c) for c in session.read_json("class_names")],
            image_size=int(config.data.image_size),
            device=target,
        )
        _assets_cache[key] = assets
        while len(_assets_cache) > _CACHE_SIZE:
            _assets_cache.popitem(last=False)
        return assets


def clear_asset_cache() -> None:
    with MODEL_LOCK:
        _assets_cache.clear()


def check_sample(assets: VisualAssets, sample: int) -> int:
    n = len(assets.test)
    if not 0 <= int(sample) < n:
        raise ValueError(
            f"test sample {sample} is out of range: this session's test split has {n} images "
            f"(0..{n - 1})"
        )
    return int(sample)


def check_feature(assets: VisualAssets, feature: int) -> int:
    h = assets.n_features
    if not 0 <= int(feature) < h:
        raise ValueError(
            f"feature {feature} is out of range: the SAE has {h} latent features (0..{h - 1})"
        )
    return int(feature)


def resolve_class(class_names: Sequence[str], value: str | int) -> int:
    """A class by name (case-insensitive) or index, with the valid ones listed on error."""
    from core.workflow.control import resolve_class as resolve

    return resolve(class_names, value)


def _target_path(out: str | Path | None, default: Path) -> Path:
    """``out`` as given (a folder gets the default name inside it), else the default path."""
    if out is None:
        return default
    path = Path(out)
    if path.is_dir():
        return path / default.name
    if path.suffix.lower() != ".png":
        raise ValueError(f"output '{path}' must be a .png file (or an existing folder)")
    return path


def head_input_and_logits(
    model: torch.nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The activation ``a`` entering the model's final ``nn.Linear``, and the logits, from one
    forward pass (the SAE latents of the sample are ``encode(a)``)."""
    from core.discover.backbone import final_linear

    captured: list[torch.Tensor] = []
    _, _, linear = final_linear(model)
    handle = linear.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0]))
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        handle.remove()
    return captured[-1], logits


# ----------------------------------------------------------------------------- saliency


@dataclass
class SaliencyResult:
    """One test sample's Grad-FAM (feature) or Grad-CAM (class) map, ready to draw."""

    sample: int
    method: str  # "Grad-FAM" or "Grad-CAM"
    target: int  # feature index (Grad-FAM) or class index (Grad-CAM)
    layer: str
    label: int
    prediction: int
    score: float  # u_k (Grad-FAM) or the class logit (Grad-CAM) on this sample
    image: np.ndarray  # (H, W, 3) uint8
    heat: np.ndarray  # (H, W) in [0, 1]

    @property
    def feature(self) -> int | None:
        """The SAE feature of a Grad-FAM map (None for Grad-CAM), so callers need not check
        ``method`` before reading ``target``."""
        return self.target if self.method == "Grad-FAM" else None

    @property
    def latent(self) -> float | None:
        """``u_k`` of the sample for a Grad-FAM map (None for Grad-CAM)."""
        return self.score if self.method == "Grad-FAM" else None

    def title(self, class_names: Sequence[str]) -> str:
        what = (
            f"feature {self.target} (u = {self.score:+.3g})"
            if self.method == "Grad-FAM"
            else f"class {class_names[self.target]} (logit {self.score:+.3g})"
        )
        return (
            f"{self.method} · {what} · layer {self.layer}\n"
            f"test sample {self.sample}: {class_names[self.label]}, "
            f"predicted {class_names[self.prediction]}"
        )


def saliency_map(
    session: Session,
    sample: int,
    feature: int | None = None,
    class_: str | int | None = None,
    layer: str | None = None,
    assets: VisualAssets | None = None,
) -> SaliencyResult:
    """Grad-FAM of SAE ``feature`` or Grad-CAM of class ``class_`` for test sample ``sample``.

    ``layer`` defaults to SPEC §6's choice for the model and image size
    (:func:`core.validate.saliency.default_target_layer`).
    """
    from core.validate.saliency import default_target_layer, grad_cam, grad_fam

    if (feature is None) == (class_ is None):
        raise ValueError("give exactly one of a feature (Grad-FAM) or a class (Grad-CAM)")
    assets = assets or load_assets(session)
    sample = check_sample(assets, sample)
    classes = assets.class_names
    if feature is not None:
        target, method = check_feature(assets, feature), "Grad-FAM"
    else:
        target, method = resolve_class(classes, class_), "Grad-CAM"
    index = np.array([sample])
    batch = assets.test.load_batch(index).to(assets.device)
    with MODEL_LOCK:
        chosen = layer or default_target_layer(assets.model, assets.image_size)
        a, logits = head_input_and_logits(assets.model, batch)
        if method == "Grad-FAM":
            with torch.no_grad():
                score = float(assets.sae.encode(a)[0, target])
            heat = grad_fam(assets.model, assets.sae, batch, target, chosen)
        else:
            score = float(logits[0, target])
            heat = grad_cam(assets.model, batch, target, chosen)
    return SaliencyResult(
        sample=sample,
        method=method,
        target=target,
        layer=chosen,
        label=int(assets.test.labels[sample]),
        prediction=int(logits[0].argmax()),
        score=score,
        image=assets.test.raw_images(index)[0],
        heat=heat[0].detach().cpu().numpy(),
    )


def saliency_filename(result: SaliencyResult, class_names: Sequence[str]) -> str:
    from core.workflow.figures import safe_filename

    if result.method == "Grad-FAM":
        what = f"feature {result.target}"
        prefix = "gradfam"
    else:
        what = f"class {class_names[result.target]}"
        prefix = "gradcam"
    return safe_filename(prefix, f"sample {result.sample}", what, result.layer, ext=".png")


def save_saliency(
    session: Session,
    result: SaliencyResult,
    class_names: Sequence[str],
    out: str | Path | None = None,
) -> Path:
    """Draw ``result`` as an overlay PNG with a colour bar; default folder ``<exports>/heatmaps``."""
    from core.workflow.figures import save_heatmap_overlay

    default = session.exports_dir / HEATMAPS_DIR / saliency_filename(result, class_names)
    return save_heatmap_overlay(
        result.image,
        result.heat,
        _target_path(out, default),
        title=result.title(class_names),
        colorbar_label=f"{result.method} relevance (normalised)",
    )


def saliency_png(
    session: Session,
    sample: int,
    feature: int | None = None,
    class_: str | int | None = None,
    layer: str | None = None,
    out: str | Path | None = None,
) -> Path:
    """Write the Grad-FAM/Grad-CAM overlay (image + jet map + colour bar) of one test sample.

    Default location: ``<exports>/heatmaps/gradfam_sample-I_feature-K_<layer>.png`` (or
    ``gradcam_..._class-NAME_...``); ``out`` overrides it.
    """
    assets = load_assets(session)
    result = saliency_map(session, sample, feature, class_, layer, assets)
    return save_saliency(session, result, assets.class_names, out)


# ----------------------------------------------------------------------------- activation max


def feature_sign(session: Session, feature: int) -> int:
    """+1 or −1: the sign of the feature's mean latent in the class that uses it most.

    Activation maximisation then drives ``u_k`` the way that class does (a feature with a
    negative class mean is "on" when ``u_k`` is very negative).
    """
    means = np.asarray(session.read_array("rankings/class_means"), dtype=np.float64)
    if not 0 <= int(feature) < means.shape[1]:
        raise ValueError(
            f"feature {feature} is out of range: the SAE has {means.shape[1]} latent features "
            f"(0..{means.shape[1] - 1})"
        )
    column = np.nan_to_num(means[:, int(feature)], nan=0.0)
    if not column.any():
        return 1
    return 1 if column[int(np.argmax(np.abs(column)))] >= 0 else -1


def default_actmax_config(session: Session, feature: int, **overrides: Any) -> Any:
    """The paper's activation-maximisation settings at the session's image size, driving
    ``u_k`` in the direction of :func:`feature_sign`; ``overrides`` replace any field."""
    from core.validate.actmax import ActMaxConfig

    settings: dict[str, Any] = {
        "image_size": int(session.config.data.image_size),
        "sign": feature_sign(session, feature),
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return ActMaxConfig(**settings)


def run_actmax(
    session: Session,
    feature: int,
    config: Any = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Any:
    """Activation maximisation of ``feature`` (SPEC §6) → :class:`core.validate.actmax.ActMaxResult`."""
    from core.validate.actmax import activation_maximization

    assets = load_assets(session)
    feature = check_feature(assets, feature)
    config = config or default_actmax_config(session, feature)
    if config.image_size != assets.image_size:
        raise ValueError(
            f"activation maximisation image size {config.image_size} differs from the "
            f"session's {assets.image_size} px, which the model was trained on"
        )
    with MODEL_LOCK:
        return activation_maximization(
            assets.model, assets.sae, feature, config, progress=progress, cancel=cancel
        )


def actmax_path(session: Session, feature: int, seed: int = 0) -> Path:
    """Where :func:`save_actmax` writes ``feature``'s figure by default: the one place the CLI
    and the TUI both write and read activation-maximisation results."""
    from core.workflow.figures import safe_filename

    name = safe_filename("actmax", f"feature {int(feature)}", f"seed {seed}", ext=".png")
    return session.exports_dir / FIGURES_DIR / name


def save_actmax(
    session: Session, result: Any, config: Any, out: str | Path | None = None
) -> Path:
    """The snapshots of an activation-maximisation run side by side, the final one labelled
    with its latent value; default ``<exports>/figures/actmax_feature-K_seed-S.png``."""
    from core.workflow.figures import save_image_grid

    feature = result.features[0]
    images = [snap[0].permute(1, 2, 0).clamp(0, 1).numpy() for _, snap in result.snapshots]
    labels = [f"step {step}" for step, _ in result.snapshots]
    labels[-1] = (
        f"final u={float(result.final_activation[0]):+.3g}\n"
        f"(start {float(result.start_activation[0]):+.3g})"
    )
    goal = "maximise" if config.sign > 0 else "minimise"
    return save_image_grid(
        images,
        labels,
        _target_path(out, actmax_path(session, feature, config.seed)),
        ncols=len(images),
        title=f"activation maximisation: {goal} u_{feature}, {config.steps} steps",
        cell_inches=ACTMAX_CELL_INCHES,
    )


def actmax_png(
    session: Session,
    feature: int,
    out: str | Path | None = None,
    config: Any = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Path:
    """Run :func:`run_actmax` and write :func:`save_actmax`'s figure; returns its path."""
    config = config or default_actmax_config(session, feature)
    result = run_actmax(session, feature, config, progress, cancel)
    return save_actmax(session, result, config, out)


# ----------------------------------------------------------------------------- top samples


def top_samples_png(
    session: Session, feature: int, out: str | Path | None = None, k: int = TOP_SAMPLES_SHOWN
) -> Path:
    """The ``k`` test samples with the highest and the lowest ``u_feature``, labelled with
    their class and latent value. Default file: ``<exports>/figures/top_samples_feature-K.png``.
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
        _target_path(out, session.exports_dir / FIGURES_DIR / name),
        feature_name=f"feature {feature}",
    )


# ----------------------------------------------------------------------------- figure export


def feature_class_matrix_png(session: Session, out: str | Path | None = None) -> Path:
    """The feature–class matrix μ as a heatmap with each class's dominant feature boxed;
    default ``<exports>/figures/feature_class_matrix.png``."""
    from core.workflow.figures import save_feature_class_matrix

    require_stages(session, ("rankings",))
    names = [str(c) for c in session.read_json("class_names")]
    means = np.asarray(session.read_array("rankings/class_means"), dtype=np.float64)
    dominant = [int(k) for k in session.read_array("rankings/dominant")]
    default = session.exports_dir / FIGURES_DIR / "feature_class_matrix.png"
    return save_feature_class_matrix(means, names, _target_path(out, default), dominant=dominant)


def class_gradfam_png(
    session: Session, class_index: int, assets: VisualAssets | None = None
) -> Path | None:
    """Grad-FAM of class ``class_index``'s dominant feature on the test sample that drives it
    most (highest ``u_k``, or lowest when the class mean is negative), into
    ``<exports>/heatmaps``; None when the class has no dominant feature."""
    from core.workflow.figures import safe_filename, save_heatmap_overlay

    k = int(session.read_array("rankings/dominant")[class_index])
    if k < 0:
        return None
    mean = float(session.read_array("rankings/class_means")[class_index, k])
    top = session.read_array("rankings/top_neg" if mean < 0 else "rankings/top_pos")
    sample = int(top[k][0])
    assets = assets or load_assets(session)
    names = assets.class_names
    result = saliency_map(session, sample, feature=k, assets=assets)
    path = session.exports_dir / HEATMAPS_DIR / safe_filename(
        "gradfam", f"class {names[class_index]}", f"feature {k}", f"sample {sample}",
        result.layer, ext=".png",
    )
    return save_heatmap_overlay(result.image, result.heat, path, title=result.title(names))


def alpha_crit_png(
    session: Session, mode: str = "suppress", modulation: str = "linear"
) -> Path | None:
    """The stored α_crit distributions of one setting (analytic beside numerical, α50 marked)
    into ``<exports>/figures``; None when none are stored for it."""
    from core.workflow import control
    from core.workflow.figures import safe_filename, save_alpha_crit_distributions

    results = control.load_alpha_crit(session, mode, modulation)
    if not results:
        return None
    names = [str(c) for c in session.read_json("class_names")]
    setting = f"{mode}-{modulation}"
    return save_alpha_crit_distributions(
        [r.analytic.numpy() for r in results],
        [r.numerical.numpy() for r in results],
        [f"{names[r.target_class]} (f{r.feature})" for r in results],
        session.exports_dir / FIGURES_DIR / safe_filename("alpha_crit", setting, ext=".png"),
        alpha50=[math.nan if r.alpha50 is None else r.alpha50 for r in results],
        title=f"critical threshold α_crit ({mode}, {modulation})",
    )


def figure_gaps(session: Session) -> list[str]:
    """The figure groups :func:`export_figures` will skip because their data is not in the
    session yet, each with the command that produces it."""
    from core.workflow.control import edit_records, list_sweeps

    gaps = []
    name = session.name
    if not list_sweeps(session):
        gaps.append(f"suppression curves: no sweeps recorded (run `salve sweep {name} --class C`)")
    if not session.read_json("control/alpha_crit_index", {}):
        gaps.append(f"α_crit distributions: none recorded (run `salve alpha-crit {name}`)")
    if not session.read_json("control/robustness", {}):
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
    from core.workflow import control
    from core.workflow.figures import (
        safe_filename,
        save_confusion_matrices,
        save_suppression_curves,
    )

    require_stages(session)
    figures = session.exports_dir / FIGURES_DIR
    names = [str(c) for c in session.read_json("class_names")]
    dominant = [int(k) for k in session.read_array("rankings/dominant")]
    sweeps = control.list_sweeps(session)
    crit_settings = sorted(session.read_json("control/alpha_crit_index", {}) or {})
    robustness = session.read_json("control/robustness", {}) or {}
    edits = control.list_edits(session)
    distinct = sorted({k for k in dominant if k >= 0})
    with_feature = [c for c, k in enumerate(dominant) if k >= 0]

    jobs: list[tuple[str, Any]] = [("feature-class matrix", None)]
    jobs += [(f"top samples feature {k}", ("top", k)) for k in distinct]
    jobs += [(f"Grad-FAM {names[c]}", ("gradfam", c)) for c in with_feature]
    jobs += [(f"sweep {key}", ("sweep", key)) for key in sorted(sweeps)]
    jobs += [(f"α_crit {s}", ("crit", s)) for s in crit_settings]
    jobs += [(f"robustness {s}", ("robust", s)) for s in sorted(robustness)]
    jobs += [(f"confusion edit {i}", ("edit", i)) for i in range(len(edits))]
    reporter = ProgressReporter("export figures", len(jobs), progress)
    written: list[Path] = []
    for done, (label, job) in enumerate(jobs):
        check_cancel(cancel)
        if job is None:
            written.append(feature_class_matrix_png(session))
        elif job[0] == "top":
            written.append(top_samples_png(session, job[1]))
        elif job[0] == "gradfam":
            written.append(class_gradfam_png(session, job[1]))
        elif job[0] == "sweep":
            written += sweep_figures(session, job[1], names, figures)
        elif job[0] == "crit":
            mode, modulation = job[1].split("-", 1)
            crit = alpha_crit_png(session, mode, modulation)
            if crit is not None:
                written.append(crit)
        elif job[0] == "robust":
            mode, modulation = job[1].split("-", 1)
            for c, arrays in sorted(control.load_robustness(session, mode, modulation).items()):
                path = figures / safe_filename("robustness", job[1], names[c], ext=".png")
                written.append(
                    save_suppression_curves(
                        arrays["alphas"].numpy(),
                        arrays["accuracy_mean"].numpy().T,
                        names,
                        path,
                        target=c,
                        std=arrays["accuracy_std"].numpy().T,
                        title=f"{mode} {names[c]}'s dominant feature: mean ± std over "
                        f"{arrays['n_seeds']} SAE seeds",
                    )
                )
        elif job[0] == "edit":
            spec = edits[job[1]]
            effect = control.preview_edit(session, spec)
            path = figures / safe_filename("confusion", f"edit {job[1]}", _describe_edit(spec),
                                           ext=".png")
            written.append(
                save_confusion_matrices(
                    {"before": effect.confusion_before.numpy(),
                     "after": effect.confusion_after.numpy()},
                    names,
                    path,
                    title=f"edit {job[1]}: {_describe_edit(spec)}",
                )
            )
        reporter.report(done + 1, label)
    return written


def _describe_edit(spec: Any) -> str:
    """``salve suppress feature 3 α=2``, ``rome suppress class 4 value=-10``, ..."""
    parts = [spec.method, spec.mode]
    if spec.features:
        parts.append("feature " + "+".join(str(k) for k in spec.features))
    elif "target_class" in spec.extra:
        parts.append(f"class {spec.extra['target_class']}")
    strength = {"salve": "α", "steer": "β"}.get(spec.method, "value")
    parts.append(f"{strength}={spec.alpha:g}")
    return " ".join(parts)


def sweep_figures(
    session: Session, key: str, names: list[str] | None = None, folder: Path | None = None
) -> list[Path]:
    """A stored sweep as a per-class accuracy figure and, with a target class, the share of
    its samples predicted as each class (paper Fig. 4b); default folder ``<exports>/figures``."""
    from core.workflow import control
    from core.workflow.figures import (
        safe_filename,
        save_prediction_distribution,
        save_suppression_curves,
    )

    names = names if names is not None else [str(c) for c in session.read_json("class_names")]
    folder = folder if folder is not None else session.exports_dir / FIGURES_DIR
    result = control.load_sweep(session, key)
    target = result.target_class
    a50 = control.curve_alpha50(result)[target] if target is not None else None
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
            xlabel={"alpha": "α", "beta": "β"}.get(result.param_name, result.param_name),
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
            )
        )
    return written


# ----------------------------------------------------------------------------- ground truth


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf → None, numpy scalars → Python, tuples → lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def require_shapes(session: Session, source: Any = None) -> None:
    """Ground truth exists only for the embedded Shapes data; say so before loading anything."""
    kind = session.config.data.kind
    if kind != "shapes" or (source is not None and getattr(source, "concept_present", None) is None):
        raise ValueError(
            f"session {session.name} uses '{kind}' data, which has no ground-truth concept masks; "
            "ground-truth scores exist only for the embedded Shapes dataset (create such a "
            "session with `salve demo` or `salve new NAME --data shapes`)"
        )


def run_groundtruth(
    session: Session,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    *,
    layer: str | None = None,
    max_samples: int | None = None,
    record: bool = True,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Score the SAE features against Shapes' ground truth (SPEC §8), on the test split.

    * per concept: the latent whose value best separates images with and without it (AUROC of
      latent vs presence, sign-free ``strength = max(AUROC, 1 − AUROC)``);
    * per class: Grad-FAM of its dominant feature and Grad-CAM of the true class at ``layer``
      (default per SPEC §6), pointing game (with its chance rate) and energy inside the mask of
      the class's shape;
    * shared part: whether one latent tracks the tower within each of its two classes.

    ``max_samples`` scores a seeded random subset of the test split (all images by default).
    With ``record`` the result is committed to the session; returns the JSON-safe result.
    """
    from core.discover.sae import encode
    from core.discover.shapes import SHARED_PART, SHARED_PART_CLASSES
    from core.validate.groundtruth import (
        auroc_matrix,
        best_latent_per_concept,
        saliency_localisation,
    )
    from core.validate.groundtruth import shared_part_tracking as track_part
    from core.validate.saliency import default_target_layer
    from core.workflow.pipeline import load_activations

    if record and session.read_only:
        raise SessionError(
            f"session {session.name} is open read-only, so ground-truth scores cannot be "
            "stored; open it as the writer or pass record=False (CLI: --no-record)"
        )
    require_shapes(session)
    assets = load_assets(session)
    source = assets.test
    require_shapes(session, source)
    names = assets.class_names
    concepts = list(source.concept_names)
    labels_all = np.asarray(source.labels, dtype=np.int64)
    presence_all = np.asarray(source.concept_present, dtype=bool)
    n_total = len(labels_all)
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be ≥ 1, got {max_samples}")
    if max_samples is not None and max_samples < n_total:
        subset = np.sort(np.random.default_rng(0).choice(n_total, max_samples, replace=False))
    else:
        subset = np.arange(n_total)
    labels, presence = labels_all[subset], presence_all[subset]

    cached = load_activations(session, "test")
    if not np.array_equal(np.asarray(cached["labels"]), labels_all):
        raise SessionError(
            f"session {session.name}'s cached test activations do not match its dataset "
            f"(labels differ); rerun `salve run {session.name} activations --force`"
        )
    with torch.no_grad():
        latents = encode(assets.sae, cached["a"][subset]).cpu().numpy().astype(np.float64)

    # 1. Best latent per concept.
    table = auroc_matrix(latents, presence)  # (h, n_concepts)
    matches = best_latent_per_concept(latents, presence, concepts)
    concept_rows = {
        m.name: {"latent": m.latent, "auroc": m.auroc, "sign": m.sign, "strength": m.strength}
        for m in matches
    }

    # 2. Localisation of each class's dominant feature vs Grad-CAM of the true class.
    dominant = [int(k) for k in session.read_array("rankings/dominant")]
    means = np.asarray(session.read_array("rankings/class_means"), dtype=np.float64)
    class_concept = []
    for name in names:
        if name not in concepts:
            raise ValueError(f"class '{name}' has no ground-truth concept of the same name")
        class_concept.append(concepts.index(name))
    usable = np.array([dominant[c] >= 0 for c in labels])
    scored = subset[usable]
    masks = np.empty((len(scored), assets.image_size, assets.image_size), dtype=bool)
    for start in range(0, len(scored), 256):
        chunk = scored[start : start + 256]
        dense = source.concept_masks(chunk)
        own = np.asarray([class_concept[c] for c in labels_all[chunk]])
        masks[start : start + len(chunk)] = dense[np.arange(len(chunk)), own]
    with MODEL_LOCK:
        chosen_layer = layer or default_target_layer(assets.model, assets.image_size)
        localisation = saliency_localisation(
            assets.model,
            assets.sae,
            lambda idx: source.load_batch(scored[idx]),
            labels_all[scored],
            masks,
            [max(k, 0) for k in dominant],
            names,
            layer=chosen_layer,
            batch_size=batch_size,
            progress=progress,
            cancel=cancel,
        )

    per_class = {}
    for c, name in enumerate(names):
        k = dominant[c]
        rows = labels == c
        entry: dict[str, Any] = {"dominant_feature": k, "n_images": int(rows.sum())}
        if k >= 0 and rows.any():
            sign = 1 if means[c, k] >= 0 else -1
            raw = table[k, class_concept[c]]
            entry["dominant_auroc_for_shape"] = raw if sign > 0 else 1.0 - raw
            entry["grad_fam"] = localisation["grad_fam"].per_class.get(name)
            entry["grad_cam"] = localisation["grad_cam"].per_class.get(name)
        per_class[name] = entry

    # 3. Shared part across its two classes.
    shared: dict[str, Any] = {"concept": SHARED_PART, "classes": list(SHARED_PART_CLASSES)}
    if SHARED_PART in concepts and all(c in names for c in SHARED_PART_CLASSES):
        pair = (names.index(SHARED_PART_CLASSES[0]), names.index(SHARED_PART_CLASSES[1]))
        part = concepts.index(SHARED_PART)
        try:
            best = track_part(latents, presence, labels, part, pair)
            shared["best_latent"] = {
                "latent": best.latent,
                "sign": best.sign,
                "auroc_overall": best.auroc_overall,
                "auroc_per_class": dict(zip(SHARED_PART_CLASSES, best.auroc_per_class, strict=True)),
                "tracks_both": best.tracks_both,
                "threshold": best.threshold,
            }
            shared["dominant_features"] = {}
            for c in pair:
                if dominant[c] < 0:
                    continue
                own = track_part(latents, presence, labels, part, pair, latent=dominant[c])
                shared["dominant_features"][names[c]] = {
                    "latent": own.latent,
                    "auroc_per_class": dict(
                        zip(SHARED_PART_CLASSES, own.auroc_per_class, strict=True)
                    ),
                    "tracks_both": own.tracks_both,
                }
        except ValueError as exc:
            shared["error"] = str(exc)
    else:
        shared["error"] = "this dataset has no shared part concept"

    fam, cam = localisation["grad_fam"].overall, localisation["grad_cam"].overall
    result = _clean(
        {
            "layer": chosen_layer,
            "n_images": int(len(subset)),
            "n_scored": int(len(scored)),
            "split": "test",
            "pointing_game": {
                "grad_fam": {**fam, "method": localisation["grad_fam"].method},
                "grad_cam": {**cam, "method": localisation["grad_cam"].method},
            },
            "concepts": concept_rows,
            "classes": per_class,
            "shared_part": shared,
        }
    )
    if record:
        brief = {
            "layer": result["layer"],
            "n_images": result["n_images"],
            "pointing_game": {
                key: {
                    stat: result["pointing_game"][key][stat]
                    for stat in ("hit_rate", "chance_rate", "ratio_to_chance", "energy_inside",
                                 "mask_area_share")
                }
                for key in ("grad_fam", "grad_cam")
            },
            "concepts": {
                name: {k: row[k] for k in ("latent", "auroc", "strength")}
                for name, row in result["concepts"].items()
            },
            "shared_part": {
                key: result["shared_part"].get("best_latent", {}).get(key)
                for key in ("latent", "auroc_per_class", "tracks_both")
            },
        }
        with session.transaction() as tx:
            tx.write_json("groundtruth/results", result)
            tx.write_array("groundtruth/auroc", table.astype(np.float32))
            tx.write_array("groundtruth/sample_index", subset.astype(np.int64))
            tx.update_json("summary", groundtruth=brief)
    return result


def stored_groundtruth(session: Session) -> dict[str, Any] | None:
    """The last recorded :func:`run_groundtruth` result, or None."""
    return session.read_json("groundtruth/results")
