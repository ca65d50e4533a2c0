"""The error hierarchy. Kept small on purpose; each edge maps it once (CLI exit codes, webhook answers)."""

from __future__ import annotations


class AdmissionError(Exception):
    """Base of every error this package raises on purpose."""


class InputError(AdmissionError):
    """The caller's input cannot be read or interpreted. CLI: exit 2. Webhook: 400 envelope / denied object."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.path = path

    def located(self) -> str:
        where = self.file or "-"
        if self.line is not None:
            where += f":{self.line}"
        if self.path:
            where += f" ({self.path})"
        return f"{where}: {self.message}"

    def __str__(self) -> str:
        return self.located()


class PolicyError(AdmissionError):
    """The policy file is invalid. The CLI exits 2; the webhook refuses to start."""


class RegistryError(AdmissionError):
    """An image config could not be had. Becomes an image-config-unavailable finding, never a crash."""

    def __init__(self, message: str, *, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason  # offline | blocked | timeout | not-found | auth | too-large | digest-mismatch | error
