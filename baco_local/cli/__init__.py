"""The ``baco`` command line (typer)."""
