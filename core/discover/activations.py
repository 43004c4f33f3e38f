"""Activation extraction: the input of the final ``nn.Linear`` (SPEC §2), with logits and labels.

A forward pre-hook on the classifier captures its input during the ordinary forward pass, so
extraction costs one forward per image and works for any architecture (ResNet avgpool output,
ViT [CLS] token after the final LayerNorm, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from core.discover.backbone import final_linear
from core.jobs import CancelToken, check_cancel


@contextmanager
def capture_classifier_input(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward appends the final linear's input to the yielded list."""
    _, _, layer = final_linear(model)
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0].detach())

    handle = layer.register_forward_pre_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def iter_activations(
    model: nn.Module,
    source: Any,
    device: torch.device,
    batch_size: int = 128,
    start: int = 0,
    cancel: CancelToken | None = None,
    stop: int | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(row, activations, logits, labels)`` per batch of rows ``[start, stop)``.

    ``start`` resumes a run; ``stop`` (default: the end) bounds one rank's shard.
    """
    model.eval().to(device)
    indices = np.arange(start, len(source) if stop is None else stop)
    with capture_classifier_input(model) as captured, torch.inference_mode():
        row = start
        for images, labels, _ in source.iter_batches(batch_size, indices=indices):
            check_cancel(cancel)
            captured.clear()
            logits = model(images.to(device, non_blocking=True))
            acts = captured[-1].flatten(1)
            yield row, acts.float().cpu().numpy(), logits.float().cpu().numpy(), labels.numpy()
            row += len(labels)


def activations_and_logits(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch: ``(a, logits)`` — convenient for tests and the export round-trip check."""
    with capture_classifier_input(model) as captured, torch.no_grad():
        logits = model(images)
    return captured[-1].flatten(1), logits
