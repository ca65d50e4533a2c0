"""The rendered Deployment's server container run as a local process: the image's ENTRYPOINT with the container's
args and env, its mounts backed by local folders holding what the cluster would put there (the rendered policy
ConfigMap, the rendered TLS Secret or a test certificate, an empty /tmp), on loopback. Used by the chart's own tests
and by the control-plane tests (tests/cluster/), which put it behind a real API server."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.chart.conftest import NAMESPACE, Rendered
from tests.chart.test_image import _final
from tests.images.registry import free_port

BIN = Path(sys.executable).parent


@dataclass
class Pod:
    rendered: Rendered
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    ca: Path

    @property
    def host(self) -> str:
        return f"admission.{NAMESPACE}.svc"

    def client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(base_url=f"https://127.0.0.1:{self.port}", verify=context, timeout=10)

    def get(self, client: httpx.Client, path: str) -> httpx.Response:
        # The certificate names the Service (admission.<ns>.svc), as the API server dials it: verify that name.
        return client.get(path, extensions={"sni_hostname": self.host})

    def post(self, client: httpx.Client, body: bytes) -> httpx.Response:
        return client.post("/validate?timeout=5s", content=body, headers={"Content-Type": "application/json"},
                           extensions={"sni_hostname": self.host})

    def log(self) -> str:
        return (self.root / "stderr.log").read_text()


def _local(value: str, mounts: dict[str, Path]) -> str:
    """A path inside the pod -> the local folder backing its mount."""
    for mount_path, local in sorted(mounts.items(), key=lambda item: -len(item[0])):
        if value == mount_path or value.startswith(mount_path + "/"):
            return str(local) + value[len(mount_path):]
        if "=" in value:
            flag, _, rest = value.partition("=")
            if rest == mount_path or rest.startswith(mount_path + "/"):
                return f"{flag}={local}{rest[len(mount_path):]}"
    return value


def start_pod(rendered: Rendered, root: Path, *, kubeconfig: Path | None = None,
              tls: dict[str, bytes] | None = None, name: str = "admission-0",
              env_extra: dict[str, str] | None = None) -> Pod:
    """Run the rendered server container on loopback. `kubeconfig` is the cluster it reads (none by default: reads
    off); `tls` replaces the rendered TLS Secret's keys (a certificate for 127.0.0.1, as the control-plane tests
    need); `name` is the pod's name as the downward API gives it; `env_extra` adds to or replaces the container's."""
    pod_spec = rendered.deployment["spec"]["template"]["spec"]
    container = rendered.server
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    mounts: dict[str, Path] = {}
    ca = root / "ca.crt"
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        folder = root / "volumes" / mount["name"]
        folder.mkdir(parents=True)
        if "configMap" in volume:
            for key, text in rendered.one("ConfigMap", volume["configMap"]["name"])["data"].items():
                (folder / key).write_text(text)
        elif "secret" in volume:
            secret = rendered.one("Secret", volume["secret"]["secretName"])
            data = tls or {key: base64.b64decode(b64) for key, b64 in secret["data"].items()}
            for key, value in data.items():
                (folder / key).write_bytes(value)
            ca.write_bytes(data["ca.crt"])
        else:
            assert "emptyDir" in volume, volume
        mounts[mount["mountPath"]] = folder
    (entrypoint,) = _final("ENTRYPOINT")
    assert "command" not in container, "the chart relies on the image's ENTRYPOINT"
    port = free_port()
    argv = [str(BIN / entrypoint.value[0]), *(_local(a, mounts) for a in container["args"]),
            "--host=127.0.0.1", f"--port={port}"]  # loopback, and a free port instead of 8443 (last flag wins)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADMISSION_")}
    env.update({k: _local(v, mounts) for k, v in rendered.env().items()})
    downward = {"metadata.name": name, "metadata.namespace": NAMESPACE}
    env.update({k: downward[path] for k, path in rendered.env_from().items()})
    env.update(env_extra or {})
    # Outside a cluster and without a kubeconfig, the server turns its reads off.
    env["KUBECONFIG"] = str(kubeconfig or root / "no-kubeconfig")
    env["TMPDIR"] = str(mounts["/tmp"])
    process = subprocess.Popen(argv, stdout=open(root / "stdout.log", "wb"), stderr=open(root / "stderr.log", "wb"),  # noqa: SIM115
                               env=env, cwd=root)
    return Pod(rendered, root, port, process, ca)
