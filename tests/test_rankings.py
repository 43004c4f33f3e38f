"""Known-answer tests for class means, per-class feature ranking and top-activating samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.discover.rankings import (
    NO_FEATURE,
    class_means,
    distinct_dominants,
    dominant_features,
    dominant_signs,
    feature_class_matrix,
    rank_features,
    top_activating,
)

# 3 classes × 2 samples, 4 latents. Means worked by hand:
#   μ0 = (2, 1, 0, 0), μ1 = (0, −3, 1, 0), μ2 = (0, 0, −1, 0.5)
U = torch.tensor(
    [
        [3.0, 1.0, 0.0, 0.0],
        [0.0, -4.0, 1.0, 0.0],
        [1.0, 0.0, -1.0, 0.5],
        [1.0, 1.0, 0.0, 0.0],
        [0.0, -2.0, 1.0, 0.0],
        [-1.0, 0.0, -1.0, 0.5],
    ]
)
LABELS = torch.tensor([0, 1, 2, 0, 1, 2])
EXPECTED_M = np.array([[2.0, 1.0, 0.0, 0.0], [0.0, -3.0, 1.0, 0.0], [0.0, 0.0, -1.0, 0.5]])


def test_class_means_known_answer() -> None:
    np.testing.assert_allclose(class_means(U, LABELS, 3), EXPECTED_M)
    np.testing.assert_allclose(class_means(U.numpy(), LABELS.numpy(), 3), EXPECTED_M)


def test_ranking_dominants_and_signs_known_answer() -> None:
    # |μ0| = (2,1,0,0): the tie between latents 2 and 3 goes to the lower index
    np.testing.assert_array_equal(rank_features(EXPECTED_M), [[0, 1, 2, 3], [1, 2, 0, 3], [2, 3, 0, 1]])
    np.testing.assert_array_equal(dominant_features(EXPECTED_M), [0, 1, 2])
    np.testing.assert_array_equal(dominant_signs(EXPECTED_M), [1, -1, -1])
    np.testing.assert_array_equal(dominant_signs(EXPECTED_M, features=[3, 0, 3]), [0, 0, 1])
    assert distinct_dominants(EXPECTED_M)


def test_ties_break_to_the_lower_index_and_shared_dominants_are_detected() -> None:
    np.testing.assert_array_equal(rank_features(np.array([[1.0, -1.0, 0.0]])), [[0, 1, 2]])
    shared = np.array([[2.0, 0.0], [3.0, 1.0]])
    np.testing.assert_array_equal(dominant_features(shared), [0, 0])
    assert not distinct_dominants(shared)


def test_class_without_samples_gets_no_dominant_feature() -> None:
    M = class_means(U, LABELS, 4)
    assert np.isnan(M[3]).all()
    np.testing.assert_array_equal(dominant_features(M), [0, 1, 2, NO_FEATURE])
    np.testing.assert_array_equal(dominant_signs(M), [1, -1, -1, 0])
    assert distinct_dominants(M)


def test_labels_out_of_range_are_rejected() -> None:
    with pytest.raises(ValueError, match="class count"):
        class_means(U, LABELS, 2)
    with pytest.raises(ValueError, match="one label per sample"):
        class_means(U, LABELS[:3], 3)


def test_top_activating_known_answer() -> None:
    u = np.array([[1.0, -2.0], [3.0, 0.0], [2.0, -5.0], [3.0, 1.0]])
    top = top_activating(u, k=2)
    np.testing.assert_array_equal(top["pos"], [[1, 3], [3, 1]])  # feature 0: the tie 3.0 → index 1 first
    np.testing.assert_array_equal(top["neg"], [[0, 2], [2, 0]])
    assert top_activating(torch.from_numpy(u), k=10)["pos"].shape == (2, 4)


def test_feature_class_matrix_scalings() -> None:
    M = np.array([[2.0, -1.0], [-4.0, 0.5]])
    np.testing.assert_allclose(feature_class_matrix(M, "feature"), [[0.5, -1.0], [-1.0, 0.5]])
    np.testing.assert_allclose(feature_class_matrix(M, "class"), [[1.0, -0.5], [-1.0, 0.125]])
    np.testing.assert_allclose(feature_class_matrix(M, "global"), M / 4)
    np.testing.assert_allclose(feature_class_matrix(np.zeros((2, 2))), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="mode"):
        feature_class_matrix(M, "rows")
