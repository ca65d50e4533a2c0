"""`admission-cli serve` as a real process: uvicorn with TLS on loopback, a trustme certificate, logs in files."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.images.registry import free_port

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "admission-cli"


@dataclass
class TLSFiles:
    folder: Path
    ca: Any

    @property
    def cert(self) -> Path:
        return self.folder / "tls.crt"

    @property
    def key(self) -> Path:
        return self.folder / "tls.key"

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.crt"


def make_tls(folder: Path, ca: Any = None, names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TLSFiles:
    import trustme

    folder.mkdir(parents=True, exist_ok=True)
    ca = ca or trustme.CA()
    cert = ca.issue_cert(*names)
    cert.private_key_pem.write_to_path(str(folder / "tls.key"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "tls.crt"))
    ca.cert_pem.write_to_path(str(folder / "ca.crt"))
    return TLSFiles(folder, ca)


@dataclass
class Served:
    folder: Path
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    tls: TLSFiles | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def out(self) -> Path:
        return self.folder / "stdout.log"

    @property
    def err(self) -> Path:
        return self.folder / "stderr.log"

    def start(self, *, wait: bool = True) -> Served:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [str(CLI), "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        if self.tls:
            args += ["--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADMISSION_")}
        env.update(self.env)
        self.process = subprocess.Popen(args, stdout=open(self.out, "wb"), stderr=open(self.err, "wb"), env=env,  # noqa: SIM115
                                        cwd=ROOT)
        if wait:
            self.wait_ready()
        return self

    def client(self, **kwargs: Any) -> httpx.Client:
        verify = ssl.create_default_context(cafile=str(self.tls.ca_file)) if self.tls else False
        kwargs.setdefault("timeout", 10)
        return httpx.Client(base_url=self.base, verify=verify, **kwargs)

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"serve exited {self.process.returncode}: {self.err.read_text()[-3000:]}")
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"serve did not become ready: {self.err.read_text()[-3000:]}")

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def audit(self) -> list[dict[str, Any]]:
        import json

        return [json.loads(line) for line in self.out.read_text().splitlines() if line.startswith("{")]
