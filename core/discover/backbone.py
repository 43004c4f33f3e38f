"""Backbones: build torchvision classifiers by name, load weights safely, replace the head, train.

Any torchvision classifier whose final layer is an ``nn.Linear`` works; the SALVE layer is
always that final linear (SPEC §2). ``vit_tiny`` is a small ``VisionTransformer`` for quick
experiments and tests of the ViT code path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.config import BackboneConfig, augment_mode
from core.jobs import (
    CancelToken,
    JobCancelled,
    JobFailed,
    ProgressFn,
    ProgressReporter,
    check_cancel,
)


class BackboneError(ValueError):
    """A model could not be built or loaded; the message says why and what to do."""


VIT_TINY = dict(patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128)


def final_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """Return ``(parent, attribute, linear)`` for the model's final classifier layer.

    Known heads first (``fc``, ``heads.head``, ``classifier[-1]``, ``head``), else the last
    ``nn.Linear`` registered, which is the classifier in every torchvision classification model.
    """
    for dotted in ("fc", "heads.head", "head"):
        parent_name, _, attr = dotted.rpartition(".")
        try:
            parent = model.get_submodule(parent_name) if parent_name else model
        except AttributeError:
            continue
        layer = getattr(parent, attr, None)
        if isinstance(layer, nn.Linear):
            return parent, attr, layer
    last: tuple[nn.Module, str, nn.Linear] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            parent_name, _, attr = name.rpartition(".")
            last = (model.get_submodule(parent_name) if parent_name else model, attr, module)
    if last is None:
        raise BackboneError(
            f"{type(model).__name__} has no nn.Linear classifier; SALVE edits the final linear layer"
        )
    return last


def replace_final_linear(model: nn.Module, new_layer: nn.Linear) -> nn.Module:
    parent, attr, _ = final_linear(model)
    if isinstance(parent, nn.Sequential) and attr.isdigit():
        parent[int(attr)] = new_layer
    else:
        setattr(parent, attr, new_layer)
    return model



def _construct(arch: str, image_size: int) -> nn.Module:
    import torchvision.models as tvm

    if arch == "vit_tiny":
        return tvm.VisionTransformer(image_size=image_size, num_classes=1000, **VIT_TINY)
    try:
        builder = tvm.get_model_builder(arch)
    except ValueError:
        known = ", ".join(sorted(tvm.list_models(module=tvm)))
        raise BackboneError(f"unknown architecture '{arch}'; torchvision classifiers: {known}, vit_tiny") from None
    kwargs: dict[str, Any] = {}
    if arch.startswith("vit_"):
        kwargs["image_size"] = image_size
    return builder(weights=None, **kwargs)


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a plain-weights checkpoint (``.pt``/``.pth`` with ``weights_only=True``, or safetensors).

    Common wrappers (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped. Anything that needs
    arbitrary unpickling is refused with a message: we never execute code from a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"checkpoint {path} does not exist; give the path to a saved state_dict")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return _finite(load_file(str(path)), path)
        except BackboneError:
            raise
        except Exception as exc:
            raise BackboneError(f"{path} is not a readable safetensors file: {exc}") from exc
    obj = _torch_load_plain(path)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackboneError(
            f"{path} does not hold a state_dict (a mapping of names to tensors); "
            "re-save it with `torch.save(model.state_dict(), path)`"
        )
    return _finite({k.removeprefix("module."): v for k, v in obj.items()}, path)


def _finite(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Refuse weights holding NaN or infinity: a model built from them trains to chance (or not
    at all) with no error to point at the file."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise BackboneError(f"checkpoint {path} holds NaN or infinite weights in {len(bad)} tensor(s) "
                            f"(e.g. {bad[0]}); use a checkpoint saved before training diverged")
    return state


def minimum_image_size(arch: str) -> int:
    """Smallest input side ``arch`` accepts (torchvision's weights metadata, read without
    downloading anything; ViTs are built for the chosen size)."""
    import torchvision.models as tvm

    if arch.startswith("vit_"):
        return 1
    try:
        weights = tvm.get_model_weights(arch)
    except (ValueError, KeyError):
        return 1
    return int(max(weights.DEFAULT.meta.get("min_size", (1, 1))))


def check_image_size(arch: str, image_size: int) -> None:
    """Refuse an image size below the architecture's minimum now, not as a kernel-size error
    in the middle of a run."""
    minimum = minimum_image_size(arch)
    if image_size < minimum:
        raise BackboneError(f"{arch} needs images of at least {minimum}x{minimum} pixels; --image-size "
                            f"{image_size} is too small (use --image-size {minimum} or more, or another --arch)")


def _torch_load_plain(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with one message per way a file can fail to be plain weights."""
    import pickle
    import zipfile

    if path.stat().st_size == 0:
        raise BackboneError(f"{path} is empty (0 bytes); copy the checkpoint again or pass another file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported" in str(exc) or "global" in str(exc).lower():
            raise BackboneError(
                f"{path} is not a plain-weights checkpoint: it holds Python objects beyond plain tensors, "
                "and loading it would run code from the "
                "file, which salve-tui never does. Re-save only the weights with "
                "`torch.save(model.state_dict(), path)` (or use safetensors)"
            ) from None
        raise BackboneError(
            f"{path} is not a PyTorch checkpoint (it cannot be unpickled); pass a file saved with "
            "`torch.save(model.state_dict(), path)`"
        ) from None
    except (EOFError, RuntimeError, ValueError, IndexError, KeyError, TypeError, AttributeError,
            zipfile.BadZipFile, OSError) as exc:
        raise BackboneError(
            f"{path} is not a PyTorch checkpoint or is truncated ({type(exc).__name__}); pass a file "
            "saved with `torch.save(model.state_dict(), path)`"
        ) from None


def load_hub_weights(path: str | os.PathLike, hash_prefix: str | None) -> dict[str, torch.Tensor]:
    """A torchvision weights file from the hub cache: hash prefix checked, then weights only.

    torchvision's own loader ends in ``torch.load`` without ``weights_only``, so a file planted in
    the cache under the expected name would run code; this never does.
    """
    import hashlib

    path = Path(path)
    if hash_prefix:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if not digest.hexdigest().startswith(hash_prefix):
            raise BackboneError(
                f"{path} does not match torchvision's published hash (sha256 {hash_prefix}…): it is "
                "damaged or not the official file. Delete it and copy or download the weights again"
            )
    obj = _torch_load_plain(path)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackboneError(f"{path} does not hold a state_dict; delete it and fetch the weights again")
    return obj


def _pretrained_state(arch: str) -> dict[str, torch.Tensor]:
    import re

    import torchvision.models as tvm

    try:
        weights = tvm.get_model_weights(arch).DEFAULT
    except Exception:
        raise BackboneError(f"torchvision has no pretrained weights for '{arch}'") from None
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    file_name = Path(weights.url).name
    path = cache / file_name
    match = re.search(r"-([a-f0-9]+)\.", file_name)
    prefix = match.group(1) if match else None
    if not path.is_file():
        try:
            cache.mkdir(parents=True, exist_ok=True)
            # download only (the hub helper checks the hash and renames atomically); never its loader
            torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=prefix, progress=False)
        except Exception as exc:
            raise BackboneError(
                f"pretrained weights for {arch} ({weights}) are not in the local cache {cache} and could "
                f"not be downloaded ({type(exc).__name__}). Copy {file_name} there, pass a local "
                "checkpoint with --weights PATH, or use --weights none"
            ) from None
    try:
        return load_hub_weights(path, prefix)
    except BackboneError as exc:
        raise BackboneError(f"pretrained weights {file_name}: {exc}") from None


def build_model(arch: str, num_classes: int, weights: str = "none", image_size: int = 224,
                seed: int = 0, allow_new_head: bool = True) -> nn.Module:
    """Build ``arch`` with ``weights`` (none | pretrained | checkpoint path), head sized to ``num_classes``.

    A checkpoint whose head already has ``num_classes`` outputs is loaded whole; otherwise its head
    is dropped and a fresh (seeded) head replaces it, as when fine-tuning on a new dataset.
    """
    if num_classes < 2:
        raise BackboneError(f"a classifier needs at least 2 classes, got {num_classes}")
    check_image_size(arch, image_size)
    torch.manual_seed(seed)
    model = _construct(arch, image_size)
    state: dict[str, torch.Tensor] | None = None
    if weights == "pretrained":
        state = _pretrained_state(arch)
    elif weights not in ("none", "", None):
        state = load_checkpoint(weights)
    _, _, head = final_linear(model)
    head_name = next(n for n, m in model.named_modules() if m is head)
    new_head = nn.Linear(head.in_features, num_classes)  # seeded: same head for the same seed
    _init_linear(new_head, torch.Generator().manual_seed(seed))
    replace_final_linear(model, new_head)
    if state is not None:
        ckpt_head = state.get(f"{head_name}.weight")
        if ckpt_head is not None and ckpt_head.shape[0] != num_classes:
            if not allow_new_head:
                raise BackboneError(
                    f"the weights ({weights}) classify {ckpt_head.shape[0]} classes but the dataset has "
                    f"{num_classes}; a new head would be untrained. Fine-tune (drop --no-train) or use "
                    "weights trained on this dataset's classes"
                )
            state = {k: v for k, v in state.items() if not k.startswith(head_name + ".")}
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise BackboneError(
                f"checkpoint {weights} does not fit {arch}: {str(exc).splitlines()[0][:300]}"
            ) from None
        missing = [k for k in missing if not k.startswith(head_name + ".")]
        if missing or unexpected:
            raise BackboneError(
                f"checkpoint {weights} does not match {arch}: {len(missing)} missing keys "
                f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}); "
                "check --arch"
            )
    return model


def _init_linear(layer: nn.Linear, gen: torch.Generator) -> None:
    bound = 1 / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=gen)
        layer.bias.uniform_(-bound, bound, generator=gen)


def state_to_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def load_numpy_state(model: nn.Module, arrays: dict[str, np.ndarray]) -> nn.Module:
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})
    return model



# --------------------------------------------------------------------------- training


def augment_batch(images: torch.Tensor, gen: torch.Generator, max_shift: int = 4,
                  mode: str = "flip+shift") -> torch.Tensor:
    """Light augmentation on a normalised batch: random horizontal flip and/or a small
    translation (``mode``: none | flip | shift | flip+shift; flips are wrong for digits/text)."""
    if "flip" in mode:
        flip = torch.rand(len(images), generator=gen) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    if "shift" in mode:
        dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=gen))
        images = torch.roll(images, shifts=(dy, dx), dims=(-2, -1))
    return images


def head_input_dim(arch: str, image_size: int = 224) -> int:
    """d, the width of the final linear layer's input, for an architecture (builds it once)."""
    return int(final_linear(_construct(arch, image_size))[2].in_features)


@dataclass
class TrainState:
    """Resumable training state: model/optimizer weights after ``epoch`` completed epochs."""

    epoch: int
    model: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    history: list[dict[str, float]] = field(default_factory=list)


def _optimizer_arrays(opt: torch.optim.Optimizer) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for idx, st in opt.state_dict()["state"].items():
        for key, value in st.items():
            out[f"{idx}/{key}"] = torch.as_tensor(value).cpu().numpy()
    return out


def _load_optimizer_arrays(opt: torch.optim.Optimizer, arrays: dict[str, np.ndarray]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in arrays.items():
        idx, key = name.split("/")
        state.setdefault(int(idx), {})[key] = torch.from_numpy(np.asarray(value))
    sd["state"] = state
    opt.load_state_dict(sd)


def scheduled_lr(config: BackboneConfig, step: int, total_steps: int) -> float:
    """Learning rate at optimizer ``step``: constant, or one-cycle (15% linear warm-up, cosine decay).

    A pure function of the step, so resuming from a checkpoint needs no scheduler state.
    """
    if config.schedule != "onecycle" or total_steps <= 0:
        return config.lr
    warmup = max(1, int(0.15 * total_steps))
    if step < warmup:
        return config.lr * (0.1 + 0.9 * step / warmup)
    progress = (step - warmup) / max(1, total_steps - warmup)
    return config.lr * (0.005 + 0.995 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def evaluate(model: nn.Module, source: Any, device: torch.device, batch_size: int = 128,
             cancel: CancelToken | None = None) -> float:
    """Top-1 accuracy of ``model`` on an image source."""
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for images, labels, _ in source.iter_batches(batch_size):
            check_cancel(cancel)
            pred = model(images.to(device)).argmax(1).cpu()
            correct += int((pred == labels).sum())
            total += len(labels)
    return correct / max(total, 1)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
                lr: float, epoch: int, base_lr: float) -> float:
    """One Adam step on the cross-entropy at learning rate ``lr``; returns the batch loss. A
    non-finite loss stops training before the step (the last epoch's checkpoint is kept)."""
    for group in opt.param_groups:
        group["lr"] = lr
    loss = nn.functional.cross_entropy(model(images), labels)
    if not torch.isfinite(loss):
        raise JobFailed(
            f"backbone loss became {loss.item()} in epoch {epoch + 1}; the last good checkpoint "
            f"(epoch {epoch}) is kept. Lower the learning rate (now {base_lr}) and rerun"
        )
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def train_backbone(
    model: nn.Module,
    train: Any,
    test: Any,
    config: BackboneConfig,
    device: torch.device,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    resume: TrainState | None = None,
    on_checkpoint: Callable[[TrainState], None] | None = None,
    seed: int = 0,
) -> TrainState:
    """Train/fine-tune with Adam + cross-entropy (paper A.3), checkpointing after every epoch.

    Cancellation is honoured between batches; the last completed epoch stays committed, so a
    rerun with ``resume`` continues from there. A non-finite loss stops training with a message.
    """
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = resume or TrainState(0, {}, {}, [])
    if resume is not None:
        load_numpy_state(model, resume.model)
        _load_optimizer_arrays(opt, resume.optimizer)
        model.to(device)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = config.epochs * steps_per_epoch
    reporter = ProgressReporter("backbone", total, progress, start=state.epoch * steps_per_epoch)
    for epoch in range(state.epoch, config.epochs):
        model.train()
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        running, seen = 0.0, 0
        for step, (images, labels, _) in enumerate(
            train.iter_batches(config.batch_size, shuffle=True, generator=gen)
        ):
            mode = augment_mode(config.augment)
            if mode != "none":
                images = augment_batch(images, gen, mode=mode)
            if cancel is not None and cancel.cancelled:
                raise JobCancelled(f"training cancelled during epoch {epoch + 1}; {epoch} epochs are saved")
            images, labels = images.to(device), labels.to(device)
            lr = scheduled_lr(config, epoch * steps_per_epoch + step, total)
            running += _train_step(model, opt, images, labels, lr, epoch, config.lr) * len(labels)
            seen += len(labels)
            reporter.report(epoch * steps_per_epoch + step + 1, f"epoch {epoch + 1}/{config.epochs}",
                            loss=running / seen)
        # The epoch's batches are done: finish it (a short evaluation) and commit it even if a
        # cancel arrived meanwhile; the next batch check then stops with this epoch kept.
        test_acc = evaluate(model, test, device)
        state = TrainState(
            epoch + 1,
            state_to_numpy(model),
            _optimizer_arrays(opt),
            [*state.history, {"epoch": epoch + 1, "loss": running / max(seen, 1), "test_acc": test_acc}],
        )
        reporter.report((epoch + 1) * steps_per_epoch, f"epoch {epoch + 1} test acc {test_acc:.3f}",
                        loss=running / max(seen, 1), test_acc=test_acc)
        if on_checkpoint is not None:
            on_checkpoint(state)
    model.eval()
    return state
