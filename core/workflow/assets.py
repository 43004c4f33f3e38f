"""What validation visuals read from a session (model, SAE, data), loaded once and shared.

The CLI (``salve_tui.cli.visuals``) and the TUI call the visual modules of this package
(``saliency_maps``, ``actmax_images``, ``figure_export``, ``ground_truth``); the maths lives in
``core.validate`` and the drawing in ``core.workflow.figures``. Files go to the session's export
folder (``<name>.exports/heatmaps`` for saliency overlays, ``<name>.exports/figures`` for
everything else) under descriptive names, unless the caller passes ``out``.

The model, SAE and dataset of a session are loaded once per process and cached, keyed on the
session file and the timestamps of the stages that produced them, so a TUI that asks for many
heatmaps reloads nothing. The cached model is shared: every use takes :data:`MODEL_LOCK`,
because saliency and activation maximisation attach hooks to it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.store.session import Session, SessionError

HEATMAPS_DIR = "heatmaps"

FIGURES_DIR = "figures"

MODEL_LOCK = threading.RLock()  # hooks make a shared model single-use at a time

_CACHE_SIZE = 2

_assets_cache: OrderedDict[tuple[Any, ...], VisualAssets] = OrderedDict()

_ASSET_STAGES = ("data", "backbone", "sae", "rankings")

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
    from core.workflow.inputs import resolve_class as resolve

    return resolve(class_names, value)

def target_path(out: str | Path | None, default: Path) -> Path:
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
