"""admission: one policy core for a Kubernetes admission webhook and a CI linter."""

__version__ = "0.1.0"
