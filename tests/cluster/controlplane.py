"""A real Kubernetes control plane on loopback, started the way controller-runtime's envtest starts one: etcd and
kube-apiserver (kube-controller-manager on demand), built from Go modules by tests/cluster/build.sh.

Unlike envtest, the default admission chain stays on, ServiceAccount plugin included, so Pods reach the webhook with
the serviceAccountName and token volume that real ones carry. No kubelet or scheduler runs: Pods are stored, never run.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.images.registry import free_port

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tests" / "cluster" / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
# Where `make k8s-bin` writes why a build failed, so the skip can say it.
BUILD_LOG = ROOT / ".k8s-bin.log"


def binaries_dir() -> tuple[Path | None, str]:
    """The cached binaries' folder, or None and the reason they are not there."""
    try:
        found = subprocess.run(["bash", str(BUILD), "--print-dir"], capture_output=True, text=True, timeout=60,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot locate the control-plane binaries: {exc}"
    folder = Path(found)
    missing = [b for b in BINARIES if not os.access(folder / b, os.X_OK)]
    if not missing:
        return folder, ""
    why = BUILD_LOG.read_text(errors="replace").strip().splitlines()[-5:] if BUILD_LOG.exists() else []
    return None, (f"control-plane binaries not built ({', '.join(missing)} missing in {folder}); run `make k8s-bin`"
                  + (": " + " | ".join(why) if why else ""))


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout)


@dataclass
class ControlPlane:
    """etcd + kube-apiserver with an admin (system:masters) client certificate; kube-controller-manager on demand."""

    bin: Path
    root: Path
    ca: trustme.CA = field(default_factory=trustme.CA)
    processes: dict[str, Process] = field(default_factory=dict)
    port: int = 0
    started_in: float = 0.0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.root / "pki" / "ca.crt"

    # -- start and stop -----------------------------------------------------------------------------------------

    def start(self) -> None:
        began = time.monotonic()
        pki = self.root / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        serving = self.ca.issue_cert("127.0.0.1", "localhost", "kubernetes", "kubernetes.default.svc",
                                     common_name="kube-apiserver")
        serving.cert_chain_pems[0].write_to_path(str(pki / "apiserver.crt"))
        serving.private_key_pem.write_to_path(str(pki / "apiserver.key"))
        admin = self.ca.issue_cert("admin", common_name="admin", organization_name="system:masters")
        admin.cert_chain_pems[0].write_to_path(str(pki / "admin.crt"))
        admin.private_key_pem.write_to_path(str(pki / "admin.key"))
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (pki / "sa.key").write_bytes(sa_key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
        (pki / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

        etcd_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn("etcd", [
            str(self.bin / "etcd"), f"--data-dir={self.root / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync=true",  # a throwaway store: durability costs seconds per test run, buys nothing
            "--log-level=warn",
        ])
        self._wait(lambda: httpx.get(f"{etcd_url}/health", timeout=2).json().get("health") == "true",
                   what="etcd", timeout=60)

        self.port = free_port()
        self._spawn("kube-apiserver", [
            str(self.bin / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={self.ca_file}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            # 127.0.0.1 cannot be an Endpoints address of the `kubernetes` Service: nothing in-cluster dials it here.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={pki}",
        ])
        self._write_kubeconfig(self.admin_kubeconfig, user={"client-certificate": str(pki / "admin.crt"),
                                                            "client-key": str(pki / "admin.key")})
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self._client = httpx.Client(base_url=self.url, verify=context, timeout=10)
        self._wait(lambda: self._client.get("/readyz").status_code == 200, what="kube-apiserver", timeout=120)
        self.started_in = time.monotonic() - began

    def start_controller_manager(self) -> None:
        if "kube-controller-manager" in self.processes:
            return
        pki = self.root / "pki"
        port = free_port()
        self._spawn("kube-controller-manager", [
            str(self.bin / "kube-controller-manager"),
            f"--kubeconfig={self.admin_kubeconfig}",
            # Each controller acts as its own ServiceAccount (system:serviceaccount:kube-system:replicaset-controller),
            # as in a real cluster, so the webhook sees the identities it will see there.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={self.ca_file}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={port}",
            # The controllers that create workloads' objects and accounts; none that needs nodes or a cloud.
            "--controllers=deployment-controller,replicaset-controller,statefulset-controller,daemonset-controller,"
            "job-controller,cronjob-controller,replicationcontroller-controller,garbage-collector-controller,"
            "serviceaccount-controller,namespace-controller,root-ca-certificate-publisher-controller",
        ])

    def stop(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            if name in self.processes:
                self.processes[name].stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log}) ---\n{p.tail()}" for p in self.processes.values())

    # -- use ------------------------------------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None, kubeconfig: Path | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin / "kubectl"), f"--kubeconfig={kubeconfig or self.admin_kubeconfig}", *args]
        run = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "HOME": str(self.root)})  # no ~/.kube cache from elsewhere
        if check and run.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {run.returncode}:\n{run.stderr}{run.stdout}")
        return run

    def apply(self, objects: Sequence[dict[str, Any]], *extra: str, check: bool = True,
              kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", *extra, stdin=yaml.safe_dump_all(objects), check=check,
                            kubeconfig=kubeconfig)

    def create(self, objects: Sequence[dict[str, Any]], *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`kubectl create`: unlike apply it needs no `get` first, so an impersonated controller may use it."""
        return self.kubectl("create", "-f", "-", *extra, stdin=yaml.safe_dump_all(objects), check=check)

    def get(self, path: str) -> Any:  # noqa: ANN401
        response = self._client.get(path)
        response.raise_for_status()
        return response.json() if "json" in response.headers.get("content-type", "") else response.text

    def metrics(self) -> str:
        response = self._client.get("/metrics")
        response.raise_for_status()
        return response.text

    def ensure_default_service_accounts(self, *namespaces: str) -> None:
        """Without kube-controller-manager nobody creates `default` accounts, and the ServiceAccount admission
        plugin refuses every Pod in a namespace that lacks one."""
        for namespace in namespaces:
            self.kubectl("create", "serviceaccount", "default", "-n", namespace, check=False)
            self._wait(lambda ns=namespace: self.kubectl("get", "serviceaccount", "default", "-n", ns,
                                                         check=False).returncode == 0,
                       what=f"serviceaccount default in {namespace}", timeout=30)

    def token_kubeconfig(self, path: Path, *, namespace: str, service_account: str) -> Path:
        """A kubeconfig that authenticates as a ServiceAccount, with a token from `kubectl create token`."""
        token = self.kubectl("create", "token", service_account, "-n", namespace, "--duration=2h").stdout.strip()
        self._write_kubeconfig(path, user={"token": token}, namespace=namespace)
        return path

    # -- internals ------------------------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.root / f"{name}.log"
        handle = open(log, "wb")  # noqa: SIM115  (the process owns it until it exits)
        popen = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=self.root,
                                 start_new_session=True)
        self.processes[name] = Process(name, popen, log)

    def _wait(self, ready: Any, *, what: str, timeout: float) -> None:  # noqa: ANN401
        deadline = time.monotonic() + timeout
        while True:
            for process in self.processes.values():
                if process.popen.poll() is not None:
                    raise RuntimeError(f"{process.name} exited {process.popen.returncode} while waiting for {what}:\n"
                                       f"{process.tail()}")
            try:
                if ready():
                    return
            except (httpx.HTTPError, json.JSONDecodeError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {timeout:.0f} s:\n{self.logs()}")
            time.sleep(0.2)

    def _write_kubeconfig(self, path: Path, *, user: dict[str, str], namespace: str = "default") -> None:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url,
                                                      "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": "test", "user": user}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": namespace}}],
        }
        path.write_text(yaml.safe_dump(config))

