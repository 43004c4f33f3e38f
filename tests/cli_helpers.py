"""Run the `salve` CLI in-process and capture what it prints (argparse's exits included)."""

from __future__ import annotations

import contextlib
import io

from salve_tui.cli.main import main


def run_cli_streams(*argv: str) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``salve ARGV``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as exc:  # argparse
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


def run_cli(*argv: str) -> tuple[int, str]:
    """``(exit code, stdout + stderr)`` of ``salve ARGV``."""
    rc, out, err = run_cli_streams(*argv)
    return rc, out + err
