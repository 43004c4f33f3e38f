"""The feature card's numbers (core.workflow.feature_card) against hand computation."""

from __future__ import annotations

import numpy as np
import pytest

from core.workflow.feature_card import (
    class_histogram,
    decoder_cosine,
    feature_card,
    nearest_features,
    quantile_levels,
    quantile_samples,
)


def test_class_histogram_counts_each_class_in_shared_bins() -> None:
    values = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 4.0])
    labels = np.array([0, 0, 1, 1, 0, 1])
    edges, counts = class_histogram(values, labels, num_classes=3, n_bins=4)
    np.testing.assert_allclose(edges, [0.0, 1.0, 2.0, 3.0, 4.0])
    # bins [0,1) [1,2) [2,3) [3,4]: class 0 has 0, 1, 4; class 1 has 2, 3, 4; class 2 nothing
    assert counts.tolist() == [[1, 1, 0, 1], [0, 0, 1, 2], [0, 0, 0, 0]]
    assert counts.sum() == len(values)


def test_class_histogram_of_a_constant_feature_is_one_centred_bin() -> None:
    edges, counts = class_histogram(np.array([2.0, 2.0]), np.array([0, 1]), 2, n_bins=1)
    np.testing.assert_allclose(edges, [1.5, 2.5])
    assert counts.tolist() == [[1], [1]]


def test_decoder_cosine_and_nearest_by_absolute_cosine() -> None:
    # columns: e0, -e0 (opposite: same axis), (1,1)/√2-ish, e1, zero column
    D = np.array([[1.0, -2.0, 1.0, 0.0, 0.0],
                  [0.0, 0.0, 1.0, 3.0, 0.0]])
    cosine = decoder_cosine(D, 0)
    np.testing.assert_allclose(cosine, [1.0, -1.0, 1 / np.sqrt(2), 0.0, 0.0])
    nearest, cos = nearest_features(D, 0, n=3)
    assert nearest.tolist() == [1, 2, 3]  # |−1| first, then 0.707, then the tie 0 at index 3
    np.testing.assert_allclose(cos, [-1.0, 1 / np.sqrt(2), 0.0])


def test_quantile_samples_pick_the_closest_sample_to_each_level() -> None:
    np.testing.assert_allclose(quantile_levels(4), [0.125, 0.375, 0.625, 0.875])
    values = np.array([10.0, 0.0, 5.0, 2.0, 7.0])  # sorted: 0 2 5 7 10
    at, samples = quantile_samples(values, np.array([0.0, 0.5, 1.0, 0.3]))
    # numpy's linear quantile: q=0.3 → position 1.2 between 2 and 5 → 2.6, closest sample 2.0
    np.testing.assert_allclose(at, [0.0, 5.0, 10.0, 2.6])
    assert samples.tolist() == [1, 2, 0, 3]


def test_feature_card_by_hand() -> None:
    # 4 samples, 2 classes, d = 2, h = 3
    D = np.array([[1.0, 0.0, 1.0],
                  [0.0, 1.0, 1.0]])
    W = np.array([[2.0, -1.0],
                  [0.5, 3.0]])
    u = np.array([[0.0, 1.0, 2.0],
                  [0.0, -3.0, 0.0],
                  [0.0, 4.0, 1.0],
                  [0.0, 0.5, 0.0]])
    labels = np.array([0, 1, 1, 0])
    card = feature_card(u, labels, W, D, feature=1, n_bins=2, n_samples=2, n_nearest=2)
    np.testing.assert_allclose(card.values, [1.0, -3.0, 4.0, 0.5])
    # direct effect W·D[:,1] = W[:, 1]
    np.testing.assert_allclose(card.direct_effect, [-1.0, 3.0])
    assert card.top.tolist() == [2, 0] and card.bottom.tolist() == [1, 3]
    # bins [-3, 0.5) [0.5, 4]: class 0 (1.0, 0.5) both in bin 1; class 1 (-3, 4) one each
    np.testing.assert_allclose(card.bin_edges, [-3.0, 0.5, 4.0])
    assert card.histogram.tolist() == [[0, 2], [1, 1]]
    # class means of the test split when none is given: class 0 (1 + 0.5)/2, class 1 (−3 + 4)/2
    np.testing.assert_allclose(card.class_means, [0.75, 0.5])
    # nearest to D[:,1] = e1: column 2 (cos 1/√2), then column 0 (cos 0)
    assert card.nearest.tolist() == [2, 0]
    np.testing.assert_allclose(card.nearest_cosine, [1 / np.sqrt(2), 0.0])
    # levels 0.25, 0.75 of sorted (−3, 0.5, 1, 4): positions 0.75 and 2.25, linear between neighbours
    np.testing.assert_allclose(card.quantile_values, [-3 + 0.75 * 3.5, 1.0 + 0.25 * 3.0])
    assert card.quantile_samples.tolist() == [3, 0]  # −0.375 is closest to 0.5; 1.75 to 1.0
    # stored class means win over the test split's
    M = np.array([[9.0, 8.0, 7.0], [6.0, 5.0, 4.0]])
    assert feature_card(u, labels, W, D, 1, M).class_means.tolist() == [8.0, 5.0]


def test_feature_card_refuses_a_feature_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        feature_card(np.zeros((1, 2)), np.zeros(1, np.int64), np.zeros((1, 3)), np.zeros((3, 2)), 2)


def test_card_over_the_memory_budget_computes_one_column_in_row_blocks(built_session_path) -> None:
    """A test split whose latents exceed the budget is encoded one feature column at a time in
    row blocks: the card is the in-memory card (same samples, same numbers)."""
    from core.store.session import Session
    from core.workflow.feature_card import latent_column, load_card_inputs, split_latents

    with Session.open(built_session_path, read_only=True) as ro:
        whole = load_card_inputs(ro, budget=1 << 40)
        n, h = whole.latents.shape
        tiny = 4 * 8 * (n * h) // 50  # a quarter of it holds a 50th of the latents
        chunked = load_card_inputs(ro, budget=tiny)
        assert whole.column is None and chunked.latents is None
        u = split_latents(ro)
        column = latent_column(ro, 5, budget=8 * 4 * 7 * (h + u.shape[1]))  # 7 rows a block
        np.testing.assert_allclose(column, u[:, 5], rtol=1e-12, atol=1e-12)
        for feature in (0, 5, h - 1):
            a, b = whole.card(feature), chunked.card(feature)
            np.testing.assert_allclose(b.values, a.values, rtol=1e-12, atol=1e-12)
            for name in ("top", "bottom", "quantile_samples", "histogram", "nearest"):
                np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=name)
        with pytest.raises(ValueError, match="out of range"):
            chunked.card(h)
