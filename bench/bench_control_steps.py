"""Peak RSS of each step of a streamed sweep / α_crit, one step per process (issue 13).

Run on a session the out-of-core bench kept (``bench/bench_outofcore.py --control --keep
--folder DIR``), under the budget to test::

    SALVE_MEMORY_BUDGET=256M python bench/bench_control_steps.py DIR/outofcore.h5 sweep

Steps: ``blocks`` (one pass over the sweep's row blocks), ``class-rows`` (class 0's rows read
in one pass), ``sweep`` (``run_sweep`` of class 0), ``alpha-crit-1`` (``run_alpha_crit`` of
class 0), ``alpha-crit-all`` (every class, the peak printed after each). Prints the resident set before the step and its peak during it (``VmHWM``, reset
through ``/proc/self/clear_refs`` before the step).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = ("blocks", "class-rows", "sweep", "alpha-crit-1", "alpha-crit-all")


def status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[2] not in STEPS:
        raise SystemExit(f"usage: {sys.argv[0]} SESSION {{{','.join(STEPS)}}}")
    import numpy as np  # noqa: F401 - imported before the baseline like the control code's own
    import torch  # noqa: F401

    from core.store.session import Session
    from core.workflow.alpha_crit import run_alpha_crit
    from core.workflow.inputs import row_inputs_for
    from core.workflow.sweeps import run_sweep, sweep_chunk_rows

    step = sys.argv[2]
    with Session.open(sys.argv[1], read_only=True) as session:
        x = row_inputs_for(session, None, "test")
        before = status_mib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        t0 = time.perf_counter()
        if step == "blocks":
            for _ in x.rows.blocks(sweep_chunk_rows(x.num_classes, 100, x.rows.dim)):
                pass
        elif step == "class-rows":
            x.rows.class_rows([0])
        elif step == "sweep":
            run_sweep(session, 0, None, n_alphas=100, record=False, inputs=x)
        elif step == "alpha-crit-1":
            run_alpha_crit(session, 0, record=False, inputs=x)
        else:
            def each(progress) -> None:  # noqa: ANN001 (core.jobs.Progress)
                print(f"  {progress.message}: RSS {status_mib('VmRSS') - before:.0f}, "
                      f"peak {status_mib('VmHWM') - before:.0f} MiB over before", flush=True)

            run_alpha_crit(session, None, record=False, inputs=x, progress=each)
        seconds = time.perf_counter() - t0
    print(f"{step}: streamed {x.streamed}, RSS before {before:.0f} MiB, peak − before "
          f"{status_mib('VmHWM') - before:.0f} MiB, {seconds:.1f} s")


if __name__ == "__main__":
    main()
