"""A real OCI registry for tests: Debian's `docker-registry` on loopback, with filesystem storage in a
temp dir and its access log captured so tests can count requests (architecture §6)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3})')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def have_registry() -> bool:
    return shutil.which("docker-registry") is not None


@dataclass
class Registry:
    """A running registry. `host` is `127.0.0.1:PORT`; `requests()` parses its access log."""

    root: Path
    port: int
    scheme: str = "http"
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "registry.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, extra: Mapping[str, Any] | None = None) -> "Registry":
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "data")}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": "test-secret"},
        }
        for key, value in (extra or {}).items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key].update(value)
            else:
                config[key] = value
        cfg = self.root / "config.yml"
        cfg.write_text(yaml.safe_dump(config))
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log_path.read_text()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("docker-registry did not start listening")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request the registry logged, in order."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return [(m["method"], m["path"], int(m["status"])) for m in _ACCESS.finditer(text)]

    def mark(self) -> int:
        """How many requests so far; pass it to `since` to count what a test step cost."""
        return len(self.requests())

    def since(self, mark: int) -> list[tuple[str, str, int]]:
        """Requests after `mark`, once the access log has settled (it is written after each response)."""
        seen = -1
        for _ in range(40):
            time.sleep(0.05)
            now = self.requests()
            if len(now) == seen:
                break
            seen = len(now)
        return self.requests()[mark:]
