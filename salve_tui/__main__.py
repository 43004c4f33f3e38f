"""``salve-tui [SESSION] [--build] [--sessions-dir DIR]``: start the terminal workstation."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.store.layout import DEFAULT_SESSIONS_DIR  # light: h5py is imported after the first frame


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="salve-tui",
        description="Keyboard-driven terminal workstation for SALVE. Without SESSION it opens the "
                    "sessions list.",
    )
    parser.add_argument("session", nargs="?", default=None,
                        help="session name (in the sessions folder) or path to a .h5 session to open")
    parser.add_argument("--sessions-dir", default=None,
                        help=f"session folder (default: $SALVE_SESSIONS or ./{DEFAULT_SESSIONS_DIR})")
    parser.add_argument("--build", action="store_true",
                        help="create SESSION with the demo settings if it does not exist, then run "
                             "every stage that is not done yet (resumes a half-built session)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.build and not args.session:
        print("error: --build needs a SESSION name, e.g. `salve-tui demo --build`", file=sys.stderr)
        return 2
    from salve_tui.app.widgets.image import preload_terminal_graphics

    preload_terminal_graphics()  # must run before Textual owns the terminal
    from salve_tui.app.app import SalveApp

    SalveApp(sessions_folder=args.sessions_dir, start_session=args.session, build=args.build).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
