"""Started and probed, as the guide's `docker run` and `whoami` do, with no Docker engine: the session's image (its
linux/amd64 manifest) unpacked by umoci, whose runtime config comes from the image config (user, environment,
entrypoint, working directory), run by runc on the host's network (no network namespace) with a read-only root, a
/tmp tmpfs, and the TLS and policy folders mounted where the chart mounts them."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import render
from tests.image.conftest import ROOT, Built, _missing
from tests.images.registry import free_port

DEMO = ROOT / "examples" / "webhook-demo"
REVIEWS = (DEMO / "allowed.json", DEMO / "denied.json")
_ids = itertools.count()


def runc() -> str:
    found = shutil.which("runc") or ("/usr/sbin/runc" if Path("/usr/sbin/runc").exists() else None)
    if found is None:
        _missing("runc is not installed (make test installs it)")
    return found


@dataclass(frozen=True)
class Unpacked:
    rootfs: Path
    config: dict[str, Any]  # the runtime config umoci generated from the image config
    image: dict[str, Any]  # the image config


@pytest.fixture(scope="module")
def unpacked(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Unpacked:
    work = tmp_path_factory.mktemp("runc")
    digest = built.platforms["linux/amd64"]
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{built.repository}@{digest}",
                    f"oci:{work / 'layout'}:amd64"], check=True, capture_output=True, timeout=600)
    subprocess.run(["umoci", "unpack", "--image", f"{work / 'layout'}:amd64", str(work / "bundle")], check=True,
                   capture_output=True, timeout=600)
    config = json.loads((work / "bundle" / "config.json").read_text())
    from tests.image.images import Source

    return Unpacked(work / "bundle" / "rootfs", config, Source.registry(built.host, "admission").config(digest))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway certificate for 127.0.0.1, as make demo-webhook makes one."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=admission-test",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(folder / "tls.key"), "-out",
                    str(folder / "tls.crt")], check=True, capture_output=True, timeout=60)
    # Readable by uid 10001, as a Secret volume's files are (pytest's folders are 0700).
    folder.chmod(0o755)
    (folder / "tls.key").chmod(0o644)
    return folder


class Container:
    """One runc container of the image, serving on a loopback port."""

    def __init__(self, unpacked: Unpacked, work: Path, tls: Path, *, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.port = free_port()
        self.id = f"admission-image-test-{os.getpid()}-{next(_ids)}"
        self.bundle = work / self.id
        self.bundle.mkdir(parents=True)
        self.cert = tls / "tls.crt"
        config = json.loads(json.dumps(unpacked.config))
        process = config["process"]
        process["terminal"] = False
        entrypoint = unpacked.image["config"]["Entrypoint"]
        assert process["args"][: len(entrypoint)] == entrypoint
        process["args"] = [*entrypoint, *(args or [
            "serve", "--host=127.0.0.1", "--tls-cert=/etc/admission/tls/tls.crt", "--tls-key=/etc/admission/tls/tls.key",
            "--policy=/etc/admission/policy/policy.yaml", "--drain-delay", "0.5"])]
        process["env"] = [*process["env"], f"ADMISSION_PORT={self.port}",
                          *(f"{k}={v}" for k, v in (env or {}).items())]
        config["root"] = {"path": str(unpacked.rootfs), "readonly": True}
        config["hostname"] = "admission"
        config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
        config["mounts"] += [
            {"destination": "/etc/admission/tls", "type": "bind", "source": str(tls), "options": ["rbind", "ro"]},
            {"destination": "/etc/admission/policy", "type": "bind", "source": str(DEMO), "options": ["rbind", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}]
        (self.bundle / "config.json").write_text(json.dumps(config))
        self.log = self.bundle / "container.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([runc(), "run", "--bundle", str(self.bundle), "--pid-file",
                                             str(self.bundle / "pid"), self.id], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        self.context = ssl.create_default_context(cafile=str(self.cert))
        deadline = time.monotonic() + 60
        while self.get("/readyz")[0] != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the container did not become ready:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    @property
    def pid(self) -> int:
        return int((self.bundle / "pid").read_text())

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url(path), context=self.context, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def post(self, path: str, body: bytes) -> dict[str, Any]:
        request = urllib.request.Request(self.url(path), data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=self.context, timeout=15) as response:
            return json.loads(response.read())

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([runc(), "exec", self.id, *argv], capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        if self.process.poll() is None:
            subprocess.run([runc(), "kill", self.id, "KILL"], capture_output=True, timeout=30)
            self.process.wait(timeout=30)
        subprocess.run([runc(), "delete", "--force", self.id], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def container(unpacked: Unpacked, tls: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    running = Container(unpacked, tmp_path_factory.mktemp("containers"), tls)
    yield running
    running.stop()


def test_the_runtime_config_is_the_image_config(unpacked: Unpacked) -> None:
    image = unpacked.image["config"]
    process = unpacked.config["process"]
    assert (process["user"]["uid"], process["user"]["gid"]) == (10001, 10001) and image["User"] == "10001:10001"
    assert process["args"] == [*image["Entrypoint"], *image["Cmd"]]
    assert process["cwd"] == (image.get("WorkingDir") or "/")
    assert set(image["Env"]) <= set(process["env"])


def test_healthz_answers_and_the_images_own_healthcheck_passes_inside(container: Container,
                                                                      unpacked: Unpacked) -> None:
    assert container.get("/healthz") == (200, b'{"status":"ok"}')
    test = unpacked.image["config"]["Healthcheck"]["Test"]
    assert test[0] == "CMD"
    done = container.exec(*test[1:])
    assert done.returncode == 0, done.stderr


def test_the_server_runs_as_uid_10001_not_root(container: Container) -> None:
    status = dict(line.split(":\t", 1) for line in Path(f"/proc/{container.pid}/status").read_text().splitlines()
                  if ":\t" in line)
    assert status["Uid"].split() == ["10001"] * 4 and status["Gid"].split() == ["10001"] * 4
    cmdline = Path(f"/proc/{container.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[:3] == [b"/opt/venv/bin/python", b"/opt/venv/bin/admission-cli", b"serve"]
    done = container.exec("id", "-u")
    assert done.stdout.strip() == "10001"


def test_the_demo_reviews_get_the_same_answers_as_make_demo_webhook(container: Container) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADMISSION_")}
    demo = subprocess.run([sys.executable, str(DEMO / "demo.py")], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=env)
    assert demo.returncode == 0, demo.stderr
    decoder = json.JSONDecoder()
    answers = []
    for block in demo.stdout.split("\n$ curl ")[1:]:
        answers.append(decoder.raw_decode(block[block.index("{"):])[0])
    assert len(answers) == len(REVIEWS)
    ours = [container.post("/validate?timeout=10s", path.read_bytes()) for path in REVIEWS]
    assert ours == answers
    assert [a["response"]["allowed"] for a in ours] == [True, False]


def test_the_server_can_verify_signatures_and_make_its_own_certificates(container: Container, tmp_path: Path) -> None:
    """The image carries cryptography: a policy naming a key loads (images.verify), as managed TLS (the chart's
    default) needs it too."""
    done = container.exec("python", "-c", "import cryptography.x509, admission.keys, admission.webhook.certs")
    assert done.returncode == 0, done.stderr


def test_sigterm_stops_it_with_exit_0_inside_the_drain_time(unpacked: Unpacked, tls: Path, tmp_path: Path) -> None:
    """With the chart's drain settings: readiness goes false at once, the server drains, and it exits 0 before the
    kubelet's grace period (terminationGracePeriodSeconds, less the preStop pause) runs out."""
    rendered = render({"tls": {"mode": "selfSigned"}})
    env = {e["name"]: e["value"] for e in rendered.server["env"]
           if e["name"] in ("ADMISSION_DRAIN_DELAY", "ADMISSION_GRACE")}
    pause = float(rendered.server["lifecycle"]["preStop"]["exec"]["command"][-1])
    grace = rendered.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    running = Container(unpacked, tmp_path, tls, env=env, args=[
        "serve", "--host=127.0.0.1", "--tls-cert=/etc/admission/tls/tls.crt", "--tls-key=/etc/admission/tls/tls.key",
        "--policy=/etc/admission/policy/policy.yaml"])
    try:
        started = time.monotonic()
        os.kill(running.pid, signal.SIGTERM)
        time.sleep(0.3)
        assert running.get("/readyz")[0] == 503, "readiness goes false while it drains"
        code = running.process.wait(timeout=grace)
        elapsed = time.monotonic() - started
    finally:
        running.stop()
    assert code == 0, running.log.read_text()[-3000:]
    assert float(env["ADMISSION_DRAIN_DELAY"]) <= elapsed < grace - pause, elapsed
