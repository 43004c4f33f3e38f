"""Ground-truth scores: AUROC by hand, best latent with its sign, pointing game, energy, shared part."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from core.validate.groundtruth import (
    auroc,
    auroc_matrix,
    average_ranks,
    best_latent_per_concept,
    best_shared_part_latent,
    dilate,
    energy_inside_mask,
    pointing_game,
    saliency_localisation,
    shared_part_tracking,
    tolerance_pixels,
    within_class_aurocs,
)


def pairwise_auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Definition: P(score of a positive > score of a negative), ties counting one half."""
    pos, neg = scores[positives], scores[~positives]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auroc_hand_computed() -> None:
    # Positives 0.35 and 0.8 vs negatives 0.1 and 0.4: 3 of 4 pairs ordered correctly.
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    # Ties: (1 vs 1) half, (1 vs 2) lost, (2 vs 1) won, (2 vs 2) half → 2 / 4.
    assert auroc(np.array([1.0, 1.0, 2.0, 2.0]), np.array([0, 1, 0, 1])) == 0.5
    assert auroc(np.array([3.0, 2.0, 1.0]), np.array([1, 0, 0])) == 1.0
    assert auroc(np.array([3.0, 2.0, 1.0]), np.array([0, 0, 1])) == 0.0
    assert np.isnan(auroc(np.array([1.0, 2.0]), np.array([1, 1])))


def test_average_ranks_and_auroc_match_definition_with_ties() -> None:
    rng = np.random.default_rng(0)
    assert average_ranks(np.array([5.0, 1.0, 5.0, 3.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    scores = rng.integers(0, 5, size=(40, 3)).astype(float)  # many ties
    labels = rng.random((40, 2)) < 0.4
    table = auroc_matrix(scores, labels)
    for latent, concept in itertools.product(range(3), range(2)):
        expected = pairwise_auroc(scores[:, latent], labels[:, concept])
        assert table[latent, concept] == pytest.approx(expected, abs=1e-12)


def test_best_latent_reports_negative_sign() -> None:
    rng = np.random.default_rng(1)
    presence = rng.random((200, 2)) < 0.5
    latents = rng.normal(size=(200, 5))
    latents[:, 3] -= 3.0 * presence[:, 0]  # latent 3 falls when concept 0 is present
    latents[:, 1] += 1.0 * presence[:, 1]  # latent 1 weakly rises with concept 1
    first, second = best_latent_per_concept(latents, presence, ["tower", "stripes"])
    assert (first.name, first.latent, first.sign) == ("tower", 3, -1)
    assert first.auroc < 0.1 and first.strength == pytest.approx(1 - first.auroc)
    assert (second.latent, second.sign) == (1, 1) and 0.65 < second.auroc < 0.9


def test_tolerance_and_dilation_by_hand() -> None:
    assert tolerance_pixels(224) == 15.0
    assert tolerance_pixels(64) == pytest.approx(15 * 64 / 224)
    mask = np.zeros((1, 7, 7), bool)
    mask[0, 3, 3] = True
    assert dilate(mask, 1.0).sum() == 5  # the pixel and its 4 neighbours
    assert dilate(mask, 1.5).sum() == 9  # diagonals are √2 away
    assert dilate(mask, 2.0).sum() == 13


def test_pointing_game_hits_chance_and_skips() -> None:
    masks = np.zeros((4, 8, 8), bool)
    masks[:, 2, 2] = True
    maps = np.zeros((4, 8, 8))
    maps[0, 2, 3] = 1.0  # 1 px from the mask: hit with tolerance 1
    maps[1, 4, 2] = 1.0  # 2 px away: miss
    maps[2] = 0.0  # constant map points nowhere: skipped
    masks[3] = False  # no concept in this image: skipped
    maps[3, 2, 2] = 1.0
    result = pointing_game(maps, masks, tolerance_px=1.0)
    assert result.hits.tolist() == [True, False, False, False]
    assert result.evaluated.tolist() == [True, True, False, False]
    assert result.hit_rate == 0.5
    assert result.chance_rate == pytest.approx(5 / 64)
    assert result.ratio_to_chance == pytest.approx(0.5 / (5 / 64))
    assert result.summary()["n_skipped"] == 2


def test_energy_inside_mask() -> None:
    maps = np.zeros((2, 4, 4))
    maps[0, 0, 0], maps[0, 3, 3] = 3.0, 1.0
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True
    masks[1, 0, 0] = True  # zero map: undefined
    energy = energy_inside_mask(maps, masks)
    assert energy[0] == 0.75 and np.isnan(energy[1])
    with pytest.raises(ValueError, match="non-negative"):
        energy_inside_mask(-maps - 1, masks)
    with pytest.raises(ValueError, match="same shape"):
        energy_inside_mask(maps, masks[:, :2])


def test_shared_part_tracking_separates_part_from_class_identity() -> None:
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 2], 100)
    presence = np.zeros((300, 2), bool)
    presence[:100, 1] = rng.random(100) < 0.8  # "tower": most of class 0 ...
    presence[100:200, 1] = rng.random(100) < 0.3  # ... and some of class 1
    latents = rng.normal(size=(300, 4))
    latents[:, 2] += 3.0 * presence[:, 1]  # tracks the part itself
    latents[:, 0] += 6.0 * (labels == 0)  # tracks class 0 only (correlated with the part)

    found = shared_part_tracking(latents, presence, labels, concept=1, classes=(0, 1))
    assert (found.latent, found.sign) == (2, 1)
    assert min(found.auroc_per_class) > 0.9 and found.tracks_both

    class_detector = shared_part_tracking(
        latents, presence, labels, concept=1, classes=(0, 1), latent=0
    )
    assert class_detector.auroc_overall > 0.7  # looks good when classes are pooled ...
    assert max(abs(v - 0.5) for v in class_detector.auroc_per_class) < 0.2  # ... but is not
    assert not class_detector.tracks_both
    assert class_detector.to_dict()["tracks_both"] is False


def test_shared_part_latent_is_chosen_by_its_worse_class_not_pooled() -> None:
    """The demo's failure: pooled over both classes, a latent that tells the classes apart and
    tracks the part in one of them beats the latent that tracks the part in both."""
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1], 400)
    presence = np.zeros((800, 1), bool)
    presence[:400, 0] = rng.random(400) < 0.8  # the part in most of class 0, some of class 1
    presence[400:, 0] = rng.random(400) < 0.3
    latents = rng.normal(size=(800, 3))
    latents[:, 0] += 4.0 * (labels == 0) + 3.0 * (presence[:, 0] & (labels == 1))
    latents[:, 2] += 1.2 * presence[:, 0]  # tracks the part (AUROC ≈ 0.8) in both classes

    pooled = auroc_matrix(latents, presence)[:, 0]
    assert np.argmax(np.abs(pooled - 0.5)) == 0  # the pooled choice is the confounded latent
    per_class = within_class_aurocs(latents, presence, labels, 0, (0, 1))
    assert per_class.shape == (2, 3)
    assert abs(per_class[0, 0] - 0.5) < 0.1 and per_class[1, 0] > 0.9
    assert np.all((per_class[:, 2] > 0.75) & (per_class[:, 2] < 0.85))

    assert best_shared_part_latent(latents, presence, labels, 0, (0, 1)) == (2, 1)
    found = shared_part_tracking(latents, presence, labels, concept=0, classes=(0, 1))
    assert found.latent == 2 and found.tracks_both
    assert found.auroc_per_class == pytest.approx(tuple(per_class[:, 2]))
    # A latent that falls with the part is found with sign −1 and oriented AUROCs.
    flipped = latents.copy()
    flipped[:, 2] *= -1
    assert best_shared_part_latent(flipped, presence, labels, 0, (0, 1)) == (2, -1)
    down = shared_part_tracking(flipped, presence, labels, concept=0, classes=(0, 1))
    assert down.sign == -1 and down.auroc_per_class == pytest.approx(found.auroc_per_class)
    # Chosen elsewhere (latent and sign given), the same samples are only scored.
    given = shared_part_tracking(latents, presence, labels, 0, (0, 1), latent=2, sign=1)
    assert given.auroc_per_class == found.auroc_per_class
    with pytest.raises(ValueError, match="within each class"):
        best_shared_part_latent(latents, np.zeros_like(presence), labels, 0, (0, 1))


def test_saliency_localisation_matches_direct_scoring() -> None:
    import torch
    import torchvision

    from core.validate.saliency import grad_cam, grad_fam

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=2).eval()
    encoder = torch.nn.Linear(512, 4)
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    labels = np.array([0, 1, 0, 1, 1, 0])
    masks = np.zeros((6, 32, 32), bool)
    masks[:, 8:20, 10:24] = True
    scores = saliency_localisation(
        model,
        encoder,
        images,
        labels,
        masks,
        dominant=[3, 1],
        class_names=["a", "b"],
        batch_size=4,
    )
    fam = grad_fam(model, encoder, images, torch.tensor([3, 1, 3, 1, 1, 3]), "layer2").numpy()
    cam = grad_cam(model, images, torch.tensor(labels), "layer2").numpy()
    for key, maps in (("grad_fam", fam), ("grad_cam", cam)):
        result = scores[key]
        assert result.layer == "layer2"
        rows = labels == 1
        direct = pointing_game(maps[rows], masks[rows])
        assert result.per_class["b"]["hit_rate"] == direct.hit_rate
        assert result.per_class["b"]["energy_inside"] == pytest.approx(
            np.nanmean(energy_inside_mask(maps[rows], masks[rows]))
        )
        assert result.overall["chance_rate"] == pytest.approx(
            pointing_game(maps, masks).chance_rate
        )
        assert result.overall["mask_area_share"] == pytest.approx(12 * 14 / 32**2)
