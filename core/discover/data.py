"""One way for the pipeline to get images, whatever the dataset kind (SPEC §8).

Three kinds, chosen by :class:`~core.config.DataConfig`:

- ``shapes``: the embedded generated dataset, held in memory; batches are pure tensor ops.
- ``imagefolder``: Imagenette layout ``root/train/<class>/*`` and ``root/val/<class>/*``;
  files are checked at scan time (unreadable ones skipped and counted) and decoded lazily.
- ``cifar100``: torchvision's on-disk pickles, read with a restricted unpickler because the
  files are untrusted input (a plain ``pickle.load`` can run arbitrary code).

Every image goes through the same preprocessing: shorter side resized to ``image_size``, centre
crop, ImageNet mean/std normalisation (what torchvision backbones expect).
"""

from __future__ import annotations

import io
import pickle
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from core.config import DataConfig
from core.discover.pixels import to_rgb8
from core.discover.shapes import ShapesData, shapes_splits

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".bmp",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)
VAL_SPLIT_NAMES: tuple[str, ...] = ("val", "test")  # Imagenette uses val/; accept test/ too

Indices = Sequence[int] | np.ndarray | torch.Tensor
Batch = tuple[torch.Tensor, torch.Tensor, np.ndarray]


# ---------------------------------------------------------------------------------------------
# Shared preprocessing


def normalize_uint8(batch_uint8_nhwc: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 → ``(B, 3, H, W)`` float32 with ImageNet mean/std."""
    if batch_uint8_nhwc.ndim != 4 or batch_uint8_nhwc.shape[-1] != 3:
        raise ValueError(
            f"expected a (B, H, W, 3) uint8 batch, got shape {tuple(batch_uint8_nhwc.shape)}"
        )
    # (x/255 − mean)/std folded into one multiply-add; the uint8 transpose is the cheap one.
    nchw = batch_uint8_nhwc.permute(0, 3, 1, 2).contiguous().to(torch.float32)
    scale, shift = _normalisation_affine(nchw.device)
    return torch.addcmul(shift, nchw, scale)


def _normalisation_affine(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``scale = 1/(255·std)`` and ``shift = −mean/std``, shaped (1, 3, 1, 1)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    scale = (1.0 / (255.0 * std)).to(torch.float32).view(1, 3, 1, 1)
    shift = (-mean / std).to(torch.float32).view(1, 3, 1, 1)
    return scale.to(device), shift.to(device)


def denormalize(x: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`normalize_uint8` for display: ``(B,3,H,W)``/``(3,H,W)`` → uint8 HWC.

    Values outside the displayable range (e.g. from activation maximisation) are clipped.
    """
    if x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"expected a (B, 3, H, W) or (3, H, W) tensor, got {tuple(x.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    pixels = (x.detach().to("cpu", torch.float32) * std + mean).mul(255.0).round().clamp(0, 255)
    return pixels.to(torch.uint8).movedim(-3, -1).numpy()


def resize_center_crop_uint8(batch_uint8_nhwc: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` (antialiased) and centre-crop to ``size × size``."""
    from torchvision.transforms.v2 import functional as tvf

    if batch_uint8_nhwc.shape[1] == size and batch_uint8_nhwc.shape[2] == size:
        return batch_uint8_nhwc
    nchw = batch_uint8_nhwc.permute(0, 3, 1, 2)
    nchw = tvf.resize(nchw, [size], antialias=True)
    nchw = tvf.center_crop(nchw, [size, size])
    return nchw.permute(0, 2, 3, 1).contiguous()


def _as_index_array(indices: Indices) -> np.ndarray:
    if isinstance(indices, torch.Tensor):
        indices = indices.cpu().numpy()
    return np.asarray(indices, dtype=np.int64).reshape(-1)


# ---------------------------------------------------------------------------------------------
# Image sources


class ImageSource(ABC):
    """One split of a dataset: labels in memory, pixels on demand.

    Subclasses only implement :meth:`_load_uint8`; batching, normalisation and shuffling are
    shared so every dataset kind feeds the backbone identically.
    """

    class_names: list[str]
    labels: np.ndarray  # (N,) int64
    image_size: int
    skipped: int = 0  # unreadable files found at scan time and left out
    # Ground truth (shapes only; None for real data).
    concept_names: list[str] | None = None
    concept_present: np.ndarray | None = None  # (N, n_concepts) bool
    _benefits_from_workers = False  # lazy file decoding gains from DataLoader workers

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @abstractmethod
    def _load_uint8(self, indices: np.ndarray) -> torch.Tensor:
        """``(B, image_size, image_size, 3)`` uint8 tensor for ``indices``."""

    def raw_images(self, indices: Indices) -> np.ndarray:
        """``(B, H, W, 3)`` uint8 images at ``image_size``, for display and figures."""
        return self._load_uint8(self._checked(indices)).numpy()

    def load_batch(self, indices: Indices) -> torch.Tensor:
        """``(B, 3, H, W)`` float32 images, resized and ImageNet-normalised."""
        return normalize_uint8(self._load_uint8(self._checked(indices)))

    def concept_masks(self, indices: Indices) -> np.ndarray | None:
        """``(B, n_concepts, H, W)`` bool ground-truth masks, or None without ground truth."""
        return None

    def iter_batches(
        self,
        batch_size: int,
        indices: Indices | None = None,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        num_workers: int = 0,
    ) -> Iterator[Batch]:
        """Yield ``(images, labels, indices)`` batches over ``indices`` (default: all).

        ``shuffle`` permutes with ``generator`` (reproducible when seeded). ``num_workers > 0``
        decodes in DataLoader worker processes (useful for image folders only).
        """
        if batch_size < 1:
            raise ValueError(f"batch size must be ≥ 1, got {batch_size}")
        order = np.arange(len(self)) if indices is None else self._checked(indices)
        if shuffle:
            order = order[torch.randperm(order.size, generator=generator).numpy()]
        chunks = [order[i : i + batch_size] for i in range(0, order.size, batch_size)]
        if num_workers > 0 and self._benefits_from_workers:
            loader = torch.utils.data.DataLoader(
                _BatchDataset(self, chunks),
                batch_size=None,
                num_workers=num_workers,
                collate_fn=_keep_as_is,
            )
            yield from loader
            return
        for chunk in chunks:
            yield self.load_batch(chunk), torch.from_numpy(self.labels[chunk]), chunk

    def _checked(self, indices: Indices) -> np.ndarray:
        idx = _as_index_array(indices)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"image index out of range for a split of {len(self)} images")
        return idx


def _keep_as_is(batch: Batch) -> Batch:
    """DataLoader collate that keeps a pre-built batch (indices stay a numpy array)."""
    return batch


class _BatchDataset(torch.utils.data.Dataset):
    """Maps a batch number to a whole loaded batch, so DataLoader workers decode batches."""

    def __init__(self, source: ImageSource, chunks: list[np.ndarray]) -> None:
        self.source = source
        self.chunks = chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> Batch:
        chunk = self.chunks[i]
        return self.source.load_batch(chunk), torch.from_numpy(self.source.labels[chunk]), chunk


class ArrayImageSource(ImageSource):
    """Images already in memory (Shapes, CIFAR-100); resized on the fly if their size differs."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        class_names: list[str],
        image_size: int,
        shapes: ShapesData | None = None,
    ) -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"expected (N, H, W, 3) uint8 images, got {images.dtype} {images.shape}"
            )
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self._images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self.image_size = image_size
        self.shapes = shapes
        if shapes is not None:
            self.concept_names = list(shapes.concept_names)
            self.concept_present = shapes.concept_present

    def _load_uint8(self, indices: np.ndarray) -> torch.Tensor:
        batch = self._images[torch.from_numpy(indices)]
        return resize_center_crop_uint8(batch, self.image_size)

    def concept_masks(self, indices: Indices) -> np.ndarray | None:
        if self.shapes is None:
            return None
        return self.shapes.concept_masks(self._checked(indices))


class FolderImageSource(ImageSource):
    """Image files decoded lazily (one PIL decode per image, JPEG draft mode for speed)."""

    _benefits_from_workers = True

    def __init__(
        self,
        paths: list[Path],
        labels: np.ndarray,
        class_names: list[str],
        image_size: int,
        skipped: int = 0,
    ) -> None:
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self.image_size = image_size
        self.skipped = skipped

    def _load_uint8(self, indices: np.ndarray) -> torch.Tensor:
        out = np.empty((indices.size, self.image_size, self.image_size, 3), dtype=np.uint8)
        for row, i in enumerate(indices):
            out[row] = load_image_file(self.paths[int(i)], self.image_size)
        return torch.from_numpy(out)


def load_image_file(path: str | Path, size: int) -> np.ndarray:
    """Decode one file to ``(size, size, 3)`` uint8: shorter side → ``size``, centre crop.

    Same geometry as torchvision ``Resize(size)`` + ``CenterCrop(size)``. Raises ValueError
    naming the file if it passed the scan-time check but cannot be decoded (e.g. truncated).
    """
    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: let the decoder downscale by 2^k (fast)
            img = to_rgb8(img)
            width, height = img.size
            if width <= height:
                new_size = (size, int(size * height / width))
            else:
                new_size = (int(size * width / height), size)
            img = img.resize(new_size, Image.Resampling.BILINEAR)
            left = int(round((new_size[0] - size) / 2.0))
            top = int(round((new_size[1] - size) / 2.0))
            return np.array(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(
            f"could not decode image {path}: {exc} — remove or replace the file and run again"
        ) from exc


# ---------------------------------------------------------------------------------------------
# Dataset bundles


@dataclass
class DatasetBundle:
    """Both splits of a dataset plus what a user needs to recognise it."""

    class_names: list[str]
    train: ImageSource
    test: ImageSource
    kind: str
    description: str

    @property
    def concept_names(self) -> list[str] | None:
        return self.train.concept_names


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


# --- ImageFolder ------------------------------------------------------------------------------


def _load_image_folder(root: Path, config: DataConfig) -> DatasetBundle:
    layout_hint = "expected <root>/train/<class>/*.jpg and <root>/val/<class>/* (Imagenette layout)"
    if not root.is_dir():
        raise ValueError(f"image folder not found: {root} — {layout_hint}")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise ValueError(f"no train/ folder in {root} — {layout_hint}")
    val_dir = next((root / n for n in VAL_SPLIT_NAMES if (root / n).is_dir()), None)
    if val_dir is None:
        raise ValueError(f"no val/ (or test/) folder in {root} — {layout_hint}")

    class_names = _class_folders(train_dir)
    if len(class_names) < 2:
        raise ValueError(
            f"{train_dir} has {len(class_names)} class folder(s); a classifier needs at least 2 "
            f"— {layout_hint}"
        )
    val_classes = _class_folders(val_dir)
    if val_classes != class_names:
        missing = sorted(set(class_names) - set(val_classes))
        extra = sorted(set(val_classes) - set(class_names))
        raise ValueError(
            f"class folders of {val_dir} differ from {train_dir}: "
            f"missing {missing or 'none'}, extra {extra or 'none'} — both splits need the same "
            "class folders"
        )

    rng = np.random.default_rng(config.seed)
    splits = []
    for split_dir in (train_dir, val_dir):
        paths, labels, skipped = _scan_split(split_dir, class_names, config.max_per_class, rng)
        if not paths:
            raise ValueError(f"no readable images in {split_dir} — {layout_hint}")
        splits.append(FolderImageSource(paths, labels, class_names, config.image_size, skipped))
    train, test = splits
    check_class_counts(class_names, train.labels, test.labels, train_dir, val_dir)
    skipped = train.skipped + test.skipped
    description = (
        f"imagefolder {root} ({len(class_names)} classes, {len(train)} train / {len(test)} "
        f"{val_dir.name} images" + (f", {skipped} unreadable skipped)" if skipped else ")")
    )
    return DatasetBundle(class_names, train, test, "imagefolder", description)


MIN_TRAIN_PER_CLASS = 2  # one image cannot give a class mean and a held-out check


def check_class_counts(class_names: Sequence[str], train_labels: np.ndarray, test_labels: np.ndarray,
                       train_dir: Path, test_dir: Path) -> None:
    """Refuse, before any training, a class with fewer than 2 readable training images or
    none in the test split: its class mean, dominant feature and suppression curve would be
    undefined (the message names the classes, their counts and the fix)."""
    train_n = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=len(class_names))
    test_n = np.bincount(np.asarray(test_labels, dtype=np.int64), minlength=len(class_names))
    few = [f"{name} ({train_n[c]})" for c, name in enumerate(class_names) if train_n[c] < MIN_TRAIN_PER_CLASS]
    absent = [name for c, name in enumerate(class_names) if test_n[c] == 0]
    problems = []
    if few:
        problems.append(f"class(es) with fewer than {MIN_TRAIN_PER_CLASS} readable images in {train_dir}: "
                        + ", ".join(few))
    if absent:
        problems.append(f"class(es) with no readable image in {test_dir}: " + ", ".join(absent))
    if problems:
        raise ValueError("; ".join(problems) + " — add images to those class folders, or remove the "
                         "folders from both splits, then rerun")


def files_fingerprint(config: DataConfig) -> str | None:
    """Digest of the image files' names, sizes and times under an image folder (no decoding).

    The data stage stores it; when files are added or removed later (e.g. a corrupt one, as the
    scan told the user) the pipeline sees the change and rescans instead of keeping stale counts.
    ``None`` for datasets that cannot change on disk this way (Shapes is generated).
    """
    import hashlib

    if config.kind != "imagefolder" or not config.path:
        return None
    root = Path(config.path).expanduser()
    digest = hashlib.sha256()
    if not root.is_dir():
        return "missing"
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS):
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _class_folders(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_split(
    split_dir: Path,
    class_names: list[str],
    max_per_class: int | None,
    rng: np.random.Generator,
) -> tuple[list[Path], np.ndarray, int]:
    """Readable image files per class (a seeded random subset when capped) + skipped count."""
    paths: list[Path] = []
    labels: list[int] = []
    skipped = 0
    for label, name in enumerate(class_names):
        files = sorted(
            p
            for p in (split_dir / name).rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        )
        if max_per_class is not None and len(files) > max_per_class:
            files = [files[i] for i in rng.permutation(len(files))]
        kept: list[Path] = []
        for path in files:
            if max_per_class is not None and len(kept) >= max_per_class:
                break
            if _is_readable_image(path):
                kept.append(path)
            else:
                skipped += 1
        kept.sort()
        paths += kept
        labels += [label] * len(kept)
    return paths, np.asarray(labels, dtype=np.int64), skipped


def _is_readable_image(path: Path) -> bool:
    """Decode the whole file (JPEGs in draft mode, at 1/8 scale): ``verify()`` alone passes
    truncated JPEGs, which would then abort training half-way."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
            to_rgb8(img)  # 16-bit and float pixels it cannot scale are refused here, at scan time
        return True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


# --- CIFAR-100 --------------------------------------------------------------------------------

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
