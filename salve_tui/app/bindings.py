"""Which key bindings are this app's own keys (listed by help and by the wide footer), apart from
Textual's widget internals. Shared by ``screens.help`` and ``widgets.chrome`` without a cycle."""

from __future__ import annotations

from textual.binding import ActiveBinding, Binding
from textual.screen import Screen

OWN_WIDGET_PREFIX = "salve_tui."  # keys of our own widgets (heatmap, tables) are the screen's
# Textual's built-in bindings that are not this app's keys (the palette key is listed by hand).
TEXTUAL_INTERNAL_ACTIONS = frozenset({"screen.copy_text", "copy_text", "help_quit", "command_palette"})


def _is_global(active: ActiveBinding, screen: Screen) -> bool:
    return active.node is screen.app or active.binding.action.startswith("app.")


def _own_actions(node: object) -> set[str]:
    """Actions bound by this app's classes in ``node``'s hierarchy: a ``DataTable`` subclass of
    ours lists its own Enter, not the cursor and paging keys it inherits from Textual."""
    actions: set[str] = set()
    for cls in type(node).__mro__:
        if cls.__module__.startswith(OWN_WIDGET_PREFIX):
            for binding in cls.__dict__.get("BINDINGS", []):
                actions.add(binding.action if isinstance(binding, Binding) else binding[1])
    return actions


def _is_listed(active: ActiveBinding, screen: Screen) -> bool:
    """The screen's, the app's and our own widgets' keys; not Textual widgets' internals."""
    node = active.node
    if active.binding.action in TEXTUAL_INTERNAL_ACTIONS:
        return False
    return node is screen or node is screen.app or active.binding.action in _own_actions(node)
