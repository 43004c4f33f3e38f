"""The embedded Shapes dataset: determinism, balance, ground truth, and no pixel-statistic leak."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import DataConfig
from core.discover.shapes import (
    CLASS_TEXTURES,
    CONCEPT_NAMES,
    SHAPES_CLASSES,
    SHARED_PART,
    SHARED_PART_CLASSES,
    SHARED_PART_RATES,
    TEXTURES,
    generate_shapes,
    shapes_splits,
)


@pytest.fixture(scope="module")
def data():
    return generate_shapes(200, image_size=64, seed=7)


def test_same_seed_gives_identical_bytes_and_other_seed_differs():
    a = generate_shapes(30, image_size=32, seed=3)
    b = generate_shapes(30, image_size=32, seed=3)
    c = generate_shapes(30, image_size=32, seed=4)
    for name in ("images", "labels", "shape_masks", "part_masks", "concept_present"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    assert a.images.tobytes() != c.images.tobytes()
    # Not just a different label order: no image of seed 4 equals any image of seed 3.
    flat_a = {img.tobytes() for img in a.images}
    assert not flat_a & {img.tobytes() for img in c.images}


def test_array_shapes_and_dtypes(data):
    n, size, k = 200, 64, len(CONCEPT_NAMES)
    assert data.images.shape == (n, size, size, 3) and data.images.dtype == np.uint8
    assert data.labels.shape == (n,) and data.labels.dtype == np.int64
    assert data.masks.shape == (n, k, size, size) and data.masks.dtype == bool
    assert data.concept_present.shape == (n, k)
    assert data.class_names == list(SHAPES_CLASSES)
    assert data.concept_names == list(SHAPES_CLASSES) + [SHARED_PART] + list(TEXTURES)


@pytest.mark.parametrize("n", [50, 47])
def test_classes_are_balanced(n):
    counts = np.bincount(generate_shapes(n, image_size=16, seed=1).labels, minlength=10)
    assert counts.sum() == n
    assert counts.max() - counts.min() <= (0 if n % 10 == 0 else 1)


def test_presence_flags_follow_the_class_definitions(data):
    present = data.concept_present
    n_classes = len(SHAPES_CLASSES)
    # Exactly one shape concept per image: its own class.
    assert np.array_equal(present[:, :n_classes], np.eye(n_classes, dtype=bool)[data.labels])
    for texture in TEXTURES:
        column = present[:, CONCEPT_NAMES.index(texture)]
        expected = np.array([CLASS_TEXTURES[SHAPES_CLASSES[y]] == texture for y in data.labels])
        assert np.array_equal(column, expected), texture


def test_shared_part_only_in_its_two_classes_at_the_stated_rates(data):
    has_part = data.concept_present[:, CONCEPT_NAMES.index(SHARED_PART)]
    part_classes = [SHAPES_CLASSES.index(name) for name in SHARED_PART_CLASSES]
    assert not has_part[~np.isin(data.labels, part_classes)].any()
    for name in SHARED_PART_CLASSES:
        members = data.labels == SHAPES_CLASSES.index(name)
        assert has_part[members].sum() == round(SHARED_PART_RATES[name] * members.sum())
    # Most of class A, a minority of class B (the paper's church / petrol pump situation).
    rate_a, rate_b = (SHARED_PART_RATES[name] for name in SHARED_PART_CLASSES)
    assert rate_a >= 0.7 and 0.1 <= rate_b <= 0.4


def test_masks_nonempty_exactly_when_present_and_away_from_border(data):
    masks = data.masks
    assert np.array_equal(masks.any(axis=(2, 3)), data.concept_present)
    # Objects never touch the border, so no concept is cut off by the frame.
    border = np.zeros(masks.shape[-2:], dtype=bool)
    border[[0, -1], :] = True
    border[:, [0, -1]] = True
    assert not (masks & border).any()
    # The part mask holds only pixels not covered by the shape.
    assert not (data.part_masks & data.shape_masks).any()
    # Texture masks are the whole shape of a textured class.
    for texture in TEXTURES:
        t = CONCEPT_NAMES.index(texture)
        rows = data.concept_present[:, t]
        assert np.array_equal(masks[rows, t], data.shape_masks[rows])


def test_concept_masks_subset_matches_full_masks(data):
    idx = np.array([5, 0, 199, 42])
    assert np.array_equal(data.concept_masks(idx), data.masks[idx])


def test_masks_cover_exactly_the_pixels_the_objects_changed():
    with_objects = generate_shapes(60, image_size=64, seed=11)
    scene_only = generate_shapes(60, image_size=64, seed=11, objects=False)
    assert not scene_only.concept_present.any()
    changed = (with_objects.images != scene_only.images).any(axis=-1)
    drawn = with_objects.shape_masks | with_objects.part_masks
    assert not (changed & ~drawn).any(), "pixels changed outside the concept masks"
    iou = (changed & drawn).sum() / drawn.sum()
    assert iou > 0.99


def test_shapes_are_large(data):
    rows = data.shape_masks.any(axis=2)
    cols = data.shape_masks.any(axis=1)
    extent = np.maximum(rows.sum(axis=1), cols.sum(axis=1)) / data.image_size
    assert extent.min() >= 0.3 and extent.max() <= 0.65
    visible_part = data.part_masks.sum(axis=(1, 2))[data.concept_present[:, 10]]
    assert visible_part.min() >= 15  # the tower is big enough to be seen and pointed at


def test_mean_colour_does_not_reveal_the_class():
    """Nearest class-mean on the image's mean RGB stays near chance (10 %)."""
    train = generate_shapes(600, image_size=32, seed=21)
    test = generate_shapes(400, image_size=32, seed=22)
    train_rgb = train.images.reshape(len(train), -1, 3).mean(axis=1)
    test_rgb = test.images.reshape(len(test), -1, 3).mean(axis=1)
    centroids = np.stack([train_rgb[train.labels == c].mean(axis=0) for c in range(10)])
    distances = np.linalg.norm(test_rgb[:, None, :] - centroids[None], axis=-1)
    accuracy = (distances.argmin(axis=1) == test.labels).mean()
    assert accuracy < 0.4
    # Same for brightness alone (1-D nearest class mean).
    train_y, test_y = train_rgb.mean(axis=1), test_rgb.mean(axis=1)
    class_y = np.array([train_y[train.labels == c].mean() for c in range(10)])
    accuracy_y = (np.abs(test_y[:, None] - class_y).argmin(axis=1) == test.labels).mean()
    assert accuracy_y < 0.4


def test_splits_use_disjoint_seeds_and_requested_sizes():
    train, test = shapes_splits(DataConfig(n_train=30, n_test=20, image_size=32, seed=5))
    assert (len(train), len(test)) == (30, 20)
    assert not {img.tobytes() for img in train.images} & {img.tobytes() for img in test.images}
    again, _ = shapes_splits(DataConfig(n_train=30, n_test=20, image_size=32, seed=5))
    assert again.images.tobytes() == train.images.tobytes()


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="≥ 1"):
        generate_shapes(0)
    with pytest.raises(ValueError, match="16 px"):
        generate_shapes(10, image_size=8)
