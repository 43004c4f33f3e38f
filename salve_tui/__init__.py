"""The fronts of salve-tui: the Textual workstation (``app``) and the ``salve`` CLI (``cli``)."""
