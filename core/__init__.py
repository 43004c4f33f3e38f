"""The compute layer of salve-tui: the SALVE method as packages named after its stages.

``discover`` → ``validate`` → ``control``, with ``store`` (HDF5) and ``workflow`` (session-level
calls the fronts use). Nothing here imports a user interface."""
