"""`admission-cli pin`: lock image references to digests (run.py), changing only the references' characters.

sites.py finds the references (the source adapters say which values, sources/spans.py where they are written);
lookup.py asks the registry through the client, gates, credentials and caches of `check --resolve-images`.
"""
