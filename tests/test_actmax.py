"""Activation maximisation: it raises the latent, is reproducible, reports and cancels."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from core.jobs import CancelToken, JobCancelled, Progress
from core.validate.actmax import (
    ActMaxConfig,
    activation_maximization,
    random_transform,
    total_variation,
)


@pytest.fixture(scope="module")
def model_and_encoder() -> tuple[nn.Module, nn.Linear]:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=5).eval(), nn.Linear(512, 8)


def small_config(**overrides) -> ActMaxConfig:
    return ActMaxConfig(**{"steps": 12, "image_size": 32, "snapshots": 3, **overrides})


def test_target_latent_increases_and_run_is_reproducible(model_and_encoder) -> None:
    model, encoder = model_and_encoder
    reports: list[Progress] = []
    result = activation_maximization(
        model, encoder, [1, 6], small_config(), progress=reports.append
    )
    assert result.images.shape == (2, 3, 32, 32)
    assert 0.0 <= result.images.min() and result.images.max() <= 1.0
    assert (result.final_activation > result.start_activation).all()
    assert (result.trace[-3:].mean(0) > result.trace[:3].mean(0)).all()
    assert result.trace.shape == (12, 2)
    assert [step for step, _ in result.snapshots] == [3, 6, 9, 12]
    assert torch.equal(result.snapshots[-1][1], result.images)
    assert len(reports) == 12 and reports[-1].fraction == 1.0

    again = activation_maximization(model, encoder, [1, 6], small_config())
    assert torch.equal(again.images, result.images)
    other_seed = activation_maximization(model, encoder, [1, 6], small_config(seed=1))
    assert not torch.equal(other_seed.images, result.images)


def test_negative_sign_drives_latent_down(model_and_encoder) -> None:
    model, encoder = model_and_encoder
    result = activation_maximization(model, encoder, 3, small_config(sign=-1, snapshots=0))
    assert result.final_activation[0] < result.start_activation[0] - 0.1
    assert [step for step, _ in result.snapshots] == [12]


def test_batched_features_equal_separate_runs(model_and_encoder) -> None:
    """Images of a batch do not interact: the first image matches a run of that feature alone.

    Transforms are disabled because the number of random draws per step depends on the batch
    size; the start noise of image 0 is the same prefix of the seeded stream in both runs.
    """
    model, encoder = model_and_encoder
    config = small_config(steps=4, jitter=0, scale_range=(1.0, 1.0), rotation_degrees=0.0)
    together = activation_maximization(model, encoder, [2, 5], config)
    alone = activation_maximization(model, encoder, [2], config)
    torch.testing.assert_close(together.start_activation[0], alone.start_activation[0])
    torch.testing.assert_close(together.images[0], alone.images[0], atol=1e-5, rtol=0)


def test_cancel_stops_the_job(model_and_encoder) -> None:
    model, encoder = model_and_encoder
    token = CancelToken()

    def cancel_after_two(report: Progress) -> None:
        if report.done >= 2:
            token.cancel()

    with pytest.raises(JobCancelled):
        activation_maximization(
            model, encoder, 0, small_config(), progress=cancel_after_two, cancel=token
        )


def test_bad_settings_are_named(model_and_encoder) -> None:
    model, encoder = model_and_encoder
    with pytest.raises(ValueError, match="0..7"):
        activation_maximization(model, encoder, 8, small_config())
    with pytest.raises(ValueError, match="scale range"):
        activation_maximization(model, encoder, 0, small_config(scale_range=(1.2, 1.1)))
    with pytest.raises(ValueError, match="512"):
        activation_maximization(model, nn.Linear(64, 4), 0, small_config())


def test_transform_identity_and_pad_colour() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 16, 16, generator=generator)
    identity = ActMaxConfig(jitter=0, scale_range=(1.0, 1.0), rotation_degrees=0.0)
    torch.testing.assert_close(random_transform(images, identity, generator), images)

    # Shrinking a white 16 px image by 2 leaves it as the centre 8×8, surrounded by pad grey.
    shrink = ActMaxConfig(jitter=0, scale_range=(0.5, 0.5), rotation_degrees=0.0, pad=16)
    out = random_transform(torch.ones(1, 3, 16, 16), shrink, generator)[0]
    expected = torch.full((3, 16, 16), 0.5)
    expected[:, 4:12, 4:12] = 1.0
    torch.testing.assert_close(out, expected)


def test_total_variation_known_answer() -> None:
    # Vertical stripes 0,1,0,1 on a 4×4 grey image: every horizontal step differs by 1.
    stripes = torch.tensor([0.0, 1.0, 0.0, 1.0]).repeat(1, 3, 4, 1)
    assert total_variation(stripes).item() == pytest.approx(1.0)  # dx mean 1, dy mean 0
    assert total_variation(torch.full((1, 3, 4, 4), 0.3)).item() == 0.0


def test_transforms_are_sized_in_proportion_to_the_image() -> None:
    config = ActMaxConfig()
    assert (config.pad_pixels(224), config.jitter_pixels(224)) == (16, 8)  # the paper's sizes
    assert (config.pad_pixels(64), config.jitter_pixels(64)) == (5, 2)
    assert ActMaxConfig(pad=16, jitter=8).pad_pixels(64) == 16  # explicit pixels win


def test_fourier_parametrisation() -> None:
    from core.validate.actmax import FourierImage, colour_matrix, spectrum_scale

    scale = spectrum_scale(8)
    assert scale[0, 0] == 8.0  # DC clamped at f = 1/size
    assert scale[0, 1] == pytest.approx(8.0) and scale[0, 4] == pytest.approx(2.0)  # 1/f
    assert float(colour_matrix().norm(dim=0).max()) == pytest.approx(1.0)
    image = FourierImage(2, 8, ActMaxConfig(), torch.Generator().manual_seed(0), torch.device("cpu"))
    with torch.no_grad():
        image.coefficients.zero_()
    torch.testing.assert_close(image.image(), torch.full((2, 3, 8, 8), 0.5))  # sigmoid(0)
    # The sigmoid keeps any spectrum viewable: a wild one (σ = 10) stays finite within [0, 1]
    # (float32 rounds a saturated sigmoid to exactly 0 or 1), a moderate one strictly inside.
    # Seeded: the unseeded draw saturated now and then and the old strict bound failed.
    g = torch.Generator().manual_seed(0)
    for sigma, strict in ((10.0, False), (0.5, True)):
        with torch.no_grad():
            image.coefficients.copy_(sigma * torch.randn(image.coefficients.shape, generator=g))
        pixels = image.image()
        assert bool(torch.isfinite(pixels).all())
        if strict:
            assert pixels.min() > 0 and pixels.max() < 1
        else:
            assert pixels.min() >= 0 and pixels.max() <= 1


def test_pixel_parametrisation_still_ascends(model_and_encoder) -> None:
    model, encoder = model_and_encoder
    result = activation_maximization(model, encoder, 2, small_config(parametrization="pixel"))
    assert result.final_activation[0] > result.start_activation[0]
    with pytest.raises(ValueError, match="parametrization"):
        activation_maximization(model, encoder, 2, small_config(parametrization="wavelet"))
