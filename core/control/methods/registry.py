"""Which editing methods exist, by the name an :class:`~core.control.methods.spec.EditSpec`
records, in the order the fronts offer them (CLI choices, the TUI's ``m``).

``core.control.methods`` registers the built-in ones; a new method is one module plus one
:func:`register` line there (a test registers its own with :func:`registered`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from core.control.methods.base import EditMethod
from core.control.methods.spec import REGISTERED


def register(method: EditMethod) -> EditMethod:
    """Add ``method`` under its name (replacing one of the same name); returns it."""
    REGISTERED[method.name] = method
    return method


@contextmanager
def registered(method: EditMethod) -> Iterator[EditMethod]:
    """``method`` registered inside the block only (tests, plug-ins tried out)."""
    previous = REGISTERED.get(method.name)
    register(method)
    try:
        yield method
    finally:
        if previous is None:
            REGISTERED.pop(method.name, None)
        else:
            REGISTERED[method.name] = previous


def method_names() -> tuple[str, ...]:
    return tuple(REGISTERED)


def methods() -> tuple[EditMethod, ...]:
    """Every registered method, in registration order."""
    return tuple(get_method(name) for name in REGISTERED)


def default_method() -> EditMethod:
    """The first registered method (SALVE): the pipeline's curves, α_crit and the fronts' start."""
    return get_method(next(iter(REGISTERED)))  # never None: the built-ins are registered


def get_method(name: str | EditMethod | None = None) -> EditMethod:
    """The method registered under ``name`` (``ValueError`` for an unknown name); a method
    object is returned as it is, None gives :func:`default_method`."""
    if isinstance(name, EditMethod):
        return name
    if name is None:
        return default_method()
    method = REGISTERED.get(name)
    if not isinstance(method, EditMethod):
        raise ValueError(f"method must be one of {', '.join(REGISTERED)}, got '{name}'")
    return method
