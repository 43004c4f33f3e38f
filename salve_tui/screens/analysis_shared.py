"""Helpers shared by the analysis views: cached model/SAE/data for previews, Grad-FAM, formatting.

No view is registered here (the module is imported by view discovery like the other
``analysis_*`` modules, so it must stay free of module-level torch imports).

Previews (thumbnails, Grad-FAM of one sample) are read-only and run in screen thread workers, not
as app jobs: they write nothing, so they need not wait for — or block — the session's single
writer job. The model is shared between those workers, so saliency calls are serialised by a
lock (Grad-FAM registers hooks on the model).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.text import Text

if TYPE_CHECKING:
    from core.session import Session

_ASSET_STAGES = ("data", "backbone", "sae")
_CACHE_SIZE = 2
_assets_cache: OrderedDict[tuple[Any, ...], ValidationAssets] = OrderedDict()
_assets_lock = threading.Lock()
_saliency_lock = threading.Lock()


@dataclass
class ValidationAssets:
    """What previews need: the trained model (CPU, eval), the SAE, the dataset and names."""

    model: Any
    sae: Any
    bundle: Any
    class_names: list[str]
    image_size: int


def _assets_key(session: Session) -> tuple[Any, ...]:
    stages = session.stages()
    stamps = tuple(stages[s].updated if s in stages else None for s in _ASSET_STAGES)
    return (str(Path(session.path).resolve()), stamps)


def load_validation_assets(session: Session) -> ValidationAssets:
    """Model, SAE and dataset of ``session``, cached while the producing stages are unchanged."""
    from core.pipeline import load_data, load_model, load_sae

    key = _assets_key(session)
    with _assets_lock:
        cached = _assets_cache.get(key)
        if cached is not None:
            _assets_cache.move_to_end(key)
            return cached
        config = session.config
        assets = ValidationAssets(
            model=load_model(session, "cpu"),
            sae=load_sae(session),
            bundle=load_data(config),
            class_names=[str(c) for c in session.read_json("class_names")],
            image_size=config.data.image_size,
        )
        _assets_cache[key] = assets
        while len(_assets_cache) > _CACHE_SIZE:
            _assets_cache.popitem(last=False)
        return assets


def sample_images(session: Session, indices: list[int] | np.ndarray) -> np.ndarray:
    """``(B, H, W, 3)`` uint8 test images (the split the activations and rankings index)."""
    from core.pipeline import load_data

    return load_data(session.config).test.raw_images(np.asarray(indices, dtype=np.int64))


@dataclass
class SaliencyPreview:
    """One sample's image, its Grad-FAM map for one feature and the blended overlay."""

    sample: int
    feature: int
    label: int
    image: np.ndarray  # H×W×3 uint8
    heat: np.ndarray  # H×W in [0, 1]
    overlay: np.ndarray  # H×W×3 uint8
    latent: float  # u_k of this sample


def gradfam_preview(session: Session, sample: int, feature: int) -> SaliencyPreview:
    """Grad-FAM (SPEC §6) of SAE latent ``feature`` on test sample ``sample``, ready to draw."""
    import torch

    from core.figures import overlay
    from core.saliency import grad_fam

    assets = load_validation_assets(session)
    source = assets.bundle.test
    if not 0 <= sample < len(source):
        raise ValueError(f"test sample {sample} is out of range (0..{len(source) - 1})")
    batch = source.load_batch(np.array([sample]))
    with _saliency_lock, torch.no_grad():
        latent = float(assets.sae.encode(_head_input(assets.model, batch))[0, feature])
    with _saliency_lock:
        heat = grad_fam(assets.model, assets.sae, batch, feature)[0].detach().cpu().numpy()
    image = source.raw_images(np.array([sample]))[0]
    return SaliencyPreview(sample, feature, int(source.labels[sample]), image, heat,
                           overlay(image, heat, 0.5), latent)


def _head_input(model: Any, batch: Any) -> Any:
    """The activation ``a`` feeding the final linear layer for ``batch`` (one forward pass)."""
    from core.backbone import final_linear

    captured: list[Any] = []
    _, _, linear = final_linear(model)
    handle = linear.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        model(batch)
    finally:
        handle.remove()
    return captured[0]


# --------------------------------------------------------------------------- formatting


def fmt_value(value: float | None, digits: int = 3) -> str:
    """Numbers for tables: ``—`` for missing/NaN, else ``digits`` significant figures."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}g}"


def fmt_percent(value: float | None) -> str:
    """An accuracy in [0, 1] as ``87.5%`` (``—`` for a class without samples)."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{100 * value:.1f}%"


def delta_text(delta: float | None) -> Text:
    """Accuracy change in percentage points, red when it drops, green when it rises."""
    if delta is None or not math.isfinite(delta):
        return Text("—", style="dim")
    points = 100 * delta
    if abs(points) < 0.05:
        return Text("±0.0", style="dim")
    return Text(f"{points:+.1f}", style="bold red" if points < 0 else "bold green")


def class_name(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else f"class {index}"


def bar_text(value: float, scale: float, half_width: int = 10) -> Text:
    """A signed horizontal bar centred on zero: negative to the left (blue), positive right (red)."""
    if not math.isfinite(value) or scale <= 0:
        return Text(" " * (2 * half_width + 1))
    cells = round(min(1.0, abs(value) / scale) * half_width)
    left = " " * half_width
    right = " " * half_width
    if value < 0:
        left = " " * (half_width - cells) + "█" * cells
    else:
        right = "█" * cells + " " * (half_width - cells)
    text = Text()
    text.append(left, style="rgb(33,102,172)")
    text.append("│", style="dim")
    text.append(right, style="rgb(178,24,43)")
    return text
