"""`make image`: the webhook image, built by BuildKit with no Docker engine, reproducibly, with SLSA provenance, and
pushed (optionally signed with cosign) or written as an OCI archive. docs/image.md is the user's page.

What it does, in order:
1. the wheels requirements.lock pins, fetched once per (lock, Python, glibc, platform) into a cache folder outside
   the checkout (`pip download --only-binary=:all: --require-hashes --platform ...`);
2. the project's own wheel, built from the checkout with the locked build backend (requirements-build.lock, in a
   cached venv), at SOURCE_DATE_EPOCH, and hashed like the rest (pip cannot hash a folder);
3. the build context: a temporary folder with those wheels per platform, requirements.txt and preflight.py;
4. buildkitd, started for this build (OCI worker, runc) with its state in the cache (one build at a time holds it),
   and `buildctl build` with `attest:provenance=mode=max`, SOURCE_DATE_EPOCH from the commit and
   `rewrite-timestamp=true`; then buildkitd is stopped;
5. with a cosign key, the pushed index is signed.

Standard library only: it runs on the host's python3 before anything is installed. BuildKit and cosign come from
tests/supply/build.sh (their Go modules, cached), unless BUILDKITD/BUILDCTL/COSIGN name binaries.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The project's own reference grammar (admission/reference.py imports nothing but the standard library).
sys.path.insert(0, str(ROOT))
from admission.reference import Reference, ReferenceError, parse, split_docker_domain  # noqa: I001
HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "admission"
MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}
# The glibc of the default base's Debian release (bookworm): the newest manylinux tag fetched. preflight.py stops a
# build whose base has an older one.
GLIBC = "2.36"
# What the wheel is built from (setuptools' package discovery reads nothing else); caches and build debris are left.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "admission")
# The inputs whose uncommitted changes make the image differ from the commit's.
INPUTS = (*WHEEL_SOURCES, "Dockerfile", "requirements.lock", "requirements-build.lock", "tools/image")
GC_MAX_USED = os.environ.get("BUILDKIT_CACHE_MAX") or "4GB"  # BuildKit's cache limit (maxUsedSpace)
LOOPBACK = re.compile(r"(?:127\.\d+\.\d+\.\d+|localhost|\[::1\])(?::\d+)?")


class BuildError(Exception):
    """A build that cannot go on; the message says why and what to do."""


def log(message: str) -> None:
    print(f"make image: {message}", file=sys.stderr, flush=True)


def run(argv: Sequence[str], *, what: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        capture: bool = True, timeout: float = 3600) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=capture, text=True, env=env, cwd=cwd, timeout=timeout)
    except FileNotFoundError as exc:
        raise BuildError(f"{what}: {argv[0]} is not installed ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{what}: gave no answer in {timeout:.0f} s") from exc
    if done.returncode != 0:
        output = ((done.stderr or "") + (done.stdout or "")).strip()
        tail = "\n".join(output.splitlines()[-30:])
        raise BuildError(f"{what} failed (exit {done.returncode})" + (f":\n{tail}" if tail else ""))
    return done.stdout or ""


# --- what is built -----------------------------------------------------------------------------------------------


def image_reference(text: str) -> Reference:
    """IMAGE: a registry, a repository and an optional tag (the build makes the digest)."""
    try:
        reference = parse(text)
    except ReferenceError as exc:
        raise BuildError(f"IMAGE={text}: {exc}") from exc
    if reference.digest:
        raise BuildError(f"IMAGE={text}: name a tag or nothing, not a digest (the build makes the digest)")
    if not reference.domain:
        raise BuildError(f"IMAGE={text}: name the registry too (registry.example.com/team/admission:0.1.0); "
                         "there is no Docker engine to keep a local image")
    return reference


def loopback(host: str) -> bool:
    """A registry on this machine: spoken to over plain HTTP (the tests' registry, a local mirror)."""
    return bool(LOOPBACK.fullmatch(host))


@dataclass(frozen=True)
class Commit:
    revision: str
    epoch: int
    source: str

    @property
    def created(self) -> str:
        return datetime.datetime.fromtimestamp(self.epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def public_url(url: str) -> str:
    """A remote URL fit for a label: a network URL without credentials; a local path or file:// URL says nothing
    to anyone else (and differs between clones), so it gives ""."""
    url = url.strip()
    if re.fullmatch(r"[\w.-]+@[\w.-]+:[\w./~-]+", url):  # scp-like git@host:org/repo.git
        user_host, path = url.split(":", 1)
        url = f"https://{user_host.split('@', 1)[1]}/{path}"
    match = re.fullmatch(r"(https?|ssh|git)://(?:[^@/]*@)?([^/]+)(/.*)?", url)
    if not match:
        return ""
    host, path = match[2], (match[3] or "")
    return f"https://{host}{path.removesuffix('.git')}"


def commit(source: str | None) -> Commit:
    """The revision, time and source the image is labelled with: the checkout's HEAD and its commit time, never the
    build's. SOURCE_DATE_EPOCH and REVISION override them (a tarball has no git)."""
    revision = os.environ.get("REVISION") or _git("rev-parse", "HEAD")
    epoch_text = os.environ.get("SOURCE_DATE_EPOCH") or _git("log", "-1", "--format=%ct", "HEAD")
    if not revision or not epoch_text:
        raise BuildError("not a git checkout: set SOURCE_DATE_EPOCH (the source's time, seconds since 1970) and "
                         "REVISION (what the source is) for a reproducible build")
    if not epoch_text.isdigit():
        raise BuildError(f"SOURCE_DATE_EPOCH={epoch_text}: seconds since 1970, an integer")
    if int(epoch_text) > time.time() + 60:
        # The times of what the build makes are lowered to the epoch, never raised: a future epoch would leave them.
        raise BuildError(f"SOURCE_DATE_EPOCH={epoch_text} is in the future: is this machine's clock behind?")
    if "REVISION" not in os.environ and _git("status", "--porcelain", "--", *INPUTS):
        # The image holds the working tree, which is not the commit: say so in the label rather than lie.
        revision += "-dirty"
        log(f"uncommitted changes in {', '.join(INPUTS)}: revision {revision}")
    if source is None:
        source = public_url(_git("config", "--get", "remote.origin.url") or "")
    return Commit(revision, int(epoch_text), source)


# --- wheels --------------------------------------------------------------------------------------------------------


def manylinux(arch: str, glibc: str) -> list[str]:
    """The platform tags a glibc `glibc` machine of `arch` runs, newest first (pip expands none of them itself)."""
    machine = MACHINES[arch]
    major, minor = (int(part) for part in glibc.split("."))
    if major != 2 or minor < 17:
        raise BuildError(f"GLIBC={glibc}: manylinux wheels need glibc 2.17 or newer")
    tags = [f"manylinux_2_{m}_{machine}" for m in range(minor, 16, -1)] + [f"manylinux2014_{machine}"]
    return tags + (["manylinux2010_x86_64", "manylinux1_x86_64"] if machine == "x86_64" else [])


@contextmanager
def placed(final: Path) -> Iterator[Path]:
    """A temporary sibling folder that becomes `final` by one rename when the block succeeds (a concurrent run that
    placed it first wins; nothing half-made is ever at `final`)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield tmp
        try:
            tmp.rename(final)
        except OSError:
            if not final.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_venv() -> Path:
    """A venv with the locked build backend, cached by the lock and the host's Python."""
    lock = (ROOT / "requirements-build.lock").read_bytes()
    key = hashlib.sha256(lock + sys.version.encode() + os.path.realpath(sys.executable).encode()).hexdigest()[:12]
    folder = CACHE / f"image-build-venv-py{sys.version_info[0]}.{sys.version_info[1]}-{key}"
    if (folder / ".complete").exists():
        return folder
    with placed(folder) as tmp:
        run([sys.executable, "-m", "venv", str(tmp)], what="python3 -m venv (install python3-venv)")
        # Its scripts name the temporary path it is renamed from: pip is always run as `python -m pip`.
        run([str(tmp / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--require-hashes", "--no-deps", "--only-binary=:all:", "-r", str(ROOT / "requirements-build.lock")],
            what="installing the locked build backend (requirements-build.lock)")
        (tmp / ".complete").write_text("")
    return folder


def locked_wheels(venv: Path, *, python: str, glibc: str, arch: str) -> Path:
    """requirements.lock's wheels for one platform and Python, fetched once into the cache."""
    lock = (ROOT / "requirements.lock").read_bytes()
    key = hashlib.sha256(lock + f"{python} {glibc} {arch}".encode()).hexdigest()[:12]
    folder = CACHE / "wheels" / f"cp{python.replace('.', '')}-linux-{arch}-glibc{glibc}-{key}"
    if (folder / ".complete").exists():
        return folder
    abi = "cp" + python.replace(".", "")
    with placed(folder) as tmp:
        argv = [str(venv / "bin" / "python"), "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                "--only-binary=:all:", "--require-hashes", "--no-deps", "-r", str(ROOT / "requirements.lock"),
                "--dest", str(tmp), "--python-version", python, "--implementation", "cp", "--abi", abi]
        for tag in manylinux(arch, glibc):
            argv += ["--platform", tag]
        run(argv, what=f"pip download of requirements.lock for Python {python} on linux/{arch}")
        (tmp / ".complete").write_text("")
    return folder


def project_wheel(venv: Path, out: Path, *, epoch: int) -> Path:
    """Our own wheel, built from a copy of the checkout's sources (nothing is written into the checkout) with the
    locked backend, at SOURCE_DATE_EPOCH, with normalised file modes: the same sources give the same wheel."""
    with tempfile.TemporaryDirectory(prefix="admission-wheel-") as folder:
        source = Path(folder) / "src"
        source.mkdir()
        for name in WHEEL_SOURCES:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, source / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
            else:
                shutil.copy2(path, source / name)
        for path in source.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        run([str(venv / "bin" / "python"), "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
             "--no-index", "--wheel-dir", str(out), str(source)], what="building the admission wheel", env=env)
    (wheel,) = out.glob("admission-*.whl")
    return wheel


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]["version"]


def link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def prepare_context(context: Path, *, platforms: Sequence[str], python: str, glibc: str, epoch: int) -> dict[str, str]:
    """The build context the Dockerfile expects: requirements.txt (the lock, then our wheel with its hash),
    preflight.py, and wheels/<os>-<arch>/ with every wheel for that platform. Returns what it holds."""
    venv = build_venv()
    own = project_wheel(venv, context / ".own", epoch=epoch)
    lock = (ROOT / "requirements.lock").read_text()
    (context / "requirements.txt").write_text(
        lock.rstrip("\n") + "\n# The project's own wheel, built from the checkout by make image.\n"
        f"admission[server]=={version()} \\\n    --hash=sha256:{sha256(own)}\n")
    shutil.copy2(HERE / "preflight.py", context / "preflight.py")
    for target in platforms:
        arch = target.split("/")[1]
        folder = context / "wheels" / f"linux-{arch}"
        folder.mkdir(parents=True)
        for wheel in locked_wheels(venv, python=python, glibc=glibc, arch=arch).glob("*.whl"):
            link_or_copy(wheel, folder / wheel.name)
        link_or_copy(own, folder / own.name)
    shutil.rmtree(context / ".own")
    return {"wheel": own.name, "wheel_sha256": sha256(context / "wheels" / f"linux-{platforms[0].split('/')[1]}"
                                                      / own.name)}


# --- BuildKit ------------------------------------------------------------------------------------------------------


def supply_tool(name: str, build: str) -> Path:
    """BUILDKITD / BUILDCTL / COSIGN, else the binary tests/supply/build.sh builds (and caches) from its Go module."""
    override = os.environ.get(name.upper())
    if override:
        return Path(override)
    if not shutil.which("go"):
        raise BuildError(f"no Go toolchain: {name} is built from its Go module (tests/supply/build.sh); install Go, "
                         f"or set {name.upper()}= to a {name} binary")
    log(f"locating {name} (tests/supply/build.sh {build}; a first run builds it from its Go module)")
    try:
        done = subprocess.run(["bash", str(ROOT / "tests" / "supply" / "build.sh"), build], stdout=subprocess.PIPE,
                              text=True, timeout=3600)
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"building {name} took over an hour") from exc
    if done.returncode != 0:
        raise BuildError(f"tests/supply/build.sh {build} failed (its output is above)")
    return Path(done.stdout.strip().splitlines()[-1]) / name


@dataclass
class Buildkitd:
    """buildkitd for one build: the OCI worker with runc, plain HTTP for loopback registries, its state in the cache
    (held by one build at a time), started and stopped here."""

    binary: Path
    state: Path
    http_registries: Sequence[str]
    work: Path
    process: subprocess.Popen[bytes] | None = None
    lock: int | None = None
    address: str = field(init=False)

    def __post_init__(self) -> None:
        self.address = f"unix://{self.work / 'buildkitd.sock'}"

    def start(self, buildctl: Path) -> None:
        runc = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)
        if runc is None:
            raise BuildError("runc is not installed (Debian: apt-get install runc); BuildKit's OCI worker runs it")
        if os.geteuid() != 0:
            raise BuildError("buildkitd runs here as root (its OCI worker); run make image as root, or build with "
                             "docker buildx where a Docker engine runs (docs/image.md)")
        self.state.mkdir(parents=True, exist_ok=True)
        self.lock = os.open(self.state / ".make-image.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another make image is using {self.state}; waiting for it")
            fcntl.flock(self.lock, fcntl.LOCK_EX)
        config = self.work / "buildkitd.toml"
        # The cache is kept between builds (a warm build takes seconds) but bounded: without a limit BuildKit keeps
        # up to a tenth of the disk, and each build of changed sources adds about a gigabyte of snapshots.
        config.write_text(f'[worker.oci]\n  gc = true\n  maxUsedSpace = "{GC_MAX_USED}"\n'
                          + "".join(f'[registry."{host}"]\n  http = true\n  insecure = true\n'
                                    for host in sorted(set(self.http_registries))))
        log_file = open(self.work / "buildkitd.log", "wb")  # noqa: SIM115 - closed when the daemon stops
        self.process = subprocess.Popen(
            [str(self.binary), "--root", str(self.state), "--addr", self.address, "--config", str(config),
             "--oci-worker=true", "--containerd-worker=false",
             f"--oci-worker-snapshotter={os.environ.get('BUILDKIT_SNAPSHOTTER') or 'auto'}",
             f"--oci-worker-binary={runc}"], stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        log_file.close()
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise BuildError(f"buildkitd exited ({self.process.returncode}):\n{self.log_tail()}")
            probe = subprocess.run([str(buildctl), "--addr", self.address, "debug", "workers"], capture_output=True,
                                   timeout=30)
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise BuildError(f"buildkitd did not answer within 60 s:\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self) -> str:
        path = self.work / "buildkitd.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-20:]) if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None


# --- the build -----------------------------------------------------------------------------------------------------


@dataclass
class Options:
    image: Reference | None
    output: Path | None
    platforms: list[str]
    python_image: str | None
    python_digest: str | None
    python_version: str
    glibc: str
    source: str | None
    cosign_key: str | None
    cosign_args: list[str]
    metadata: Path | None
    context_only: Path | None


def dockerfile_default(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S*)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    if not match:
        raise BuildError(f"the Dockerfile has no `ARG {name}=...` default")
    return match[1]


def host_platform() -> str:
    machine = platform.machine()
    for arch, name in MACHINES.items():
        if machine == name:
            return f"linux/{arch}"
    raise BuildError(f"this machine is {machine}: name the target with PLATFORMS=linux/amd64 or linux/arm64")


def options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description="Build the admission image with BuildKit (make image).")
    add = parser.add_argument
    add("--image", default="", help="IMAGE: push to this registry/repository[:tag]")
    add("--output", default="", help="OUTPUT: write an OCI archive here (the default without IMAGE: admission.oci.tar); "
                                     "with IMAGE too, both")
    add("--platforms", default="", help="PLATFORMS: linux/amd64,linux/arm64 (default: this machine's)")
    add("--python-image", default="", help="PYTHON_IMAGE: the base (default: the Dockerfile's)")
    add("--python-digest", default="", help="PYTHON_DIGEST: sha256:... pins the base")
    add("--python-version", default="", help="PYTHON_VERSION: the base's Python (default: the Dockerfile's)")
    add("--glibc", default="", help=f"GLIBC: the base's glibc, the newest wheels fetched (default {GLIBC})")
    add("--source", default=None, help="SOURCE: the source URL label (default: the origin remote, if it is public)")
    add("--cosign-key", default="", help="COSIGN_KEY: sign the pushed index with this cosign key")
    add("--cosign-args", default="", help="COSIGN_ARGS: more `cosign sign` flags, e.g. --tlog-upload=false")
    add("--metadata", default="", help="METADATA: write what was built as JSON here")
    add("--context-only", default="", help="prepare the build context in this folder and stop (for docker buildx)")
    args = parser.parse_args(argv)
    image = image_reference(args.image) if args.image else None
    output = Path(args.output) if args.output else (None if image else Path("admission.oci.tar"))
    platforms = [p.strip() for p in (args.platforms or host_platform()).split(",") if p.strip()]
    for target in platforms:
        if target not in {f"linux/{arch}" for arch in MACHINES}:
            raise BuildError(f"PLATFORMS: {target} is not one of linux/amd64, linux/arm64")
    if args.cosign_key and not image:
        raise BuildError("COSIGN_KEY signs a pushed image: give IMAGE=registry/repository:tag as well")
    if args.python_digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", args.python_digest):
        raise BuildError(f"PYTHON_DIGEST={args.python_digest}: sha256: and 64 hex digits")
    python_version = args.python_version or dockerfile_default("PYTHON_VERSION")
    if not re.fullmatch(r"3\.\d+", python_version):
        raise BuildError(f"PYTHON_VERSION={python_version}: major.minor, e.g. 3.12")
    return Options(image=image, output=output, platforms=platforms, python_image=args.python_image or None,
                   python_digest=args.python_digest or None, python_version=python_version,
                   glibc=args.glibc or GLIBC, source=args.source, cosign_key=args.cosign_key or None,
                   cosign_args=shlex.split(args.cosign_args),
                   metadata=Path(args.metadata) if args.metadata else None,
                   context_only=Path(args.context_only) if args.context_only else None)


def build_args(opts: Options, source: Commit) -> dict[str, str]:
    args = {"PYTHON_VERSION": opts.python_version, "VERSION": version(), "SOURCE": source.source,
            "REVISION": source.revision, "CREATED": source.created, "SOURCE_DATE_EPOCH": str(source.epoch)}
    if opts.python_image:
        args["PYTHON_IMAGE"] = opts.python_image
    if opts.python_digest:
        args["PYTHON_DIGEST"] = opts.python_digest
    return args


def buildctl_argv(opts: Options, *, buildctl: Path, address: str, context: Path, source: Commit,
                  metadata: Path) -> list[str]:
    argv = [str(buildctl), "--addr", address, "build", "--progress=plain", "--frontend", "dockerfile.v0",
            "--local", f"context={context}", "--local", f"dockerfile={ROOT}", "--opt", "filename=Dockerfile",
            "--opt", f"platform={','.join(opts.platforms)}", "--opt", "attest:provenance=mode=max",
            # The runtime stage only copies the venv, and is always copied again: BuildKit's cache key for a COPY
            # ignores file times, so a cached copy would keep an earlier build's times, which the rewrite (it only
            # lowers newer times) leaves in place.
            "--opt", "no-cache=runtime",
            "--metadata-file", str(metadata)]
    for key, value in build_args(opts, source).items():
        argv += ["--opt", f"build-arg:{key}={value}"]
    # The provenance names the source as buildx does (its git info): the claims issue 24's `sources` reads.
    if source.source:
        argv += ["--opt", f"vcs:source={source.source}"]
    argv += ["--opt", f"vcs:revision={source.revision}"]
    if opts.image:
        insecure = ",registry.insecure=true" if loopback(opts.image.domain) else ""
        argv += ["--output", f"type=image,name={opts.image},push=true,rewrite-timestamp=true{insecure}"]
    if opts.output:
        argv += ["--output", f"type=oci,dest={partial(opts.output)},rewrite-timestamp=true"]
    return argv


def partial(output: Path) -> Path:
    """Where buildctl writes the archive: it creates the file before the build, so a failed build must not leave
    something at OUTPUT that looks like an image."""
    return output.resolve().with_name(output.name + ".partial")


def sign(opts: Options, digest: str) -> None:
    assert opts.image is not None and opts.cosign_key is not None
    cosign = supply_tool("cosign", "cosign")
    http = ["--allow-http-registry", "--allow-insecure-registry"] if loopback(opts.image.domain) else []
    target = f"{opts.image.name}@{digest}"
    run([str(cosign), "sign", "--key", opts.cosign_key, "--yes", *http, *opts.cosign_args, target],
        what=f"cosign sign {target}")
    log(f"signed {target} with {opts.cosign_key}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BuildError as exc:
        log(str(exc))
        return 1


def _main(argv: Sequence[str] | None) -> int:
    opts = options(argv)
    timings: dict[str, float] = {}
    started = time.monotonic()
    source = commit(opts.source)
    if not source.source:
        log("no SOURCE and no public origin remote: the image will not say where it came from "
            "(image-provenance warns); pass SOURCE=https://...")
    with tempfile.TemporaryDirectory(prefix="admission-image-") as folder:
        work = Path(folder)
        context = opts.context_only or work / "context"
        context.mkdir(parents=True, exist_ok=bool(opts.context_only))
        held = prepare_context(context, platforms=opts.platforms, python=opts.python_version, glibc=opts.glibc,
                               epoch=source.epoch)
        timings["context"] = time.monotonic() - started
        log(f"build context ready in {timings['context']:.1f} s: {held['wheel']} sha256:{held['wheel_sha256'][:12]}")
        if opts.context_only:
            print(docker_buildx_command(opts, source, context))
            return 0
        buildctl = supply_tool("buildctl", "buildkit")
        daemon = Buildkitd(supply_tool("buildkitd", "buildkit"), Path(os.environ.get("BUILDKIT_STATE") or
                                                                        CACHE / "buildkitd-state"),
                           [host for host in (split_docker_domain(opts.python_image)[0] if opts.python_image else None,
                                              opts.image.domain if opts.image else None) if host and loopback(host)],
                           work)
        metadata = work / "metadata.json"
        step = time.monotonic()
        try:
            daemon.start(buildctl)
            timings["buildkitd"] = time.monotonic() - step
            step = time.monotonic()
            run(buildctl_argv(opts, buildctl=buildctl, address=daemon.address, context=context, source=source,
                              metadata=metadata), what="buildctl build", capture=False)
            timings["build"] = time.monotonic() - step
            if opts.output:
                partial(opts.output).rename(opts.output)
        finally:
            daemon.stop()
            if opts.output:
                partial(opts.output).unlink(missing_ok=True)
        built = json.loads(metadata.read_text())
        digest = built["containerimage.digest"]
        where = " and ".join([*([f"{opts.image.name}@{digest}"] if opts.image else []),
                              *([f"{opts.output} ({digest})"] if opts.output else [])])
        log(f"built {where} for {', '.join(opts.platforms)} in {timings['build']:.1f} s")
        if opts.cosign_key:
            step = time.monotonic()
            sign(opts, digest)
            timings["sign"] = time.monotonic() - step
        timings["total"] = time.monotonic() - started
        if opts.metadata:
            opts.metadata.write_text(json.dumps({
                "image": str(opts.image) if opts.image else None, "output": str(opts.output) if opts.output else None,
                "digest": digest, "platforms": opts.platforms, "revision": source.revision,
                "source_date_epoch": source.epoch, "created": source.created, "source": source.source,
                "wheel_sha256": held["wheel_sha256"], "signed": bool(opts.cosign_key),
                "timings": {k: round(v, 2) for k, v in timings.items()}}, indent=2) + "\n")
        print(f"{opts.image.name}@{digest}" if opts.image else str(opts.output))
    return 0


def docker_buildx_command(opts: Options, source: Commit, context: Path) -> str:
    """The same build with docker buildx, for where a Docker engine runs (a builder of the docker-container driver:
    the default `docker` driver refuses attestations)."""
    argv = ["docker", "buildx", "build", "--builder", "admission", "--platform", ",".join(opts.platforms),
            "--provenance=mode=max", "--no-cache-filter", "runtime", "--file", str(ROOT / "Dockerfile")]
    for key, value in build_args(opts, source).items():
        argv += ["--build-arg", f"{key}={value}"]
    if opts.image:
        argv += ["--output", f"type=image,name={opts.image},push=true,rewrite-timestamp=true"]
    if opts.output:
        argv += ["--output", f"type=oci,dest={opts.output},rewrite-timestamp=true"]
    argv.append(str(context))
    return shlex.join(argv)


if __name__ == "__main__":
    raise SystemExit(main())
