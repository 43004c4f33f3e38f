"""argparse ``type=`` checks for every numeric flag: bad values stop at parse time with one message.

Each factory returns a converter that raises :class:`argparse.ArgumentTypeError`, which argparse
reports as ``salve CMD: error: argument --flag: <message>`` (exit status 2) before anything is
opened or written.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from core.config import MAX_NAME_LENGTH


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def real(minimum: float | None = None, exclusive: bool = False,
         maximum: float | None = None) -> Callable[[str], float]:
    """A finite float, optionally bounded (``exclusive``: strictly above ``minimum``)."""

    def convert(text: str) -> float:
        value = float(_number(text, float))
        if minimum is not None and (value <= minimum if exclusive else value < minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if exclusive else '≥'} {minimum:g}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be ≤ {maximum:g}, got {text}")
        return value

    convert.__name__ = "number"
    return convert


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number in ``[minimum, maximum]``."""

    def convert(text: str) -> int:
        value = int(_number(text, int))
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be ≥ {minimum}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be ≤ {maximum}, got {text}")
        return value

    convert.__name__ = "integer"
    return convert


finite = real()
positive = real(0.0, exclusive=True)
non_negative = real(0.0)
count = integer(1)
index = integer(0)


def session_name(text: str) -> str:
    """A session name that is a valid, not-too-long file name (or a path with a slash)."""
    base = text.rstrip("/").rsplit("/", 1)[-1]
    if not base or "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid session name")
    if len(base) > MAX_NAME_LENGTH:
        raise argparse.ArgumentTypeError(
            f"the name is {len(base)} characters long; use at most {MAX_NAME_LENGTH}")
    return text


def parse_alpha_grid(text: str) -> list[float]:
    """``START:STOP:N`` (N evenly spaced values, both ends included) or ``a,b,c``; all finite."""
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            start, stop, n = float(parts[0]), float(parts[1]), int(parts[2])
            if n < 2:
                raise argparse.ArgumentTypeError(f"'{text}': N must be at least 2")
            values = [start + (stop - start) * i / (n - 1) for i in range(n)]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not START:STOP:N (e.g. 0:5:200) or a comma list (e.g. 0,1,2)"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("the list of values is empty")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"'{text}' contains a value that is not finite")
    return values


def alpha_grid(text: str) -> str:
    """Checks an ``--alphas`` value at parse time; the command parses the same text again."""
    parse_alpha_grid(text)
    return text


def force_flag(parser: argparse.ArgumentParser) -> None:
    """``--force``: the one way to replace an output file that already exists."""
    parser.add_argument("--force", action="store_true", help="replace output files that already exist")


def memory_size(text: str) -> str:
    """``--memory-budget``: a size (``1G``, ``512M``) or a share of RAM (``25%``), checked now."""
    from core.config import parse_memory_size

    try:
        parse_memory_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
