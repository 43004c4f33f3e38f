"""Activation maximisation of SAE latents (SPEC §6, paper A.5.1).

Synthesises an input that drives latent ``u_k`` up, starting from noise, by gradient ascent on

    u_k(T(x)) − λ_tv · TV(x) − λ_2 · ‖x − 0.5‖²

where ``T`` is a fresh random transform every step (pad with grey, jitter, random scale, random
rotation, centre crop back). The transforms stop the optimiser from exploiting pixel-exact
high-frequency patterns, so what survives is the feature's robust visual content. Pad and
jitter are sized in proportion to the image (16 px and ±8 px at 224 px, so 5 px and ±2 px at
64 px) unless given in pixels; 256 steps by default.

The image is parametrised (``parametrization='fourier'``, the default) as a decorrelated
Fourier spectrum: each channel's 2-D real FFT coefficients, scaled by ``1/f^decay`` so that
low frequencies dominate as they do in natural images, then mixed across colour channels by a
fixed decorrelation matrix (the square root of the ImageNet colour covariance) and squashed to
[0, 1] with a sigmoid. Steepest ascent in this basis favours natural-image statistics over the
per-pixel colour noise a plain pixel parametrisation (``'pixel'``) produces.

Conventions (where the spec leaves room):

* ``x`` lives in [0, 1] pixel space and is clamped there after every step; the ImageNet
  normalisation is applied inside the forward, so results are directly viewable images.
* TV is the mean absolute difference between neighbouring pixels, and the L2 term is the mean
  of ``(x − 0.5)²``: means make λ independent of resolution, and centring on the pad grey
  avoids the plain ``‖x‖²`` bias toward black images.
* Several features are optimised at once as a batch, one image per feature. In eval mode images
  do not interact and Adam is element-wise, so this equals separate runs, only faster.
* Random draws come from a CPU ``torch.Generator`` seeded by the config: the same seed gives the
  same images on CPU (CUDA's ``grid_sample`` backward is not bit-deterministic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.discover.backbone import final_linear
from core.jobs import CancelToken, ProgressFn, ProgressReporter, check_cancel
from core.validate.saliency import EncoderLike, encoder_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Square root of the ImageNet RGB colour covariance (rows: R, G, B; columns: decorrelated
# components); divided by its largest column norm before use.
COLOUR_CORRELATION_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
PARAMETRIZATIONS = ("fourier", "pixel")


@dataclass
class ActMaxConfig:
    """Settings of one activation-maximisation run (defaults follow paper A.5.1)."""

    steps: int = 256
    lr: float = 0.05
    tv_weight: float = 0.05
    l2_weight: float = 0.01
    image_size: int = 64
    pad: int | None = None  # pixels; None: pad_fraction of the image size
    pad_value: float = 0.5
    jitter: int | None = None  # pixels; None: jitter_fraction of the image size
    pad_fraction: float = 16 / 224
    jitter_fraction: float = 8 / 224
    parametrization: str = "fourier"
    decay_power: float = 1.0  # Fourier: spectrum scaled by 1/f^decay_power
    spectrum_std: float = 0.01  # Fourier: start noise of the coefficients
    scale_range: tuple[float, float] = (0.9, 1.1)
    rotation_degrees: float = 10.0
    init_std: float = 0.1  # noise around grey at the start
    snapshots: int = 3  # evenly spaced intermediate images, the final one is always kept
    sign: int = 1  # -1 drives the latent negative (for features whose class mean is negative)
    seed: int = 0
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: tuple[float, float, float] = field(default=IMAGENET_STD)

    def validate(self) -> list[str]:
        problems = []
        if self.steps < 1:
            problems.append("activation maximisation needs at least 1 step")
        if not self.lr > 0:
            problems.append("learning rate must be > 0")
        if self.tv_weight < 0 or self.l2_weight < 0:
            problems.append("regulariser weights must be ≥ 0")
        if self.image_size < 8:
            problems.append("image size must be ≥ 8 pixels")
        if (self.pad or 0) < 0 or (self.jitter or 0) < 0 or self.snapshots < 0:
            problems.append("pad, jitter and snapshot count must be ≥ 0")
        if self.parametrization not in PARAMETRIZATIONS:
            problems.append(f"parametrization must be one of {', '.join(PARAMETRIZATIONS)}")
        low, high = self.scale_range
        if not 0 < low <= high:
            problems.append(f"scale range must satisfy 0 < low ≤ high, got {self.scale_range}")
        if self.sign not in (1, -1):
            problems.append("sign must be 1 (maximise) or -1 (minimise)")
        return problems

    def pad_pixels(self, size: int) -> int:
        return int(self.pad) if self.pad is not None else round(self.pad_fraction * size)

    def jitter_pixels(self, size: int) -> int:
        return int(self.jitter) if self.jitter is not None else round(self.jitter_fraction * size)

    def snapshot_steps(self) -> list[int]:
        """Steps (1-based, after the update) whose images are kept: evenly spaced + the last."""
        inner = {round(self.steps * (i + 1) / (self.snapshots + 1)) for i in range(self.snapshots)}
        return sorted({s for s in inner if 1 <= s < self.steps} | {self.steps})


@dataclass
class ActMaxResult:
    """Images in [0, 1] (one per feature, on the CPU) and how the latent evolved."""

    features: list[int]
    images: Tensor  # (F, 3, S, S), final images
    snapshots: list[tuple[int, Tensor]]  # (step, (F, 3, S, S)); the last entry is the final image
    trace: Tensor  # (steps, F): u_k on the transformed input seen at each step
    start_activation: Tensor  # (F,): u_k of the untransformed starting noise
    final_activation: Tensor  # (F,): u_k of the untransformed final image


def total_variation(images: Tensor) -> Tensor:
    """Mean absolute neighbour difference per image, shape ``(B,)``."""
    dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
    return dx + dy


def random_transform(images: Tensor, config: ActMaxConfig, generator: torch.Generator) -> Tensor:
    """Pad → jitter → scale → rotate → centre crop, one random draw per image, differentiable.

    Done as one ``grid_sample`` on the padded image: cropping the centre ``S`` pixels of a
    ``P = S + 2·pad`` output is the same as sampling an ``S``-pixel grid whose normalised
    coordinates are shrunk by ``S/P``. Sampling ``x − pad_value`` with zero padding makes
    anything outside the padded canvas the pad colour too.
    """
    batch, _, size, _ = images.shape
    pad, jitter = config.pad_pixels(size), config.jitter_pixels(size)
    padded_size = size + 2 * pad
    padded = F.pad(images - config.pad_value, [pad] * 4, value=0.0)
    shift = torch.randint(-jitter, jitter + 1, (batch, 2), generator=generator)
    low, high = config.scale_range
    scale = low + (high - low) * torch.rand(batch, generator=generator)
    angle = (2 * torch.rand(batch, generator=generator) - 1) * math.radians(config.rotation_degrees)
    # Output coords → input coords: inverse of "scale up by s, rotate by angle".
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    crop = size / padded_size
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * crop, -sin * crop
    theta[:, 1, 0], theta[:, 1, 1] = sin * crop, cos * crop
    theta[:, :, 2] = 2 * shift.float() / padded_size
    grid = F.affine_grid(theta.to(images), [batch, 3, size, size], align_corners=False)
    sampled = F.grid_sample(
        padded, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return sampled + config.pad_value


def spectrum_scale(size: int, decay_power: float = 1.0) -> Tensor:
    """``1 / max(f, 1/size)^decay`` on the rfft2 frequency grid (size × size//2+1)."""
    fy = torch.fft.fftfreq(size).view(-1, 1)
    fx = torch.fft.rfftfreq(size).view(1, -1)
    freq = (fy**2 + fx**2).sqrt()
    return 1.0 / freq.clamp_min(1.0 / size) ** decay_power


def colour_matrix() -> Tensor:
    m = torch.tensor(COLOUR_CORRELATION_SQRT)
    return m / m.norm(dim=0).max()


class FourierImage:
    """Images as decorrelated Fourier coefficients (see the module docstring)."""

    def __init__(self, batch: int, size: int, config: ActMaxConfig, generator: torch.Generator,
                 device: torch.device) -> None:
        shape = (batch, 3, size, size // 2 + 1, 2)
        init = config.spectrum_std * torch.randn(shape, generator=generator)
        self.coefficients = init.to(device).requires_grad_(True)
        self.scale = spectrum_scale(size, config.decay_power).to(device)
        self.colour = colour_matrix().to(device)
        self.size = size

    def parameters(self) -> list[Tensor]:
        return [self.coefficients]

    def image(self) -> Tensor:
        spectrum = torch.view_as_complex(self.coefficients) * self.scale
        decorrelated = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4.0
        mixed = torch.einsum("rc,bchw->brhw", self.colour, decorrelated)
        return torch.sigmoid(mixed)

    def project(self) -> None:
        """Nothing to do: the sigmoid keeps every image in [0, 1]."""


class PixelImage:
    """Images as raw pixels in [0, 1], clamped after every step (the plain parametrisation)."""

    def __init__(self, batch: int, size: int, config: ActMaxConfig, generator: torch.Generator,
                 device: torch.device) -> None:
        start = config.pad_value + config.init_std * torch.randn(batch, 3, size, size,
                                                                 generator=generator)
        self.pixels = start.clamp(0, 1).to(device).requires_grad_(True)

    def parameters(self) -> list[Tensor]:
        return [self.pixels]

    def image(self) -> Tensor:
        return self.pixels

    def project(self) -> None:
        with torch.no_grad():
            self.pixels.clamp_(0, 1)


class _LatentProbe:
    """Model + SAE encoder as one function ``pixels in [0,1] → latents`` (hooks the head input)."""

    def __init__(self, model: nn.Module, encoder: EncoderLike, config: ActMaxConfig) -> None:
        self.model = model
        device = next(model.parameters()).device
        weight, bias = encoder_weights(encoder)
        _, _, self.linear = final_linear(model)
        if weight.shape[1] != self.linear.in_features:
            raise ValueError(
                f"SAE encoder expects {weight.shape[1]}-dim activations but the model's final "
                f"linear layer receives {self.linear.in_features}"
            )
        self.weight, self.bias = weight.to(device), bias.to(device)
        self.mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(config.std, device=device).view(1, 3, 1, 1)

    def __call__(self, pixels: Tensor) -> Tensor:
        captured: list[Tensor] = []
        handle = self.linear.register_forward_pre_hook(
            lambda _m, inputs: captured.append(inputs[0])
        )
        try:
            self.model((pixels - self.mean) / self.std)
        finally:
            handle.remove()
        return captured[-1] @ self.weight.T + self.bias


def _feature_list(features: int | Sequence[int], n_latents: int) -> list[int]:
    """``features`` as a non-empty list of latent indices in range (else a ValueError)."""
    feature_list = [features] if isinstance(features, int) else [int(k) for k in features]
    if not feature_list or any(not 0 <= k < n_latents for k in feature_list):
        raise ValueError(f"features must be latent indices in 0..{n_latents - 1}, got {features}")
    return feature_list


def _ascent_step(param: FourierImage | PixelImage, probe: _LatentProbe, optimizer: torch.optim.Optimizer, rows: torch.Tensor,
                 index: torch.Tensor, config: ActMaxConfig, generator: torch.Generator) -> torch.Tensor:
    """One Adam step up the objective on a fresh random transform (then the projection back to
    valid pixels); returns each image's latent before the step."""
    with torch.enable_grad():
        pixels = param.image()
        latents = probe(random_transform(pixels, config, generator))[rows, index]
        objective = (
            config.sign * latents
            - config.tv_weight * total_variation(pixels)
            - config.l2_weight * (pixels - 0.5).pow(2).mean(dim=(1, 2, 3))
        )
        tensors = param.parameters()
        for tensor, gradient in zip(tensors, torch.autograd.grad(-objective.sum(), tensors), strict=True):
            tensor.grad = gradient
    optimizer.step()
    param.project()
    return latents


def activation_maximization(
    model: nn.Module,
    encoder: EncoderLike,
    features: int | Sequence[int],
    config: ActMaxConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> ActMaxResult:
    """Optimise one image per feature so that its latent is as large (``sign=-1``: small) as
    possible under random transforms; see the module docstring for the exact objective."""
    config = config or ActMaxConfig()
    problems = config.validate()
    if problems:
        raise ValueError("invalid activation-maximisation settings: " + "; ".join(problems))
    probe = _LatentProbe(model, encoder, config)
    feature_list = _feature_list(features, probe.weight.shape[0])

    device = probe.weight.device
    generator = torch.Generator().manual_seed(config.seed)
    size = config.image_size
    kind = FourierImage if config.parametrization == "fourier" else PixelImage
    param = kind(len(feature_list), size, config, generator, device)
    optimizer = torch.optim.Adam(param.parameters(), lr=config.lr)
    index = torch.tensor(feature_list, device=device)
    rows = torch.arange(len(feature_list), device=device)
    keep = set(config.snapshot_steps())
    reporter = ProgressReporter("activation maximisation", config.steps, progress)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            start_activation = probe(param.image())[rows, index].cpu()
        trace, snapshots = [], []
        for step in range(1, config.steps + 1):
            check_cancel(cancel)
            latents = _ascent_step(param, probe, optimizer, rows, index, config, generator)
            trace.append(latents.detach().cpu())
            if step in keep:
                with torch.no_grad():
                    snapshots.append((step, param.image().detach().cpu().clone()))
            reporter.report(step, f"step {step}/{config.steps}", activation=latents.mean().item())
        with torch.no_grad():
            final_activation = probe(param.image())[rows, index].cpu()
    finally:
        model.train(was_training)
    return ActMaxResult(
        features=feature_list,
        images=snapshots[-1][1],
        snapshots=snapshots,
        trace=torch.stack(trace),
        start_activation=start_activation,
        final_activation=final_activation,
    )
