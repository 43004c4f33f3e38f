"""CIFAR-100 from torchvision's on-disk pickles, read with a restricted unpickler because the
files are untrusted input (a plain ``pickle.load`` can run arbitrary code)."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from core.config import DataConfig
from core.discover.image_sources import (
    ArrayImageSource,
    DatasetBundle,
)

CIFAR_FOLDER = "cifar-100-python"
_CIFAR_HINT = (
    "expected torchvision's CIFAR-100 layout <root>/cifar-100-python/{train,test,meta} "
    "(download cifar-100-python.tar.gz on a machine with network and extract it there)"
)


class _ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list (possibly an attack)."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals numpy needs to rebuild arrays.

    Anything else (``os.system``, ``builtins.eval``, ...) is refused, so a crafted file can
    at worst fail to load; it cannot run code.
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed = _safe_pickle_globals()
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise _ForbiddenGlobal(f"global '{module}.{name}' is not allowed in a dataset file")


def _safe_pickle_globals() -> dict[tuple[str, str], Any]:
    import codecs

    try:  # numpy ≥ 2
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for package in ("numpy.core", "numpy._core"):  # files written by numpy 1.x and 2.x
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


def restricted_pickle_load(path: Path) -> Any:
    """Load an untrusted pickle (Python 2 ``str`` → bytes), allowing numpy arrays only."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _ForbiddenGlobal as exc:
        raise ValueError(
            f"refusing to load {path}: {exc} — the file is not a plain dataset pickle"
        ) from exc
    except Exception as exc:  # malformed bytes raise many exception types
        raise ValueError(f"{path} is not a readable pickle ({exc}) — {_CIFAR_HINT}") from exc


def _cifar_root(root: Path) -> Path:
    if (root / CIFAR_FOLDER).is_dir():
        return root / CIFAR_FOLDER
    if (root / "meta").is_file():  # the user pointed at cifar-100-python itself
        return root
    if not root.exists():
        raise ValueError(f"CIFAR-100 folder not found: {root} — {_CIFAR_HINT}")
    raise ValueError(f"no {CIFAR_FOLDER}/ folder in {root} — {_CIFAR_HINT}")


def _field(record: dict, name: str, path: Path) -> Any:
    for key in (name.encode(), name):
        if key in record:
            return record[key]
    raise ValueError(f"{path} has no '{name}' entry — {_CIFAR_HINT}")


def read_cifar100_meta(folder: Path) -> list[str]:
    path = folder / "meta"
    if not path.is_file():
        raise ValueError(f"missing {path} — {_CIFAR_HINT}")
    record = restricted_pickle_load(path)
    if not isinstance(record, dict):
        raise ValueError(f"{path} does not hold a dict — {_CIFAR_HINT}")
    names = _field(record, "fine_label_names", path)
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def read_cifar100_split(folder: Path, split: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 32, 32, 3)`` uint8 images and ``(N,)`` int64 fine labels of ``train``/``test``."""
    path = folder / split
    if not path.is_file():
        raise ValueError(f"missing {path} — {_CIFAR_HINT}")
    record = restricted_pickle_load(path)
    if not isinstance(record, dict):
        raise ValueError(f"{path} does not hold a dict — {_CIFAR_HINT}")
    data = np.asarray(_field(record, "data", path))
    labels = np.asarray(_field(record, "fine_labels", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{path}: 'data' must be (N, 3072) uint8, got {data.dtype} {data.shape} — {_CIFAR_HINT}"
        )
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{path}: 'fine_labels' must hold {data.shape[0]} integers, got {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"{path}: labels outside 0..{n_classes - 1} (meta lists {n_classes} classes)"
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _cap_per_class(
    labels: np.ndarray, max_per_class: int | None, rng: np.random.Generator
) -> np.ndarray:
    """Sorted indices keeping at most ``max_per_class`` random images of each class."""
    if max_per_class is None:
        return np.arange(labels.size)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:max_per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)


def _load_cifar100(root: Path, config: DataConfig) -> DatasetBundle:
    folder = _cifar_root(root)
    class_names = read_cifar100_meta(folder)
    if len(class_names) < 2:
        raise ValueError(f"{folder / 'meta'} lists {len(class_names)} class(es); need at least 2")
    rng = np.random.default_rng(config.seed)
    sources = []
    for split in ("train", "test"):
        images, labels = read_cifar100_split(folder, split, len(class_names))
        if labels.size == 0:
            raise ValueError(f"{folder / split} holds no images — {_CIFAR_HINT}")
        keep = _cap_per_class(labels, config.max_per_class, rng)
        sources.append(ArrayImageSource(images[keep], labels[keep], class_names, config.image_size))
    train, test = sources
    description = (
        f"cifar100 {root} ({len(class_names)} classes, {len(train)} train / {len(test)} test)"
    )
    return DatasetBundle(class_names, train, test, "cifar100", description)
