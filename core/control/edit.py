"""Applying recorded edits to the final linear classifier, and replaying an edit log.

Every function returns a new tensor / layer / model, so the loaded model stays the reference.
Which method an :class:`~core.control.spec.EditSpec` names decides how it edits the head
(``core.control.methods``); edits compose in order, each on the already-edited weights.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from core.control.methods.registry import get_method
from core.control.spec import EditSpec
from core.discover.backbone import final_linear, replace_final_linear


def apply_edit(
    W: torch.Tensor, b: torch.Tensor | None, D: torch.Tensor, spec: EditSpec
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply any recorded edit to ``(W, b)`` and return new tensors.

    Steering at the classifier input is exactly a bias shift, ``W(a + v) + b = Wa + (b + Wv)``,
    so it too becomes a permanent, exportable layer edit here.
    """
    return get_method(spec.method).apply(W, b, D, spec)


def changes_bias(spec: EditSpec) -> bool:
    """Whether ``spec``'s method moves the bias (replaying it needs the layer, not W alone)."""
    return get_method(spec.method).changes_bias


def replay(W: torch.Tensor, D: torch.Tensor, edits: Iterable[EditSpec]) -> torch.Tensor:
    """Rebuild ``W'`` from the original ``W`` and the recorded weight edits, in order.

    Edits compose on the already-edited weights, exactly as they were applied in the session.
    Edits that change the bias (steering): use :func:`replay_linear` for those.
    """
    W_new = W.clone()
    for spec in edits:
        if changes_bias(spec):
            raise ValueError(
                f"{get_method(spec.method).label} edits change the bias, not W: use "
                "replay_linear(layer, D, edits)"
            )
        W_new, _ = apply_edit(W_new, None, D, spec)
    return W_new


def edited_linear(linear: nn.Linear, spec: EditSpec, D: torch.Tensor) -> nn.Linear:
    """A new ``nn.Linear`` carrying the edit; ``linear`` itself is left untouched."""
    return replay_linear(linear, D, [spec])


def replay_linear(linear: nn.Linear, D: torch.Tensor, edits: Iterable[EditSpec]) -> nn.Linear:
    """A new ``nn.Linear`` with all ``edits`` applied in order (any method)."""
    with torch.no_grad():
        W = linear.weight.detach()
        b = None if linear.bias is None else linear.bias.detach()
        D = D.detach().to(W)
        for spec in edits:
            if b is None and changes_bias(spec):
                b = torch.zeros(W.shape[0], dtype=W.dtype, device=W.device)
            W, b = apply_edit(W, b, D, spec)
        # skip_init: the weights are overwritten right away, so skip the random initialisation.
        new = nn.utils.skip_init(
            nn.Linear, W.shape[1], W.shape[0], bias=b is not None, device=W.device, dtype=W.dtype
        )
        new.weight.copy_(W)
        if b is not None:
            new.bias.copy_(b)
    return new


def edited_model(
    model: nn.Module, spec: EditSpec | Sequence[EditSpec], D: torch.Tensor
) -> nn.Module:
    """A deep copy of ``model`` whose final linear carries the edit(s); ``model`` is unchanged."""
    edits = [spec] if isinstance(spec, EditSpec) else list(spec)
    new_model = copy.deepcopy(model)
    _, _, linear = final_linear(new_model)
    return replace_final_linear(new_model, replay_linear(linear, D, edits))
