"""Every long job the workstation starts, by kind, as ``body(session, progress, cancel)``: the
core calls behind the TUI's jobs (the pipeline stages, act-max, seed robustness, faithfulness, the
SAE width search, α_crit of all dominant features, ground truth, the exports).

The cancel bench (``bench/bench_cancel.py``) and the cancel tests (``tests/test_cancel_points.py``)
run them from here, so both look at the same calls; ``quick=True`` shrinks the work of the jobs
whose size is a parameter (tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.jobs import CancelToken

JobBody = Callable[[Any, Any, CancelToken], Any]


def dominant_feature(session: Any) -> int:
    """Class 0's dominant feature (the act-max job's target)."""
    import numpy as np

    return int(np.asarray(session.read_array("rankings/dominant"))[0])


def job_bodies(quick: bool = False) -> dict[str, JobBody]:
    """Job kind → body, as the TUI (or its pipeline) starts it."""
    from core.workflow.actmax_images import actmax_png
    from core.workflow.all_dominant import run_all_dominant
    from core.workflow.alpha_crit import run_alpha_crit
    from core.workflow.faithfulness import run_faithfulness
    from core.workflow.ground_truth import run_groundtruth
    from core.workflow.pipeline import run_pipeline
    from core.workflow.robustness import run_seed_robustness
    from core.workflow.sae_search_session import run_search
    from salve_tui.app.screens.analysis_exports import EXPORTS, run_exports

    def stage(name: str) -> JobBody:
        return lambda s, p, c: run_pipeline(s, [name], p, c, force=True)

    robustness = {"k": 2, "epochs": 2} if quick else {"k": 3}
    faithfulness = {"samples": 2, "steps": 2, "n_random": 1} if quick else {}
    return {
        "backbone": stage("backbone"),
        "activations": stage("activations"),
        "sae": stage("sae"),
        "rankings": stage("rankings"),
        "act-max": lambda s, p, c: actmax_png(s, dominant_feature(s), progress=p, cancel=c),
        "robustness": lambda s, p, c: run_seed_robustness(s, progress=p, cancel=c, **robustness),
        "faithfulness": lambda s, p, c: run_faithfulness(s, progress=p, cancel=c, **faithfulness),
        "sae-search": lambda s, p, c: run_search(s, p, c),
        "all-dominant": lambda s, p, c: run_all_dominant(s, progress=p, cancel=c, redo=True,
                                                         **({"batch_classes": 1} if quick else {})),
        "alpha-crit": lambda s, p, c: run_alpha_crit(s, progress=p, cancel=c),
        "ground-truth": lambda s, p, c: run_groundtruth(s, p, c),
        "exports": lambda s, p, c: run_exports(tuple(k.key for k in EXPORTS), s, p, c),
    }
