"""Dataset loading: image folders, CIFAR-100 pickles (safely), shapes, shared preprocessing."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.config import DataConfig
from core.discover.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ArrayImageSource,
    check_class_count,
    denormalize,
    load_dataset,
    load_image_file,
    normalize_uint8,
)
from core.discover.shapes import generate_shapes

# ---------------------------------------------------------------------------------------------
# helpers


def write_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_tree(root: Path, layout: dict[str, dict[str, int]], seed: int = 0) -> None:
    """``{"train": {"cat": 3, ...}, "val": {...}}`` → random RGB PNG/JPEG files of mixed sizes."""
    rng = np.random.default_rng(seed)
    for split, classes in layout.items():
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = rng.integers(20, 48, size=2)
                pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                suffix = ".png" if i % 2 else ".JPEG"
                write_image(root / split / name / f"img{i}{suffix}", pixels)


def folder_config(root: Path, **kw) -> DataConfig:
    return DataConfig(kind="imagefolder", path=str(root), image_size=kw.pop("image_size", 16), **kw)


# ---------------------------------------------------------------------------------------------
# shared preprocessing


def test_normalize_uint8_matches_hand_computation():
    batch = torch.zeros(2, 4, 5, 3, dtype=torch.uint8)
    batch[1, 2, 3] = torch.tensor([200, 100, 50], dtype=torch.uint8)
    x = normalize_uint8(batch)
    assert x.shape == (2, 3, 4, 5) and x.dtype == torch.float32
    # (200/255 − 0.485)/0.229, (100/255 − 0.456)/0.224, (50/255 − 0.406)/0.225 worked by hand.
    expected = torch.tensor([1.3070468, -0.2850140, -0.9329847])
    assert torch.allclose(x[1, :, 2, 3], expected, atol=1e-6)
    # A zero pixel maps to −mean/std.
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([-2.1179039, -2.0357143, -1.8044444]))


def test_denormalize_inverts_normalize_for_every_uint8_value():
    values = torch.arange(256, dtype=torch.uint8)
    batch = values.view(1, 16, 16, 1).expand(1, 16, 16, 3).contiguous()
    assert np.array_equal(denormalize(normalize_uint8(batch)), batch.numpy())
    single = denormalize(normalize_uint8(batch)[0])
    assert single.shape == (16, 16, 3)
    with pytest.raises(ValueError, match="expected"):
        normalize_uint8(torch.zeros(3, 4, 4, dtype=torch.uint8))


# ---------------------------------------------------------------------------------------------
# image folders


def test_image_folder_loads_and_skips_a_corrupt_file(tmp_path):
    write_tree(tmp_path, {"train": {"cat": 3, "dog": 2}, "val": {"cat": 1, "dog": 2}})
    (tmp_path / "train" / "dog" / "broken.jpg").write_bytes(os.urandom(500))
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    bundle = load_dataset(folder_config(tmp_path))
    assert bundle.class_names == ["cat", "dog"]
    assert bundle.train.skipped == 1 and bundle.test.skipped == 0
    assert len(bundle.train) == 5 and len(bundle.test) == 3
    assert bundle.train.labels.tolist() == [0, 0, 0, 1, 1]
    assert "1 unreadable skipped" in bundle.description
    x = bundle.train.load_batch([0, 4])
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    raw = bundle.train.raw_images([4])
    assert raw.shape == (1, 16, 16, 3) and raw.dtype == np.uint8
    assert torch.allclose(x[1:], normalize_uint8(torch.from_numpy(raw)))
    assert bundle.train.concept_masks([0]) is None and bundle.concept_names is None


def test_solid_colour_file_gives_hand_computed_normalised_pixel(tmp_path):
    write_tree(tmp_path, {"train": {"a": 1, "b": 2}, "val": {"a": 1, "b": 1}})
    colour = np.array([200, 100, 50], dtype=np.uint8)
    solid = tmp_path / "train" / "a" / "solid.png"
    write_image(solid, np.broadcast_to(colour, (40, 70, 3)).copy())
    bundle = load_dataset(folder_config(tmp_path, image_size=24))
    x = bundle.train.load_batch([bundle.train.paths.index(solid)])
    assert x.shape == (1, 3, 24, 24)
    expected = torch.tensor([1.3070468, -0.2850140, -0.9329847]).view(3, 1, 1)
    assert torch.allclose(x[0], expected.expand(3, 24, 24), atol=1e-6)


def test_shorter_side_resize_then_centre_crop(tmp_path):
    # 4 vertical bands of 32 px on a 128×64 image; at size 32 it becomes 64×32 and the centre
    # crop keeps exactly the two middle bands.
    bands = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], dtype=np.uint8)
    image = np.repeat(bands, 32, axis=0)[None].repeat(64, axis=0)  # (64, 128, 3)
    write_image(tmp_path / "bands.png", image)
    out = load_image_file(tmp_path / "bands.png", 32)
    assert out.shape == (32, 32, 3)
    # Band edges fall on crop columns 0, 16 and 32; one column each side of them blends.
    assert np.array_equal(out[:, 1:15], np.broadcast_to(bands[1], (32, 14, 3)))
    assert np.array_equal(out[:, 17:31], np.broadcast_to(bands[2], (32, 14, 3)))


def test_fast_loader_equals_torchvision_resize_and_centre_crop(tmp_path):
    from torchvision.transforms import v2

    rng = np.random.default_rng(3)
    write_image(tmp_path / "x.png", rng.integers(0, 256, size=(45, 70, 3), dtype=np.uint8))
    reference_transform = v2.Compose(
        [
            v2.Resize(24, antialias=True),  # on the PIL image: PIL's own resampling
            v2.CenterCrop(24),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    reference = reference_transform(Image.open(tmp_path / "x.png").convert("RGB"))[None]
    fast = normalize_uint8(torch.from_numpy(load_image_file(tmp_path / "x.png", 24))[None])
    assert torch.allclose(fast, reference, atol=1e-6)


def test_missing_folder_error_names_the_path(tmp_path):
    missing = tmp_path / "no_such_dataset"
    with pytest.raises(ValueError, match="not found") as err:
        load_dataset(folder_config(missing))
    assert str(missing) in str(err.value)


def test_missing_val_folder_and_single_class_are_errors(tmp_path):
    write_tree(tmp_path, {"train": {"cat": 1, "dog": 1}})
    with pytest.raises(ValueError, match="no val/"):
        load_dataset(folder_config(tmp_path))
    other = tmp_path / "one_class"
    write_tree(other, {"train": {"cat": 2}, "val": {"cat": 1}})
    with pytest.raises(ValueError, match="at least 2"):
        load_dataset(folder_config(other))


def test_mismatching_val_classes_are_an_error(tmp_path):
    write_tree(tmp_path, {"train": {"cat": 1, "dog": 1}, "val": {"cat": 1, "fox": 1}})
    with pytest.raises(ValueError, match="differ") as err:
        load_dataset(folder_config(tmp_path))
    assert "dog" in str(err.value) and "fox" in str(err.value)


def test_class_with_only_unreadable_files_is_an_error(tmp_path):
    write_tree(tmp_path, {"train": {"cat": 2}, "val": {"cat": 1, "dog": 1}})
    (tmp_path / "train" / "dog").mkdir()
    (tmp_path / "train" / "dog" / "bad.jpg").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="dog"):
        load_dataset(folder_config(tmp_path))


def test_max_per_class_caps_each_class_reproducibly(tmp_path):
    write_tree(tmp_path, {"train": {"a": 6, "b": 4}, "val": {"a": 2, "b": 2}})
    first = load_dataset(folder_config(tmp_path, max_per_class=3))
    second = load_dataset(folder_config(tmp_path, max_per_class=3))
    assert np.bincount(first.train.labels).tolist() == [3, 3]
    assert first.train.paths == second.train.paths


def test_iter_batches_covers_each_index_once_and_workers_agree(tmp_path):
    write_tree(tmp_path, {"train": {"a": 4, "b": 3}, "val": {"a": 1, "b": 1}})
    source = load_dataset(folder_config(tmp_path)).train
    gen = torch.Generator().manual_seed(0)
    batches = list(source.iter_batches(3, shuffle=True, generator=gen))
    order = np.concatenate([idx for _, _, idx in batches])
    assert sorted(order.tolist()) == list(range(7)) and [len(b[2]) for b in batches] == [3, 3, 1]
    for images, labels, idx in batches:
        assert torch.equal(labels, torch.from_numpy(source.labels[idx]))
        assert torch.equal(images, source.load_batch(idx))
    again = np.concatenate(
        [
            i
            for _, _, i in source.iter_batches(
                3, shuffle=True, generator=torch.Generator().manual_seed(0)
            )
        ]
    )
    assert np.array_equal(order, again)
    with_workers = list(source.iter_batches(4, indices=[6, 1, 2], num_workers=1))
    assert len(with_workers) == 1
    images, labels, idx = with_workers[0]
    assert isinstance(idx, np.ndarray) and idx.tolist() == [6, 1, 2]
    assert torch.equal(images, source.load_batch([6, 1, 2]))


# ---------------------------------------------------------------------------------------------
# CIFAR-100


def write_cifar(root: Path, n_train: int = 6, n_test: int = 4, seed: int = 0):
    """A tiny CIFAR-100-format folder; returns the raw (N, 3072) arrays and labels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    names = [b"apple", b"bee", b"cloud"]
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": names, b"coarse_label_names": [b"x"]}, f, protocol=2)
    splits = {}
    for split, n, protocol in (("train", n_train, 2), ("test", n_test, pickle.HIGHEST_PROTOCOL)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(i % 3) for i in range(n)]
        with open(folder / split, "wb") as f:
            pickle.dump(
                {b"data": data, b"fine_labels": labels, b"filenames": [b"f"] * n}, f, protocol
            )
        splits[split] = (data, labels)
    return splits


def cifar_config(root: Path, **kw) -> DataConfig:
    return DataConfig(kind="cifar100", path=str(root), image_size=kw.pop("image_size", 32), **kw)


def test_cifar100_round_trips_labels_and_pixels(tmp_path):
    splits = write_cifar(tmp_path)
    data, labels = splits["train"]
    data[0, 0], data[0, 1024], data[0, 2048] = 255, 7, 9  # pixel (0, 0) is R=255, G=7, B=9
    with open(tmp_path / "cifar-100-python" / "train", "wb") as f:
        pickle.dump({b"data": data, b"fine_labels": labels}, f, protocol=2)
    bundle = load_dataset(cifar_config(tmp_path))
    assert bundle.class_names == ["apple", "bee", "cloud"]
    assert bundle.train.labels.tolist() == labels
    assert bundle.test.labels.tolist() == splits["test"][1]
    raw = bundle.train.raw_images(np.arange(6))
    assert raw[0, 0, 0].tolist() == [255, 7, 9]
    assert np.array_equal(raw, data.reshape(6, 3, 32, 32).transpose(0, 2, 3, 1))
    test_raw = bundle.test.raw_images([0, 1, 2, 3])
    assert np.array_equal(test_raw, splits["test"][0].reshape(4, 3, 32, 32).transpose(0, 2, 3, 1))


def test_cifar100_upsamples_to_image_size_and_caps_classes(tmp_path):
    write_cifar(tmp_path, n_train=9)
    bundle = load_dataset(
        cifar_config(tmp_path / "cifar-100-python", image_size=64, max_per_class=1)
    )
    assert len(bundle.train) == 3 and sorted(bundle.train.labels.tolist()) == [0, 1, 2]
    assert bundle.train.load_batch([0, 1]).shape == (2, 3, 64, 64)
    # A constant image stays constant through the antialiased resize.
    constant = ArrayImageSource(np.full((1, 32, 32, 3), 77, np.uint8), np.zeros(1), ["a", "b"], 64)
    assert (constant.raw_images([0]) == 77).all()


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CallsEval:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("payload", ["system", "eval"])
def test_malicious_pickle_is_refused_without_running_it(tmp_path, payload):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    evil = _RunsShell(marker) if payload == "system" else _CallsEval()
    with open(tmp_path / "cifar-100-python" / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [b"a", b"b", b"c"], b"x": evil}, f)
    with pytest.raises(ValueError, match="not allowed"):
        load_dataset(cifar_config(tmp_path))
    assert not marker.exists()


def test_cifar100_missing_and_malformed_are_clear_errors(tmp_path):
    missing = tmp_path / "nothing_here"
    with pytest.raises(ValueError, match="not found") as err:
        load_dataset(cifar_config(missing))
    assert str(missing) in str(err.value)
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(ValueError, match="cifar-100-python"):
        load_dataset(cifar_config(tmp_path / "empty"))
    root = tmp_path / "bad"
    write_cifar(root)
    with open(root / "cifar-100-python" / "train", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]}, f)
    with pytest.raises(ValueError, match=r"\(N, 3072\)"):
        load_dataset(cifar_config(root))
    (root / "cifar-100-python" / "train").write_bytes(b"garbage, not a pickle")
    with pytest.raises(ValueError, match="not a readable pickle"):
        load_dataset(cifar_config(root))


# ---------------------------------------------------------------------------------------------
# shapes through the common interface, and the class-count guard


def test_shapes_bundle_matches_generator_and_exposes_ground_truth():
    config = DataConfig(kind="shapes", image_size=32, n_train=20, n_test=10, seed=2)
    bundle = load_dataset(config)
    reference = generate_shapes(20, image_size=32, seed=4)  # train seed = 2·seed
    assert bundle.kind == "shapes" and len(bundle.train) == 20 and len(bundle.test) == 10
    idx = [3, 0, 19]
    assert np.array_equal(bundle.train.raw_images(idx), reference.images[idx])
    expected = normalize_uint8(torch.from_numpy(reference.images[idx]))
    assert torch.equal(bundle.train.load_batch(idx), expected)
    assert np.array_equal(bundle.train.concept_masks(idx), reference.concept_masks(idx))
    assert np.array_equal(bundle.train.concept_present, reference.concept_present)
    assert bundle.concept_names == reference.concept_names
    with pytest.raises(IndexError):
        bundle.train.load_batch([20])


def test_check_class_count_explains_the_fix():
    bundle = load_dataset(DataConfig(kind="shapes", image_size=16, n_train=10, n_test=10))
    check_class_count(bundle, 10)
    with pytest.raises(ValueError, match="--replace-head") as err:
        check_class_count(bundle, 1000)
    assert "1000" in str(err.value) and "10" in str(err.value)


def test_invalid_config_is_rejected_before_touching_disk():
    with pytest.raises(ValueError, match="needs a path"):
        load_dataset(DataConfig(kind="imagefolder", path=None))
