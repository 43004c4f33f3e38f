"""torchrun across processes (gloo on the CPU, 2 ranks): activations and SAE match one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.discover.distributed import batch_shard
from core.discover.sae_train import DataParallel
from core.store.session import Session, copy_session

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("n", "batch", "world"), [(10, 3, 2), (10, 3, 3), (10, 3, 5), (256, 128, 2), (7, 8, 2)])
def test_batch_shards_are_whole_batches_covering_every_row(n: int, batch: int, world: int) -> None:
    shards = [batch_shard(n, batch, r, world) for r in range(world)]
    assert shards[0][0] == 0 and shards[-1][1] == n
    for (a0, a1), (b0, _) in zip(shards, shards[1:], strict=False):
        assert a1 == b0 and a0 <= a1
    assert all(start % batch == 0 for start, stop in shards if stop > start)  # never splits a batch
    assert batch_shard(10, 3, 0, 2) == (0, 6) and batch_shard(10, 3, 1, 2) == (6, 10)  # by hand


def test_data_parallel_rows_split_a_batch_evenly() -> None:
    assert [DataParallel(r, 3).rows(10) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    assert [DataParallel(r, 2).rows(1) for r in range(2)] == [(0, 1), (1, 1)]


def _run(args: list[str], env_extra: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env_extra or {})}
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def _torchrun(path: Path, stage: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                 "-m", "salve_tui.cli.main", "run", str(path), stage], env)


def _single(path: Path, stages: list[str]) -> None:
    """The one-process reference, in this process, with one torch thread like each rank."""
    import torch

    from core.workflow.pipeline import run_pipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with Session.open(path) as session:
            run_pipeline(session, stages, force=True)
    finally:
        torch.set_num_threads(threads)


def test_torchrun_activations_and_sae_equal_a_single_process_run(tmp_path: Path, built_session_path: Path) -> None:
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    copy_session(built_session_path, one)
    copy_session(built_session_path, two)
    _single(one, ["activations", "sae"])
    out = _torchrun(two, "activations")
    assert "done" in out.stdout and "2 processes" in out.stdout
    with Session.open(one, read_only=True) as a, Session.open(two, read_only=True) as b:
        assert b.stages()["activations"].state == "done"
        assert b.stages()["sae"].state == "stale"  # downstream of a rerun, as in one process
        for split in ("train", "test"):
            ref, got = a.read_arrays(f"activations/{split}"), b.read_arrays(f"activations/{split}")
            for name in ("a", "logits", "labels"):
                np.testing.assert_array_equal(got[name], ref[name], err_msg=f"{split}/{name}")
    assert not list(tmp_path.glob(".two.h5.shard-*")), "shard files are removed after the commit"

    _torchrun(two, "sae")  # on the same activations as the reference (equal above)
    with Session.open(one, read_only=True) as a, Session.open(two, read_only=True) as b:
        assert b.stages()["sae"].state == "done"
        ref, got = a.read_arrays("sae/weights"), b.read_arrays("sae/weights")
        engine_one = a.summary()["sae"]["engine"]
    assert engine_one in ("native", "torch")
    for name, value in ref.items():
        # Same global batches; sums of per-rank partial gradients round differently.
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_torchrun_sae_over_the_budget_streams_on_every_rank(tmp_path: Path) -> None:
    """Over the memory budget each rank streams the same windows and trains its share of each
    batch: the weights equal one streamed process on the torch engine.

    Slow (`make test-slow`): the default suite covers streaming on a data-parallel rank in process
    (`test_outofcore.py::test_data_parallel_sae_over_budget_streams_like_one_process`) and real
    torchrun ranks in `test_torchrun_activations_and_sae_equal_a_single_process_run`."""
    from test_outofcore import synthetic

    one, two = synthetic(tmp_path / "one.h5", n_train=4000, epochs=2), tmp_path / "two.h5"
    copy_session(one, two)
    env = {"SALVE_MEMORY_BUDGET": "1M", "SALVE_NATIVE": "0"}
    _run([sys.executable, "-m", "salve_tui.cli.main", "run", str(one), "sae", "--force"], env)
    _torchrun(two, "sae", env)
    with Session.open(one, read_only=True) as a, Session.open(two, read_only=True) as b:
        assert a.summary()["sae"]["streamed"] is True, "one process"
        assert b.summary()["sae"]["streamed"] is True, "torchrun"
        ref, got = a.read_arrays("sae/weights"), b.read_arrays("sae/weights")
    for name, value in ref.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_torchrun_refuses_other_stages(tmp_path: Path, built_session_path: Path) -> None:
    path = tmp_path / "s.h5"
    copy_session(built_session_path, path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "salve_tui.cli.main", "run", str(path), "rankings"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "error: under torchrun only the activations and sae stages" in done.stderr
    # torchrun itself prints a traceback for a failed child; none comes from the project's code.
    assert 'salve_tui/cli/main.py", line' not in done.stderr and '/core/' not in done.stderr
