"""Start-up: the first open of ``salve-tui SESSION`` probes the file in a child process
(``core.store.probe``, ~0.25 s); that child runs while the app imports and paints its first frame.
"""

from __future__ import annotations

import threading
from pathlib import Path

_pending: dict[Path, threading.Thread] = {}


def start_probe(path: Path) -> None:
    """Probe ``path`` in a thread now, so that its open (after :func:`wait_probe`) finds it trusted."""
    if not path.is_file() or path.resolve() in _pending:
        return

    def run() -> None:
        from core.store.probe import probe

        try:
            probe(path)
        except Exception:  # the open probes again and names the problem itself
            pass

    thread = threading.Thread(target=run, name="salve-start-probe", daemon=True)
    _pending[path.resolve()] = thread
    thread.start()


def wait_probe(path: Path) -> None:
    """Let a probe started by :func:`start_probe` finish (never two children for one file)."""
    thread = _pending.pop(path.resolve(), None)
    if thread is not None:
        thread.join()
