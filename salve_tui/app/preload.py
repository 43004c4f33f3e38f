"""What many screens of the open session need, loaded once in the background and shared.

Right after a session opens the app starts :meth:`SessionAssets.start`: one thread worker loads,
in this order, the modules the screens draw with (torch, plotext), the control inputs
(:func:`core.workflow.inputs.load_inputs`: activations, head, decoder, μ), the feature card's
inputs (the test split's SAE latents with labels, head, decoder and rankings), the test images
used as thumbnails (when they fit :data:`THUMBNAIL_MAX_BYTES`) and the model/SAE/data of
:func:`core.workflow.assets.load_assets`. A screen's ``load()`` worker asks with :meth:`get`:
a ready item is returned at once, one the preloader is loading is waited for (never loaded
twice), one it has not reached yet is loaded by the caller right away.

Items are keyed on the session's stage timestamps: when a job changes a stage,
:meth:`refresh_if_changed` drops everything and loads again (open screens re-run their ``load()``
after every job, so they pick the new values up). Nothing here writes the session.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from textual.app import App

    from core.store.session import Session

ITEMS = ("modules", "inputs", "card_inputs", "thumbnails", "assets")
THUMBNAIL_MAX_BYTES = 256 << 20  # larger test splits (ImageNet's 50k) read their few images on demand
ITEM_TITLES = {
    "modules": "the plotting and tensor libraries",
    "inputs": "the control inputs (cached activations, classifier head, SAE decoder)",
    "card_inputs": "the SAE latents of the test split (feature cards)",
    "thumbnails": "the test images",
    "assets": "the model, the SAE and the dataset",
}


def import_modules(session: Session) -> None:
    """Modules that screens import on first use: importing them here keeps the UI thread free."""
    import textual_plotext  # noqa: F401
    import torch  # noqa: F401

    import core.discover.rankings  # noqa: F401
    import core.workflow.alpha_crit  # noqa: F401
    import core.workflow.edits  # noqa: F401


def load_control_inputs(session: Session) -> Any:
    from core.workflow.inputs import load_inputs

    return load_inputs(session)


def feature_card_inputs(session: Session) -> Any:
    """What every feature card reads (:func:`core.workflow.feature_card.load_card_inputs`): the
    test split's latents ``u`` (N×h) and the rest; computed once, not per card opened."""
    from core.workflow.feature_card import load_card_inputs

    return load_card_inputs(session)


def images_of_test_split(session: Session) -> np.ndarray | None:
    """Every test image as ``(N, H, W, 3)`` uint8 (what the thumbnails show), or None when they
    would take more than :data:`THUMBNAIL_MAX_BYTES` (then screens read the ones they show)."""
    from core.workflow.pipeline import load_data

    test = load_data(session.config).test
    size = session.config.data.image_size
    if len(test) * size * size * 3 > THUMBNAIL_MAX_BYTES:
        return None
    return test.raw_images(np.arange(len(test), dtype=np.int64))


def visual_assets(session: Session) -> Any:
    from core.workflow.assets import load_assets

    return load_assets(session)


LOADERS: dict[str, Callable[[Session], Any]] = {
    "modules": import_modules,
    "inputs": load_control_inputs,
    "card_inputs": feature_card_inputs,
    "thumbnails": images_of_test_split,
    "assets": visual_assets,
}


def stage_stamps(session: Session) -> tuple[tuple[str, str, Any], ...]:
    """Every stage's state and timestamp: the key the shared items are valid for."""
    return tuple(sorted((name, s.state, s.updated) for name, s in session.stages().items()))


@dataclass
class _Item:
    state: str = "pending"  # pending → running → ready | failed
    value: Any = None
    error: BaseException | None = None
    seconds: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)


class SessionAssets:
    """The shared, background-loaded read-only items of the open session (see the module doc)."""

    def __init__(self, loaders: dict[str, Callable[[Session], Any]] | None = None,
                 on_loaded: Callable[[], None] | None = None) -> None:
        self.loaders = dict(loaders or LOADERS)
        # Called (from the loading thread) once every item is in: freeze the long-lived heap.
        # The app freezes at its collector's next safe moment instead of at once: a screen
        # open or just closed then would be frozen with everything it holds.
        self.on_loaded = on_loaded or freeze_long_lived_objects
        self._lock = threading.Lock()
        self._items: dict[str, _Item] = {}
        self._session: Session | None = None
        self._stamps: tuple = ()
        self.generation = 0

    # ----- lifecycle (UI thread)

    def begin(self, session: Session) -> Callable[[], None]:
        """Forget what was loaded; return the loop that loads every item for ``session``
        (to run in a thread: :meth:`start` gives it to an app worker)."""
        with self._lock:
            self.generation += 1
            self._session = session
            self._stamps = stage_stamps(session)
            self._items = {name: _Item() for name in self.loaders}
            items, generation = dict(self._items), self.generation
        return lambda: self._preload(session, items, generation)

    def start(self, app: App, session: Session) -> None:
        """:meth:`begin` and run the loading loop in a thread worker of ``app``."""
        app.run_worker(self.begin(session), thread=True, group="preload",
                       name="preload session assets", exit_on_error=False)

    def refresh_if_changed(self, app: App, session: Session) -> bool:
        """After a job: when a stage changed, drop the items and load them again."""
        if session is self._session and stage_stamps(session) == self._stamps:
            return False
        self.start(app, session)
        return True

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._session = None
            self._items = {}

    # ----- reading (any thread)

    def status(self) -> dict[str, str]:
        """Each item's state (``pending``, ``running``, ``ready``, ``failed``)."""
        with self._lock:
            return {name: item.state for name, item in self._items.items()}

    def seconds(self) -> dict[str, float]:
        with self._lock:
            return {name: item.seconds for name, item in self._items.items() if item.state == "ready"}

    @property
    def finished(self) -> bool:
        return all(state in ("ready", "failed") for state in self.status().values())

    def ready(self, name: str) -> bool:
        """``name`` is loaded (its value can be read without waiting)."""
        with self._lock:
            item = self._items.get(name)
        return item is not None and item.state == "ready"

    def get(self, name: str, session: Session | None = None) -> Any:
        """The item ``name``: at once when ready, after the preloader when it is loading it, else
        loaded here and now (and kept for the others). Raises what loading it raised."""
        with self._lock:
            if session is not None and session is not self._session:
                item = None  # not the session we preload for (tests, a closed session)
            else:
                session = self._session
                item = self._items.get(name)
        if session is None:
            raise RuntimeError("no session is open")
        if item is None:
            return self.loaders[name](session)
        self._run(item, name, session)
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.value

    # ----- loading (worker threads)

    def _run(self, item: _Item, name: str, session: Session) -> None:
        """Load ``item`` in this thread unless another thread already does (or did)."""
        with self._lock:
            if item.state != "pending":
                return
            item.state = "running"
        started = time.perf_counter()
        try:
            item.value = self.loaders[name](session)
        except Exception as exc:  # kept and re-raised to every caller of get()
            item.error = exc
            item.state = "failed"
        else:
            item.state = "ready"
        item.seconds = time.perf_counter() - started
        item.done.set()

    def _preload(self, session: Session, items: dict[str, _Item], generation: int) -> None:
        for name, item in items.items():
            if self.generation != generation:
                return  # a newer start() or clear() superseded this run
            self._run(item, name, session)
            item.done.wait()
        if self.generation == generation:
            self.on_loaded()


def freeze_long_lived_objects() -> None:
    """Move every object alive now (torch, the data set, the loaded items) out of the garbage
    collector's reach, so later full collections scan only what screens create.

    Measured on the demo: with torch and the session loaded, a full collection held the GIL
    300–450 ms, and it struck at random on a screen's first paint. Objects frozen here that become
    cyclic garbage later stay allocated until :func:`unfreeze_objects` (when the session closes); the next
    preload (after a job) freezes again.
    """
    gc.freeze()


def unfreeze_objects() -> None:
    """Hand frozen objects back to the collector (when the session closes, so also when the
    app ends; tests run many apps)."""
    gc.unfreeze()
