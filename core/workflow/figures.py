"""PNG figures for validation and control results, plus numpy colour maps for terminal previews.

Every ``save_*`` function takes plain numpy arrays and names, writes one PNG to ``path``
(creating its folder) and returns the path. Figures are built with matplotlib's object API on
the Agg canvas, never ``pyplot``: no global state, so jobs in worker threads can render safely,
and matplotlib is imported only inside the functions so ``import core.workflow.figures`` stays cheap.
Figures have a fixed size in inches (``figsize``) and ``dpi``, so the PNG is exactly
``figsize × dpi`` pixels (no tight bounding box that would make the size data-dependent).

The figures live in one module per kind (:mod:`core.workflow.figure_base` for the shared
plumbing, ``figure_images``, ``figure_curves``, ``figure_matrices``); this module keeps every
public name importable from where it always was.

``colorize`` / ``overlay`` need numpy only (no torch, no matplotlib) for the TUI previews.
"""

from __future__ import annotations

from core.workflow.figure_base import (  # noqa: F401 - re-exported
    _check_names,
    _class_colours,
    _new_figure,
    _save,
    add_caption,
    safe_filename,
    wants_log_scale,
)
from core.workflow.figure_curves import (  # noqa: F401 - re-exported
    save_alpha_crit_distributions,
    save_faithfulness_curves,
    save_prediction_distribution,
    save_selectivity_curves,
    save_suppression_curves,
)
from core.workflow.figure_images import (  # noqa: F401 - re-exported
    colorize,
    overlay,
    save_heatmap_overlay,
    save_image_grid,
    save_top_activating_grid,
    to_uint8_image,
    top_activating_indices,
)
from core.workflow.figure_matrices import (  # noqa: F401 - re-exported
    save_confusion_matrices,
    save_feature_class_matrix,
)
