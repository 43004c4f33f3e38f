"""One way for the pipeline to get images, whatever the dataset kind (SPEC §8).

Three kinds, chosen by :class:`~core.config.DataConfig`:

- ``shapes``: the embedded generated dataset, held in memory; batches are pure tensor ops.
- ``imagefolder``: Imagenette layout ``root/train/<class>/*`` and ``root/val/<class>/*``;
  files are checked at scan time (unreadable ones skipped and counted) and decoded lazily.
- ``cifar100``: torchvision's on-disk pickles, read with a restricted unpickler because the
  files are untrusted input (a plain ``pickle.load`` can run arbitrary code).

Every image goes through the same preprocessing: shorter side resized to ``image_size``, centre
crop, ImageNet mean/std normalisation (what torchvision backbones expect).

One module per concept: :mod:`core.discover.image_sources` (sources, preprocessing, bundle),
:mod:`core.discover.imagefolder`, :mod:`core.discover.cifar100`; this module picks the kind
and keeps every name importable from where it always was.
"""


from __future__ import annotations

from pathlib import Path

from core.config import DataConfig
from core.discover.cifar100 import (  # noqa: F401 - re-exported
    CIFAR_FOLDER,
    _cifar_root,
    _load_cifar100,
    read_cifar100_meta,
    read_cifar100_split,
    restricted_pickle_load,
)
from core.discover.image_sources import (  # noqa: F401 - re-exported
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VAL_SPLIT_NAMES,
    ArrayImageSource,
    Batch,
    DatasetBundle,
    FolderImageSource,
    ImageSource,
    Indices,
    denormalize,
    load_image_file,
    normalize_uint8,
    resize_center_crop_uint8,
)
from core.discover.imagefolder import (  # noqa: F401 - re-exported
    MIN_TRAIN_PER_CLASS,
    _is_readable_image,
    _load_image_folder,
    check_class_counts,
    files_fingerprint,
)
from core.discover.shapes import shapes_splits


def load_dataset(config: DataConfig) -> DatasetBundle:
    """Build train/test sources for ``config``; bad paths or contents raise a clear ValueError."""
    problems = config.validate()
    if problems:
        raise ValueError("invalid data settings: " + "; ".join(problems))
    if config.kind == "shapes":
        return _load_shapes(config)
    assert config.path is not None  # guaranteed by validate()
    if config.kind == "imagefolder":
        return _load_image_folder(Path(config.path).expanduser(), config)
    return _load_cifar100(Path(config.path).expanduser(), config)


def check_class_count(bundle: DatasetBundle, num_classes: int) -> None:
    """Fail early, with the fix, when a classifier head does not match the dataset."""
    n = len(bundle.class_names)
    if num_classes != n:
        raise ValueError(
            f"the model has {num_classes} output classes but dataset {bundle.description} has {n}"
            f" — use --replace-head to give the model a fresh {n}-class head and fine-tune it, "
            "or choose the dataset the checkpoint was trained on"
        )


def _load_shapes(config: DataConfig) -> DatasetBundle:
    train, test = shapes_splits(config)
    sources = [
        ArrayImageSource(split.images, split.labels, split.class_names, config.image_size, split)
        for split in (train, test)
    ]
    description = (
        f"shapes (seed {config.seed}, {config.image_size}px, "
        f"{len(train)} train / {len(test)} test images)"
    )
    return DatasetBundle(list(train.class_names), sources[0], sources[1], "shapes", description)
