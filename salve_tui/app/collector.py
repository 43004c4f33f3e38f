"""When Python's full garbage collections run: at quiet moments, not under a key press.

A full collection holds the GIL for the whole pass. Measured on the demo (2-core machine),
even with the session's data frozen out of its reach by the preloader
(:func:`salve_tui.app.preload.freeze_long_lived_objects`), a pass over what the screens had made
since took 85–240 ms (about 1 µs an object: each object's references touch memory all over a
heap of several hundred MB), and with CPython's default thresholds one ran every few screen
opens: 54 such passes in one `bench/bench_tui.py --screens` run, the cause of the 200–380 ms
first paints left after the screen leaks were fixed.

Policy (:class:`QuietCollector`):
- after a screen closes back to a long-lived one (sessions list, dashboard), a full pass runs
  once no key has come for :data:`CLOSE_IDLE_S` (a pass after a big screen takes 100–300 ms,
  and the next key usually comes sooner: measured in tmux, every first paint over 100 ms was
  one of these passes), the screen's workers are done and Textual has finished closing it (at
  most :data:`SETTLE_MAX_S`); the survivors are frozen (:func:`gc.freeze`), so the next pass
  again scans only what is new and stays short. When a key opens another screen first, the
  pass runs once that screen's first frame is out (:meth:`QuietCollector.screen_shown`):
  it delays the screen's content, not its first paint, and the closed screens' garbage never
  piles up into an automatic pass of most of a second;
- otherwise a pass runs once per pause, when no key or mouse event has come for :data:`IDLE_S`;
- a pass freezes nothing while a closed screen is still alive: frozen alive, a screen stayed
  allocated with all it held and blocked every later freeze, so every pass scanned a growing
  heap. The preloader's freeze of the session's data waits until only long-lived screens are
  shown and no worker runs (:meth:`QuietCollector.freeze_when_safe`; it used to freeze from its
  thread, whatever screen was open); a closed screen caught by it is freed by the next reclaim;
- either only when something was promoted since the last full pass;
- automatic full passes are 10× rarer (after 100 middle-generation passes instead of 10): a
  safety net for a user who never pauses.
Freezing can still catch objects that die right after (a footer's replaced keys); they then
stay allocated. So once the frozen heap has grown by :data:`RECLAIM_GROWTH`
since the last reclaim and the user has been idle on a long-lived screen for
:data:`RECLAIM_IDLE_S`, everything is unfrozen, collected once (a long pass, while nobody types)
and frozen again. :func:`salve_tui.app.preload.unfreeze_objects` hands everything back when the
session closes.
"""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Callable

HOME_DELAY_S = 0.05  # after a screen closed back to a long-lived one
CLOSE_IDLE_S = 0.6  # ... and once no key came for this long (the next one usually comes sooner)
SETTLE_MAX_S = 0.5  # ... waiting at most this long for its workers to end
IDLE_S = 1.0  # seconds without input before a pass may run anywhere else
RECLAIM_IDLE_S = 5.0  # seconds idle on a long-lived screen before a whole-heap pass may run
RECLAIM_GROWTH = 1.3  # ... once the frozen heap has grown this much since the last one
CHECK_EVERY_S = 0.05
FULL_EVERY = 100  # middle-generation passes between automatic full passes (CPython's default: 10)


class QuietCollector:
    """Full garbage collections at quiet moments of one app (``start`` on mount, ``stop`` on unmount).

    ``at_home()``: only long-lived screens are shown (survivors may be frozen); ``depth()``: the
    screen stack's depth (a drop means a screen closed); ``settled()``: no short-lived worker
    is running (a worker and its task form a reference cycle: frozen while it runs, it would
    stay allocated once it ends, so the pass after a screen closes waits up to
    :data:`SETTLE_MAX_S` for them, then runs without freezing).
    """

    def __init__(self, at_home: Callable[[], bool], depth: Callable[[], int],
                 settled: Callable[[], bool] = lambda: True) -> None:
        self.at_home, self.depth, self.settled = at_home, depth, settled
        self.last_input = time.monotonic()
        self.passes = self.reclaims = 0  # what this collector ran (tests read them)
        self._depth = 0
        self._closed_at: float | None = None  # when a screen last closed back home
        self._frozen_after_reclaim: int | None = None
        self._saved_threshold: tuple[int, int, int] | None = None
        self._closed: weakref.WeakSet = weakref.WeakSet()  # closed screens not yet freed
        self._outlived = False  # a closed screen survived the last full pass
        self._idle_pass_for = -1.0  # the last_input of the pause that already had its idle pass
        self._freeze_asked = False

    def closed(self, screen: object) -> None:
        """``screen`` was closed. Nothing is frozen until it is freed: Textual finishes removing
        a screen some time after it leaves the stack, and a frozen screen stays allocated."""
        self._closed.add(screen)

    def start(self) -> None:
        self._saved_threshold = gc.get_threshold()
        young, middle, _ = self._saved_threshold
        gc.set_threshold(young, middle, FULL_EVERY)

    def stop(self) -> None:
        if self._saved_threshold is not None:
            gc.set_threshold(*self._saved_threshold)
            self._saved_threshold = None

    def touched(self) -> None:
        """An input event came: no idle pass for the next :data:`IDLE_S`."""
        self.last_input = time.monotonic()

    def due(self, now: float) -> bool:
        # gc.get_count()[2]: middle-generation passes since the last full one (0: nothing promoted)
        if gc.get_count()[2] == 0:
            return False
        if self._closed_at is not None and now - self._closed_at >= HOME_DELAY_S:
            if now - self.last_input < CLOSE_IDLE_S:
                return False  # the next key usually comes now: a pass would hold it up
            return self._quiet() or now - self._closed_at >= SETTLE_MAX_S
        # once per pause: a screen filling in while nobody types must not be collected every tick
        return now - self.last_input >= IDLE_S and self._idle_pass_for != self.last_input

    def screen_shown(self) -> None:
        """A screen was opened and its first frame is out: the pass a close left pending runs
        now, while the new screen loads (it delays that load, not a key). Nothing is frozen:
        the new screen is alive."""
        if self._closed_at is None or self.at_home() or gc.get_count()[2] == 0:
            return
        self._full_pass()

    def _full_pass(self) -> None:
        """One full collection; it is the pass of the pending close and of the current pause."""
        self._closed_at = None
        self._idle_pass_for = self.last_input
        gc.collect()
        self.passes += 1

    def freeze_when_safe(self) -> None:
        """Freeze what is alive at the next tick at home with no worker running (the
        preloader asks once the session's data is loaded; it may finish while any screen is
        open, and a screen frozen then would stay allocated)."""
        self._freeze_asked = True

    def _quiet(self) -> bool:
        """No screen worker runs and Textual has finished closing every closed screen (its
        message loop has ended), so the pass can free them and freeze the rest."""
        return self.settled() and all(getattr(screen, "_closed", True) for screen in list(self._closed))

    def reclaim_due(self, now: float) -> bool:
        """Idle at home, and the frozen heap grew or a closed screen outlived a pass (something
        frozen holds it: it stays allocated, and no pass may freeze until it is freed)."""
        baseline = self._frozen_after_reclaim
        if (baseline is None or now - self.last_input < RECLAIM_IDLE_S or not self.at_home()
                or not self.settled()):
            return False
        return gc.get_freeze_count() > RECLAIM_GROWTH * baseline or (self._outlived and bool(len(self._closed)))

    def tick(self) -> None:
        now = time.monotonic()
        depth = self.depth()
        if depth < self._depth and self.at_home():
            self._closed_at = now
        self._depth = depth
        if self._freeze_asked and self.at_home() and self.settled():
            # No pass first: the session's data is alive and a pass would only cost. Closed
            # screens not yet collected are frozen with it; the next reclaim frees them.
            self._freeze_asked = False
            self._outlived = self._outlived or bool(len(self._closed))
            gc.freeze()
            # the reclaim baseline: after a reclaim this is the freeze it left pending
            if self._frozen_after_reclaim is None or self.reclaims:
                self._frozen_after_reclaim = gc.get_freeze_count()
        if self.reclaim_due(now):
            gc.unfreeze()
            gc.collect()
            self.reclaims += 1
            self._outlived = False
            if self._may_freeze():
                gc.freeze()
            else:  # a closed screen is still alive: freeze once it is gone
                self._freeze_asked = True
            self._frozen_after_reclaim = gc.get_freeze_count()
            return
        if not self.due(now):
            return
        self._full_pass()
        self._outlived = bool(len(self._closed))
        if self._may_freeze():
            gc.freeze()
            if self._frozen_after_reclaim is None:
                self._frozen_after_reclaim = gc.get_freeze_count()

    def _may_freeze(self) -> bool:
        """Only long-lived screens are shown, no worker runs and every closed screen is freed:
        a screen frozen while still alive would stay allocated, with all it references."""
        return self.at_home() and self.settled() and not len(self._closed)
