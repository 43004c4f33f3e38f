"""One module per screen. Analysis views live in ``analysis_*.py`` and register with
:func:`salve_tui.app.screens.base.session_view` (see that module's docstring)."""
