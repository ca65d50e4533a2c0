"""Image references and image configs: the reference grammar (pure), registry client, cache and enrichment."""
