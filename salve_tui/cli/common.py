"""What every ``salve`` command shares: errors, output, sessions, progress and Ctrl-C.

Command modules import this module only (never ``cli.main``), so ``main`` can import each of
them directly without a loop. Nothing here imports torch: building the parser stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.atomic import WriteFailed, describe_os_error, overwrite_policy
from core.jobs import CancelToken, JobCancelled, JobFailed, Progress
from core.store.session import Session, SessionError, resolve_session_path, sessions_dir
from salve_tui.cli import validate as v


class CliError(Exception):
    """Reported as ``error: <message>`` with exit status 2."""


# --------------------------------------------------------------------------- options and output


def common_options() -> argparse.ArgumentParser:
    """The parent parser of every command: sessions folder, ``--json``, ``--parents``, memory."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--sessions-dir", default=None, help="session folder (default: $SALVE_SESSIONS or ./sessions)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--parents", action="store_true", help="create a missing folder of --out")
    common.add_argument("--memory-budget", type=v.memory_size, default=None, metavar="SIZE",
                        help="memory for out-of-core compute, e.g. 4G or 25%% (default: "
                             "$SALVE_MEMORY_BUDGET, else half the RAM); larger activations stream from disk")
    return common


def emit(args: argparse.Namespace, payload: Any, text: Callable[[Any], str] | str | None = None) -> None:
    """Print ``payload`` as JSON with --json, else as human text."""
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2, sort_keys=True, default=str))
    elif callable(text):
        print(text(payload))
    elif text is not None:
        print(text)
    else:
        print(json.dumps(payload, indent=2, sort_keys=True, default=str))


# --------------------------------------------------------------------------- sessions


def session_path(args: argparse.Namespace) -> Path:
    return resolve_session_path(args.session, sessions_dir(args.sessions_dir))


def open_session(args: argparse.Namespace, read_only: bool = False) -> Session:
    return Session.open(session_path(args), read_only=read_only)


# --------------------------------------------------------------------------- progress and Ctrl-C


class ProgressPrinter:
    """Text progress bar with ETA on stderr; one line per update when stderr is not a terminal."""

    def __init__(self, stream: Any = None, min_interval: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.min_interval = min_interval if self.tty else 5.0
        self._last = 0.0
        self._stage = ""

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        finished = p.total > 0 and p.done >= p.total
        if p.stage == self._stage and now - self._last < self.min_interval and not finished:
            return
        if p.stage != self._stage and self._stage and self.tty:
            self.stream.write("\n")
        self._stage, self._last = p.stage, now
        width = 24
        filled = int(round(p.fraction * width))
        eta = p.eta_seconds
        eta_text = f" ETA {_fmt_seconds(eta)}" if eta is not None and not finished else ""
        metrics = " ".join(f"{k}={_fmt(m)}" for k, m in list(p.metrics.items())[:4])
        line = f"{p.stage:<11} [{'#' * filled}{'.' * (width - filled)}] {p.fraction:6.1%}{eta_text} {p.message} {metrics}"
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(100))
            if finished:
                self.stream.write("\n")
                self._stage = ""
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _fmt_seconds(s: float) -> str:
    s = int(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def cancel_on_sigint() -> CancelToken:
    """First Ctrl-C asks the job to stop at its next safe point; a second one aborts."""
    token = CancelToken()

    def handler(signum: int, frame: Any) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        sys.stderr.write("\ncancelling at the next safe point (Ctrl-C again to abort)...\n")

    signal.signal(signal.SIGINT, handler)
    return token


# --------------------------------------------------------------------------- running a command


class _NoteHandler(logging.Handler):
    """The store's notices (a schema migration) as one ``note:`` line on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"note: {record.getMessage()}", file=sys.stderr)


def show_store_notices() -> None:
    logger = logging.getLogger("salve")
    if not any(isinstance(h, _NoteHandler) for h in logger.handlers):
        logger.addHandler(_NoteHandler(logging.WARNING))


def check_out_folder(args: argparse.Namespace) -> None:
    """``--out`` into a folder that does not exist is refused (a typo would otherwise create a
    whole tree), or the folder is created when ``--parents`` is given."""
    out = getattr(args, "out", None)
    if not out:
        return
    folder = Path(out).parent
    if folder.is_dir():
        return
    if folder.exists():
        raise CliError(f"--out {out}: {folder} is not a folder")
    if not getattr(args, "parents", False):
        raise CliError(f"--out {out}: the folder {folder} does not exist; create it first, or pass "
                       "--parents to create it")
    folder.mkdir(parents=True, exist_ok=True)


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command; a fault becomes one ``error:`` line (exit 2), Ctrl-C exit 130."""
    if getattr(args, "memory_budget", None):  # read by core.config.memory_budget (and torchrun ranks)
        from core.config import MEMORY_BUDGET_ENV

        os.environ[MEMORY_BUDGET_ENV] = args.memory_budget
    try:
        check_out_folder(args)
        with overwrite_policy(bool(getattr(args, "force", False))):
            return int(args.func(args) or 0)
    except JobCancelled as exc:
        print(f"cancelled: {exc}. Saved progress is kept; rerun the same command to resume.", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\naborted. The session keeps its last committed step; rerun to resume.", file=sys.stderr)
        return 130
    except (CliError, SessionError, JobFailed, ValueError, FileNotFoundError, KeyError, WriteFailed) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment: permissions, full disk, names too long, ...
        print(f"error: {describe_os_error(exc, exc.filename or 'a file', 'use')}", file=sys.stderr)
        return 2
