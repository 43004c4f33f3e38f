"""Shared builders for the TUI tests: small session files made through core, and pilot waits.

Sessions for pure-UI tests are created with ``Session.create`` and given fake-but-consistent stage
states through transactions; job tests use a tiny real pipeline (:func:`tiny_config`).
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import core.store.session
from core.config import BackboneConfig, DataConfig, SAEConfig, SessionConfig
from core.store.session import Session

FIXED_TIME = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: fixed timestamps keep snapshots stable


def tiny_config(name: str, backbone_epochs: int = 1, sae_epochs: int = 5, n_train: int = 60,
                n_test: int = 40) -> SessionConfig:
    """The smallest real pipeline: 60 + 40 Shapes images at 32 px, ResNet-18, a 16-latent SAE."""
    return SessionConfig(
        name=name,
        data=DataConfig(kind="shapes", image_size=32, n_train=n_train, n_test=n_test),
        backbone=BackboneConfig(arch="resnet18", epochs=backbone_epochs, batch_size=16, lr=1e-3),
        sae=SAEConfig(hidden=16, epochs=sae_epochs, checkpoint_every=2, lr_step_epochs=2),
        device="cpu",
    )


def make_session(folder: Path, name: str, config: SessionConfig | None = None,
                 stages: dict[str, tuple[str, str]] | None = None) -> Path:
    """Create ``folder/name.h5`` and commit the given ``stage -> (state, message)``."""
    path = folder / f"{name}.h5"
    with Session.create(path, config or tiny_config(name)) as session:
        if stages:
            with session.transaction() as tx:
                for stage, (state, message) in stages.items():
                    tx.set_stage(stage, state, message)
    return path


def add_sae_history(path: Path, epochs: int = 30) -> dict[str, np.ndarray]:
    """Commit a plausible ``sae/history`` (one seed × epochs), as the SAE stage stores it."""
    t = np.arange(1, epochs + 1, dtype=float)
    history = {
        "recon": (1.0 / t)[None],
        "sparsity": (0.1 + 0.05 / t)[None],
        "l0": (16 - 10 * (1 - np.exp(-t / 8)))[None],
        "ev": (1 - 0.9 * np.exp(-t / 6))[None],
        "dead": np.floor(t / 10)[None],
    }
    history["loss"] = history["recon"] + history["sparsity"]
    with Session.open(path) as session, session.transaction() as tx:
        tx.write_arrays("sae/history", history)
    return history


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> float:
    """Freeze the timestamps core.store.session writes, and show them in UTC."""
    monkeypatch.setattr(core.store.session, "time", types.SimpleNamespace(time=lambda: FIXED_TIME))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield FIXED_TIME
    monkeypatch.undo()
    time.tzset()


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Let the app run until ``condition()`` holds (jobs run in threads, so poll)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or condition}")
        await pilot.pause(0.05)
    await pilot.pause()



def wait_or_cancelled(event: threading.Event, cancel: object | None = None) -> bool:
    """Block a test job or gated load until ``event`` is set, or until it is told to stop.

    It stops when the job's cancel token fires (``app.on_unmount`` cancels the running job) or
    when the Textual worker running it is cancelled (the app closes its screens' workers on exit),
    so a test that ends without opening the gate never idles to a timeout. Returns ``event.is_set()``.
    """
    from textual.worker import NoActiveWorker, get_current_worker

    try:
        worker = get_current_worker()
    except NoActiveWorker:
        worker = None
    while not event.wait(0.02):
        if getattr(cancel, "cancelled", False) or (worker is not None and worker.is_cancelled):
            return False
    return True


def held_job(stop: threading.Event) -> Callable[..., None]:
    """A job body that runs until ``stop`` is set or the job is cancelled."""
    def body(progress: object, cancel: object) -> None:
        wait_or_cancelled(stop, cancel)
    return body


def screen_text(app) -> str:  # noqa: ANN001
    """What the terminal shows now, as plain text (the compositor's lines, modals included)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def line_with(text: str, start: str) -> list[str]:
    """The whitespace-split cells of the first shown line that starts with ``start``."""
    for line in text.splitlines():
        if line.strip().startswith(start):
            return line.split()
    raise AssertionError(f"no line starts with {start!r} in:\n{text}")


def cells_after(text: str, marker: str) -> list[str]:
    """The whitespace-split cells after ``marker`` on the first shown line that holds it."""
    for line in text.splitlines():
        if marker in line:
            return line.split(marker, 1)[1].split()
    raise AssertionError(f"no line holds {marker!r} in:\n{text}")
