"""Known model pairs: the ``models.toml`` registry and fetching its files."""
