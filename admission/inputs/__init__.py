"""Which files a run reads and as what: the walk, recognition, skips, excludes, `.admission.yaml`, the repository
root and relative paths. Used by `check` and `pin`; knows which adapter reads a file, never the syntax inside."""
