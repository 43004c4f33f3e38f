"""Pixels of any bit depth to the 8-bit RGB the pipeline works in, keeping the image's range.

PIL's ``convert("RGB")`` clips 16-bit pixels at 255 (a 16-bit PNG turns almost white) and
truncates float pixels in 0..1 to 0 (black); :func:`to_rgb8` scales them instead.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_WIDE_INT_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}


def to_rgb8(img: Image.Image) -> Image.Image:
    """8-bit RGB: 16-bit (and 32-bit integer holding 16-bit) values are divided by 257, floats
    in 0..1 scaled by 255, floats in 0..255 kept; anything else raises ValueError (the scan
    then refuses the file)."""
    if img.mode not in _WIDE_INT_MODES and img.mode != "F":
        return img.convert("RGB")
    values = np.asarray(img, dtype=np.float64)
    if values.size and not np.isfinite(values).all():
        raise ValueError(f"{img.mode} image holds NaN or infinite pixels")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if img.mode == "F":
        if low < 0 or high > 255:
            raise ValueError(f"float image with pixel values {low:g}..{high:g}; expected 0..1 or 0..255")
        scale = 255.0 if high <= 1.0 else 1.0
    else:
        if low < 0 or high > _WIDE_INT_MODES[img.mode]:
            raise ValueError(f"{img.mode} image with pixel values {low:g}..{high:g}; expected 0..65535")
        scale = 1.0 / 257.0
    gray = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")
