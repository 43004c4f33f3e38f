"""ImageFolder datasets (Imagenette layout ``root/train/<class>/*``, ``root/val/<class>/*``):
files are checked at scan time (unreadable ones skipped and counted) and decoded lazily."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from core.config import DataConfig
from core.discover.image_sources import (
    IMAGE_EXTENSIONS,
    VAL_SPLIT_NAMES,
    DatasetBundle,
    FolderImageSource,
)
from core.discover.pixels import to_rgb8


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
