"""The one JSON sanitizer: stored results are plain JSON, so NaN and ±inf (a class without
samples, a strength that never crosses) are written as ``null``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """A JSON-safe copy: non-finite floats → None, numpy and 0-d torch scalars → Python numbers,
    tuples → lists, dict keys → str (nested containers too)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic) or (hasattr(value, "item") and getattr(value, "ndim", None) == 0):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
