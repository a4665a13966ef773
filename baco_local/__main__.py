"""``python -m baco_local`` is the ``baco`` command."""

from .cli.app import main

main()
