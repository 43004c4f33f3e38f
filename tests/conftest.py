"""Shared fixtures: tiny but real sessions built through the core pipeline."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
# The compiled SAE kernel is built into a fresh cache per test run: every run proves the build.
if "SALVE_CACHE_DIR" not in os.environ:
    os.environ["SALVE_CACHE_DIR"] = tempfile.mkdtemp(prefix="salve-test-cache-")

from core.config import BackboneConfig, DataConfig, SAEConfig, SessionConfig  # noqa: E402


def tiny_config(name: str = "tiny", arch: str = "resnet18", sae_epochs: int = 6) -> SessionConfig:
    """A session config that runs the whole pipeline in seconds on a CPU."""
    return SessionConfig(
        name=name,
        data=DataConfig(kind="shapes", image_size=32, n_train=80, n_test=40, seed=3),
        backbone=BackboneConfig(arch=arch, epochs=1, batch_size=16, lr=1e-3, augment=False),
        sae=SAEConfig(hidden=16, epochs=sae_epochs, batch_size=16, lr_step_epochs=3, checkpoint_every=2),
        device="cpu",
    )


@pytest.fixture(scope="session")
def built_session_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete tiny session (all stages done), built once per test run. Copy before writing."""
    from core.store.session import Session
    from core.workflow.pipeline import run_pipeline

    path = tmp_path_factory.mktemp("built") / "tiny.h5"
    with Session.create(path, tiny_config()) as session:
        run_pipeline(session)
    return path


@pytest.fixture(scope="session")
def synth_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic ``synth`` session, built once per run with frozen timestamps (screens show
    them); tests get byte copies."""
    import types

    from test_tui_analysis import make_synthetic_session
    from test_tui_helpers import FIXED_TIME

    import core.store.session

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(core.store.session, "time", types.SimpleNamespace(time=lambda: FIXED_TIME))
        return make_synthetic_session(tmp_path_factory.mktemp("synth-template"))


@pytest.fixture
def synth_session_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synth_template: Path) -> Path:
    """``sessions/`` (cwd = tmp_path) holding a copy of the synthetic ``synth`` session of
    ``test_tui_analysis.make_synthetic_session``, with half-block images for the TUI."""
    import shutil

    from core.store.session import data_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SALVE_TUI_IMAGES", "halfblock")
    folder = Path("sessions")
    folder.mkdir()
    # A byte copy (not `copy_session`, which gives the copy a new id): the copy is the template.
    shutil.copy2(synth_template, folder / synth_template.name)
    if data_dir(synth_template).exists():
        shutil.copytree(data_dir(synth_template), data_dir(folder / synth_template.name))
    return folder


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``SALVE_NATIVE=0`` (the variant suite, ``make test-variant``) turns the compiled SAE
    kernel off: the tests that exercise the kernel itself skip there, with the reason; every
    other test runs on the torch engine. ``make test`` runs them."""
    if os.environ.get("SALVE_NATIVE") != "0":
        return
    skip = pytest.mark.skip(reason="SALVE_NATIVE=0: the compiled SAE kernel is off (make test runs this)")
    for item in items:
        if "native" in item.keywords:
            item.add_marker(skip)
