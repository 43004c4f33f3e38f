"""The edit record's public home: :class:`EditSpec` and the checks every method shares.

Defined beside the methods (``core.control.methods.spec``) so that a spec validates against
its method with no import cycle; imported from here by the workflow and the fronts.
"""

from __future__ import annotations

from core.control.methods.spec import (
    MODES,
    EditSpec,
    check_features,
    check_mode,
    check_weight,
)

__all__ = ["MODES", "EditSpec", "check_features", "check_mode", "check_weight"]
