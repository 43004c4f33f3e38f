"""Bounds on what a file the tool did not write may make it do: JSON nested or sized to exhaust
the parser, array shapes declared far beyond the bytes that back them.

Pure functions without h5py, usable for any untrusted document (a session's JSON, an SAE's
``cfg.json``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

#: Deepest nesting accepted; the tool's own documents nest fewer than 10 levels.
JSON_MAX_DEPTH = 64
#: Largest JSON document accepted (the tool's own are kilobytes to a few megabytes).
JSON_MAX_BYTES = 256 << 20
#: A whole read may declare this many times the bytes its files hold (gzip of real data rarely
#: passes 10x); past the memory budget as well, the declaration is refused before allocating.
DECLARED_TO_STORED = 64

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


class JSONTooDeep(ValueError):
    """A JSON document past the depth or size limit (parsing it could exhaust the stack)."""


def json_depth(text: str) -> int:
    """Deepest bracket nesting of ``text`` outside string literals (linear, no recursion)."""
    bare = _STRING.sub('""', text).encode()
    b = np.frombuffer(bare, dtype=np.uint8)
    if not b.size:
        return 0
    step = np.isin(b, (ord("["), ord("{"))).astype(np.int64) - np.isin(b, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def loads_bounded(text: str | bytes, what: str = "JSON document", max_depth: int = JSON_MAX_DEPTH,
                  max_bytes: int = JSON_MAX_BYTES) -> Any:
    """``json.loads`` that refuses documents too large or too deeply nested, with a message."""
    if isinstance(text, bytes):
        text = text.decode()
    if len(text) > max_bytes:
        raise JSONTooDeep(f"{what} is {len(text) / 1e6:.0f} MB, more than the {max_bytes / 1e6:.0f} MB "
                          "this tool reads")
    depth = json_depth(text)
    if depth > max_depth:
        raise JSONTooDeep(f"{what} is nested {depth} levels deep, more than the {max_depth} this tool reads")
    return json.loads(text)


def declared_bytes(shape: tuple[int, ...], itemsize: int) -> int:
    """Bytes an array of ``shape`` takes in memory (Python ints: no overflow)."""
    n = 1
    for dim in shape:
        n *= int(dim)
    return n * int(itemsize)


def implausible_declaration(declared: int, stored: int, budget: int) -> bool:
    """Whether reading ``declared`` bytes backed by ``stored`` bytes of files must be refused: past
    the memory budget and far past anything the files could hold."""
    return declared > budget and declared > DECLARED_TO_STORED * max(stored, 1)
