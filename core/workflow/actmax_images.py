"""Session activation maximisation: the image a feature responds to most, cached as a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.jobs import CancelToken, ProgressFn, check_cancel
from core.store.session import Session
from core.workflow.assets import FIGURES_DIR, MODEL_LOCK, check_feature, load_assets, target_path

ACTMAX_CELL_INCHES = 1.6

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
    check_cancel(cancel)  # loading the model and data takes seconds under load
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
    with its latent value; default ``<exports>/figures/actmax_feature-K_seed-S.png``, captioned
    with the session's quality warnings."""
    from core.workflow.figures import save_image_grid
    from core.workflow.quality import figure_warning_lines

    feature = result.features[0]
    images = [snap[0].permute(1, 2, 0).clamp(0, 1).numpy() for _, snap in result.snapshots]
    labels = [f"step {step}" for step, _ in result.snapshots]
    labels[-1] = (
        f"final u={float(result.final_activation[0]):+.3g}\n"
        f"(start {float(result.start_activation[0]):+.3g})"
    )
    goal = "maximise" if config.sign > 0 else "minimise"
    save_actmax_snapshots(session, result, config)
    return save_image_grid(
        images,
        labels,
        target_path(out, actmax_path(session, feature, config.seed)),
        ncols=len(images),
        title=f"activation maximisation: {goal} u_{feature}, {config.steps} steps",
        cell_inches=ACTMAX_CELL_INCHES,
        caption=figure_warning_lines(session),
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
    check_cancel(cancel)
    return save_actmax(session, result, config, out)


def actmax_snapshots_path(session: Session, feature: int, seed: int = 0) -> Path:
    """The raw snapshots of ``feature``'s act-max run as one PNG strip (no figure chrome), which
    the TUI draws as images; a JSON sidecar (same name, ``.json``) names their steps."""
    return actmax_path(session, feature, seed).with_suffix(".snapshots.png")


def save_actmax_snapshots(session: Session, result: Any, config: Any) -> Path:
    """Write the snapshots side by side at their pixel size (uint8 RGB) and the sidecar, each
    to a temp file that is fsynced and renamed."""
    import json

    feature = result.features[0]
    images = [
        (snap[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        for _, snap in result.snapshots
    ]
    path = actmax_snapshots_path(session, feature, config.seed)
    meta = {
        "feature": int(feature),
        "steps": [int(step) for step, _ in result.snapshots],
        "size": int(images[0].shape[0]),
        "start_activation": float(result.start_activation[0]),
        "final_activation": float(result.final_activation[0]),
        "sign": int(config.sign),
    }
    _write_atomic(path, lambda handle: _png(np.concatenate(images, axis=1), handle))
    _write_atomic(path.with_suffix(".json"), lambda handle: handle.write(json.dumps(meta).encode()))
    return path


def load_actmax_snapshots(session: Session, feature: int, seed: int = 0
                          ) -> tuple[list[np.ndarray], dict[str, Any]] | None:
    """The stored snapshots (H×W×3 uint8 each) and their sidecar, or None before any run."""
    import json

    from PIL import Image

    path = actmax_snapshots_path(session, feature, seed)
    sidecar = path.with_suffix(".json")
    if not (path.is_file() and sidecar.is_file()):
        return None
    meta = json.loads(sidecar.read_text())
    with Image.open(path) as image:
        strip = np.asarray(image.convert("RGB"))
    size = int(meta["size"])
    count = strip.shape[1] // size
    return [strip[:, i * size : (i + 1) * size] for i in range(count)], meta


def _png(image: np.ndarray, handle: Any) -> None:
    from PIL import Image

    Image.fromarray(image).save(handle, format="PNG")


def _write_atomic(path: Path, write: Any) -> None:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
