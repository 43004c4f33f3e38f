"""Grad-CAM and Grad-FAM saliency maps for torchvision ResNets and Vision Transformers (SPEC §6).

Both methods weight the target layer's feature maps ``A`` by the spatial mean of ``∂score/∂A``
and sum over channels. The score is a class logit for Grad-CAM (kept positive with ReLU) and an
SAE latent ``u_k`` for Grad-FAM (kept with ``|·|`` because latents are signed: a strong push in
either direction is evidence). Every score here is a *linear* function of ``a``, the input of the
model's final ``nn.Linear``: logits are ``W a + b`` and latents are ``W_enc a + b_enc``. So both
methods share one engine that takes a "head" matrix (``W`` or ``W_enc``) and row indices.

Two paths compute the channel weights:

* **fast path** – when the target layer feeds global average pooling and then only linear maps
  (torchvision ResNet ``layer4``), ``∂score_k/∂A_c = head[k, c] / (h·w)`` at every position, so
  the maps of *all* requested scores come from one forward pass and an ``einsum``; no backward.
* **autograd path** – everything else (earlier ResNet stages, ViT blocks). The part of the
  network before the target layer runs without building a graph; only the tail is differentiated,
  with respect to ``A`` only (no parameter gradients), once per requested score. Images in a batch
  are independent in eval mode, so summing a score over the batch yields every image's gradient
  in one backward.

Maps are upsampled bilinearly to the image size and min–max normalised per map to [0, 1]. A map
that is constant (in particular all zero, e.g. a Grad-CAM map whose weighted sum is negative
everywhere) carries no location information and is returned as all zeros; this matches
pytorch-grad-cam, whose maps ours equal within 1e-4.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.discover.backbone import final_linear

__all__ = [
    "default_target_layer",
    "encoder_weights",
    "fast_path_applies",
    "grad_cam",
    "grad_fam",
    "normalize_maps",
    "saliency_maps",
]

Targets = int | Sequence[int] | Tensor
EncoderLike = nn.Module | tuple[Tensor, Tensor]

# Below this range a map is treated as constant (no preferred location) and becomes all zeros.
_FLAT_MAP_RANGE = 1e-12


def encoder_weights(encoder: EncoderLike) -> tuple[Tensor, Tensor]:
    """Accept an SAE encoder as ``(W_enc, b_enc)``, an ``nn.Linear`` or a module with ``.encoder``.

    Returns detached ``(W_enc (h×d), b_enc (h))``. For a TopK SAE this is the pre-mask latent:
    it equals ``u_k`` wherever feature k is kept and still gives a map where it is not.
    """
    if isinstance(encoder, tuple | list):
        if len(encoder) != 2:
            raise ValueError("encoder tuple must be (W_enc, b_enc)")
        weight, bias = encoder
    else:
        linear = getattr(encoder, "encoder", encoder)
        if not isinstance(linear, nn.Linear):
            raise ValueError(
                "encoder must be (W_enc, b_enc), an nn.Linear, or a module with an nn.Linear "
                f"'.encoder'; got {type(encoder).__name__}"
            )
        weight = linear.weight
        bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features)
    weight, bias = torch.as_tensor(weight).detach(), torch.as_tensor(bias).detach()
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ValueError(
            f"encoder weight must be (h, d) and bias (h,); got {tuple(weight.shape)} and "
            f"{tuple(bias.shape)}"
        )
    return weight, bias


def _is_vit(model: nn.Module) -> bool:
    from torchvision.models import VisionTransformer

    return isinstance(model, VisionTransformer)


def _is_stock_resnet(model: nn.Module) -> bool:
    from torchvision.models import ResNet

    return isinstance(model, ResNet) and type(model).forward is ResNet.forward


def _resolve_layer(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        stages = [n for n in ("layer1", "layer2", "layer3", "layer4") if n in modules]
        hint = f" (ResNet stages here: {', '.join(stages)})" if stages else ""
        raise ValueError(
            f"target layer '{layer}' is not a module of {type(model).__name__}{hint}; "
            "pass a name from model.named_modules()"
        )
    return modules[layer]


def _vit_last_block_name(model: nn.Module) -> str:
    last = list(model.encoder.layers.named_children())[-1][0]
    return f"encoder.layers.{last}"


def _check_vit_layer(model: nn.Module, layer: str) -> None:
    """Reject ViT layers whose patch tokens never reach the [CLS] head (all-zero maps)."""
    if not _is_vit(model):
        return
    last_block = _vit_last_block_name(model)
    if layer in (last_block, "encoder", "encoder.ln") or layer.startswith(last_block + ".mlp"):
        raise ValueError(
            f"ViT layer '{layer}' comes after the last attention step, so its patch tokens have "
            f"no path to the [CLS] token the head reads and every map would be zero; use "
            f"'{last_block}.ln_1' (the default) or an earlier block"
        )


def candidate_layers(model: nn.Module) -> list[str]:
    """The layers a user may pick for saliency maps, shallow to deep: ResNet's ``layer1..layer4``;
    ViT the ``ln_1`` entering each encoder block (a later layer has no path to [CLS])."""
    if _is_vit(model):
        return [f"encoder.layers.{name}.ln_1" for name, _ in model.encoder.layers.named_children()]
    return [n for n in ("layer1", "layer2", "layer3", "layer4") if hasattr(model, n)]


def default_target_layer(model: nn.Module, image_size: int | tuple[int, int]) -> str:
    """Pick the layer SPEC §6 prescribes for this model and input size.

    ResNet: the deepest of ``layer1..layer4`` whose map is at least 4×4 (``layer4`` at 224 px,
    ``layer3`` at 64 px: a 2×2 map cannot localise anything). Spatial sizes are measured with one
    dry forward pass so custom strides are handled.

    ViT: the tokens entering the last encoder block (its ``ln_1``), the pytorch-grad-cam
    convention. The last block's *output* cannot be used in torchvision: after it only the
    [CLS] token reaches the head, so the patch tokens there get zero gradient.
    """
    if _is_vit(model):
        return f"{_vit_last_block_name(model)}.ln_1"
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    stages = [n for n in ("layer1", "layer2", "layer3", "layer4") if hasattr(model, n)]
    if not stages:
        raise ValueError(
            f"no default saliency layer for {type(model).__name__}: pass layer=<module name> "
            "explicitly (supported defaults: torchvision ResNet and VisionTransformer)"
        )
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape))
        )
        for name in stages
    ]
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, height, width, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    for name in reversed(stages):
        if min(shapes[name][-2:]) >= 4:
            return name
    return stages[0]


def fast_path_applies(model: nn.Module, layer: str) -> bool:
    """True when ``layer`` feeds global average pooling and then only linear maps.

    Checked structurally, not guessed: a torchvision ResNet with its stock ``forward``, the target
    is ``layer4`` (the stage right before ``avgpool``), ``avgpool`` pools to 1×1 and ``fc`` is the
    final ``nn.Linear`` the SAE reads.
    """
    if not _is_stock_resnet(model) or layer != "layer4":
        return False
    pool = getattr(model, "avgpool", None)
    if not isinstance(pool, nn.AdaptiveAvgPool2d) or pool.output_size not in (1, (1, 1)):
        return False
    _, _, linear = final_linear(model)
    return linear is getattr(model, "fc", None)


def _target_matrix(targets: Targets, batch: int, n_scores: int) -> tuple[Tensor, bool]:
    """Turn the user's targets into indices ``(B, F)``; the flag says whether F is squeezed.

    int → same score for every image, ``(B, H, W)``; 1-D tensor/array of length B → one score
    per image, ``(B, H, W)``; list/tuple → every score for every image, ``(B, F, H, W)``.
    """
    if isinstance(targets, numbers.Integral) or getattr(targets, "ndim", None) == 0:
        index = torch.full((batch, 1), int(targets), dtype=torch.long)
        squeeze = True
    elif isinstance(targets, Tensor) or hasattr(targets, "__array__"):
        per_image = torch.as_tensor(targets).long().flatten()
        if per_image.numel() != batch:
            raise ValueError(
                f"per-image targets must have one entry per image ({batch}), got "
                f"{per_image.numel()}; pass a list to get every target for every image"
            )
        index, squeeze = per_image[:, None], True
    else:
        listed = [int(t) for t in targets]
        if not listed:
            raise ValueError("no targets given: pass at least one feature/class index")
        index, squeeze = torch.tensor(listed, dtype=torch.long)[None, :].repeat(batch, 1), False
    bad = index[(index < 0) | (index >= n_scores)]
    if bad.numel():
        raise ValueError(
            f"target index {int(bad[0])} is out of range: valid indices are 0..{n_scores - 1}"
        )
    return index, squeeze


def _to_grid(output: Tensor, model: nn.Module, image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Split a layer output into (prefix tokens, spatial map ``(B, C, h, w)``).

    Conv outputs are already spatial. ViT token sequences ``(B, T, D)``: leading non-patch tokens
    ([CLS]) are dropped and patch tokens, stored in raster order, are reshaped to the
    ``(H/p, W/p)`` grid using the model's own ``patch_size``.
    """
    if output.ndim == 4:
        return output[:, :0], output
    if output.ndim != 3:
        raise ValueError(
            f"target layer output has shape {tuple(output.shape)}; expected (B, C, h, w) feature "
            "maps or (B, tokens, dim) transformer tokens"
        )
    patch = getattr(model, "patch_size", None)
    if patch is None:
        raise ValueError("token outputs need a model with 'patch_size' (torchvision ViT)")
    grid_h, grid_w = image_hw[0] // patch, image_hw[1] // patch
    n_prefix = output.shape[1] - grid_h * grid_w
    if n_prefix < 0:
        raise ValueError(
            f"layer has {output.shape[1]} tokens, fewer than the {grid_h}×{grid_w} patch grid"
        )
    patches = output[:, n_prefix:, :].transpose(1, 2)
    return output[:, :n_prefix], patches.reshape(output.shape[0], -1, grid_h, grid_w)


def _from_grid(prefix: Tensor, grid: Tensor, like: Tensor) -> Tensor:
    if like.ndim == 4:
        return grid
    return torch.cat([prefix, grid.flatten(2).transpose(1, 2)], dim=1)


def _raw_maps(
    model: nn.Module,
    images: Tensor,
    head: Tensor,
    index: Tensor,
    layer: str,
    fast: bool | None,
) -> Tensor:
    """Un-normalised ``Σ_c w_c·A_c`` on the layer's grid, shape ``(B, F, h, w)``."""
    if fast and not fast_path_applies(model, layer):
        raise ValueError(
            f"the one-pass fast path needs a torchvision ResNet with layer='layer4' (got "
            f"'{layer}' on {type(model).__name__}); use fast=None to pick automatically"
        )
    use_fast = fast_path_applies(model, layer) if fast is None else fast
    activations, head_input = _capture(model, images, layer, use_fast)
    head = head.to(activations.device, activations.dtype)
    if use_fast:
        area = activations.shape[-2] * activations.shape[-1]
        weights = head[index.to(activations.device)] / area  # (B, F, C)
        return torch.einsum("bfc,bchw->bfhw", weights, activations)
    return _gradient_maps(activations, head_input, head, index)


def _capture(model: nn.Module, images: Tensor, layer: str, use_fast: bool) -> tuple[Tensor, Tensor | None]:
    """One forward pass that keeps the layer's activations on their grid and the head's input.

    For the gradient path the graph starts at the layer (the trunk runs under no_grad), so only
    the tail is differentiated; the fast path needs no graph at all.
    """
    module = _resolve_layer(model, layer)
    _check_vit_layer(model, layer)
    _, _, linear = final_linear(model)
    image_hw = (images.shape[-2], images.shape[-1])
    captured: dict[str, Tensor] = {}

    def on_layer(_module: nn.Module, _inputs: tuple, output: Tensor) -> Tensor | None:
        if "A" in captured:
            raise ValueError(f"layer '{layer}' runs more than once per forward; pick another")
        if use_fast:
            captured["A"] = _to_grid(output, model, image_hw)[1]
            return None
        # Start the graph here: the trunk ran under no_grad, only the tail is differentiated.
        torch.set_grad_enabled(True)
        prefix, grid = _to_grid(output.detach(), model, image_hw)
        grid.requires_grad_(True)
        captured["A"] = grid
        return _from_grid(prefix, grid, output)

    def on_head_input(_module: nn.Module, inputs: tuple) -> None:
        captured["a"] = inputs[0]

    handles = [
        module.register_forward_hook(on_layer),
        linear.register_forward_pre_hook(on_head_input),
    ]
    caller_grad_mode = torch.is_grad_enabled()
    try:
        torch.set_grad_enabled(False)  # no graph for the trunk; the layer hook switches it on
        model(images)
    finally:
        torch.set_grad_enabled(caller_grad_mode)
        for handle in handles:
            handle.remove()
    if "A" not in captured:
        raise ValueError(f"layer '{layer}' did not run during the forward pass")
    return captured["A"], captured.get("a")


def _gradient_maps(activations: Tensor, head_input: Tensor, head: Tensor, index: Tensor) -> Tensor:
    """Grad-CAM weighting: each target's gradient w.r.t. the layer, averaged over the grid,
    weights the layer's channels; one backward pass per target column of ``index``."""
    with torch.enable_grad():
        scores = head_input @ head.T  # (B, n_scores); biases do not change gradients
        index = index.to(scores.device)
        maps = []
        n_targets = index.shape[1]
        for f in range(n_targets):
            target_sum = scores.gather(1, index[:, f : f + 1]).sum()
            (grad,) = torch.autograd.grad(target_sum, activations, retain_graph=f < n_targets - 1)
            weights = grad.mean(dim=(2, 3), keepdim=True)
            maps.append((weights * activations.detach()).sum(dim=1))
    return torch.stack(maps, dim=1)


def normalize_maps(maps: Tensor) -> Tensor:
    """Min–max normalise each map (last two dims) to [0, 1]; constant maps become all zeros."""
    flat = maps.flatten(-2)
    low = flat.min(dim=-1, keepdim=True).values
    span = flat.max(dim=-1, keepdim=True).values - low
    scaled = torch.where(
        span > _FLAT_MAP_RANGE, (flat - low) / span.clamp_min(_FLAT_MAP_RANGE), 0.0
    )
    return scaled.reshape(maps.shape)


def saliency_maps(
    model: nn.Module,
    images: Tensor,
    head: Tensor,
    targets: Targets,
    layer: str | None = None,
    *,
    mode: Literal["fam", "cam"] = "fam",
    fast: bool | None = None,
    normalize: bool = True,
) -> Tensor:
    """Shared engine: maps for rows ``targets`` of a linear head applied to ``a``.

    ``mode='fam'`` keeps ``|Σ w·A|``, ``'cam'`` keeps ``ReLU(Σ w·A)``. ``fast=None`` uses the
    one-pass path where it applies, ``False`` forces autograd, ``True`` insists on the fast path.
    Returns ``(B, F, H, W)`` for a list of targets, ``(B, H, W)`` for an int or per-image tensor,
    on the model's device.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a (B, 3, H, W) batch, got {tuple(images.shape)}")
    if mode not in ("fam", "cam"):
        raise ValueError(f"mode must be 'fam' or 'cam', got '{mode}'")
    device = next(model.parameters()).device
    images = images.to(device)
    layer = layer or default_target_layer(model, (images.shape[-2], images.shape[-1]))
    index, squeeze = _target_matrix(targets, images.shape[0], head.shape[0])
    was_training = model.training
    model.eval()  # train-mode BatchNorm would couple the images and update running stats
    try:
        raw = _raw_maps(model, images, head.detach(), index, layer, fast)
    finally:
        model.train(was_training)
    raw = raw.abs() if mode == "fam" else raw.clamp_min(0)
    batch, n_targets, grid_h, grid_w = raw.shape
    upsampled = F.interpolate(
        raw.reshape(batch * n_targets, 1, grid_h, grid_w),
        size=images.shape[-2:],
        mode="bilinear",
        align_corners=False,
    ).reshape(batch, n_targets, *images.shape[-2:])
    out = normalize_maps(upsampled) if normalize else upsampled
    return out[:, 0] if squeeze else out


def grad_fam(
    model: nn.Module,
    encoder: EncoderLike,
    images: Tensor,
    features: Targets,
    layer: str | None = None,
    *,
    fast: bool | None = None,
    normalize: bool = True,
) -> Tensor:
    """Grad-FAM maps of SAE latents ``u_k = W_enc a + b_enc`` (paper A.5.2), absolute value.

    ``features``: int, a list (every feature for every image → ``(B, F, H, W)``) or a per-image
    tensor of length B (→ ``(B, H, W)``). ``layer`` defaults to :func:`default_target_layer`.
    """
    weight, _ = encoder_weights(encoder)
    _, _, linear = final_linear(model)
    if weight.shape[1] != linear.in_features:
        raise ValueError(
            f"SAE encoder expects {weight.shape[1]}-dim activations but the model's final linear "
            f"layer receives {linear.in_features}; was the SAE trained on this backbone?"
        )
    return saliency_maps(
        model, images, weight, features, layer, mode="fam", fast=fast, normalize=normalize
    )


def grad_cam(
    model: nn.Module,
    images: Tensor,
    classes: Targets,
    layer: str | None = None,
    *,
    fast: bool | None = None,
    normalize: bool = True,
) -> Tensor:
    """Grad-CAM maps of class logits (ReLU of the weighted sum), same conventions as grad_fam."""
    _, _, linear = final_linear(model)
    return saliency_maps(
        model, images, linear.weight, classes, layer, mode="cam", fast=fast, normalize=normalize
    )
