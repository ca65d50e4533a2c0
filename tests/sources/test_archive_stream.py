"""Compressed image archives, archives on stdin, and tarballs a walk skips (architecture §2 "Recognition and walking",
"Size caps"). The archives are real: umoci builds the image and skopeo writes docker-archive / oci-archive."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
import zstandard

from admission.inputs import walk as inputs
from admission.cli.main import main
from admission.errors import InputError
from admission.sources import archive
from tests.images import oci

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("admission-cli")
COMPRESSORS = {"gzip": lambda data: gzip.compress(data, compresslevel=6),
               "zstd": lambda data: zstandard.ZstdCompressor(level=3).compress(data)}
SUFFIX = {"gzip": ".tar.gz", "zstd": ".tar.zst"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real image as docker-archive and oci-archive tarballs, each also gzip- and zstd-compressed."""
    if not oci.have_tools():
        pytest.fail("umoci and skopeo are required; `make test` installs them")
    root = tmp_path_factory.mktemp("stream")
    src = oci.build(root / "layout", "app", user="root", labels={"org.example.team": "payments"},
                    env=["MODE=prod"], exposed_ports=["8080/tcp"], history=("umoci config", "RUN make"),
                    files={"/etc/passwd": "root:x:0:0::/root:/bin/sh\n"})
    paths: dict[str, Path] = {}
    for shape, transport in (("docker", "docker-archive"), ("oci", "oci-archive")):
        plain = root / f"app-{shape}.tar"
        oci.copy(src, f"{transport}:{plain}:example.com/app:1.4")
        paths[shape] = plain
        for kind, compress in COMPRESSORS.items():
            packed = root / f"app-{shape}{SUFFIX[kind]}"
            packed.write_bytes(compress(plain.read_bytes()))
            paths[f"{shape}-{kind}"] = packed
    bare = root / "bare" / "app.tar"
    bare.parent.mkdir()
    oci.copy(src, f"oci-archive:{bare}:1.4")  # a ref name that is only a tag
    bare.with_suffix(".tgz").write_bytes(gzip.compress(bare.read_bytes()))
    paths["bare"] = bare
    return paths


def _images(workloads: list[Any]) -> list[tuple[Any, ...]]:
    """What an Image workload says, less the file it came from."""
    return sorted((w.kind, w.name, w.origin.path, w.containers[0].image_config) for w in workloads)


def _cli(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> tuple[int, dict[str, Any]]:
    command = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "admission"]
    proc = subprocess.run([*command, "check", "--offline", "--format", "json", *args], input=stdin,
                          capture_output=True, timeout=120, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc.returncode, json.loads(proc.stdout)


def _findings(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((f["rule"], f["object"]["name"], f["message"]) for f in report["findings"])


# ---------------------------------------------------------------- compressed archives


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
@pytest.mark.parametrize("shape", ["docker", "oci"])
def test_a_compressed_archive_gives_the_same_images_as_the_plain_tarball(built: dict[str, Path], shape: str,
                                                                         kind: str) -> None:
    plain = archive.load(str(built[shape]), display="plain")
    assert [w.name for w in plain] == ["example.com/app:1.4"] and plain[0].containers[0].image_config.user == "root"
    packed = built[f"{shape}-{kind}"]
    assert archive.load(str(packed), display=packed.name)[0].origin.file == packed.name
    assert _images(archive.load(str(packed), display=packed.name)) == _images(plain)
    with open(packed, "rb") as fh:
        assert _images(archive.load_stream(fh, display="-")) == _images(plain)


@pytest.mark.parametrize("name", ["docker", "oci", "docker-gzip", "docker-zstd", "oci-gzip", "oci-zstd"])
def test_an_archive_piped_to_check_dash_gives_the_same_findings_as_the_file(built: dict[str, Path], name: str) -> None:
    code, by_path = _cli(str(built[name.split("-")[0]]))
    assert by_path["errors"] == [] and by_path["summary"]["objects"] == 1
    piped_code, piped = _cli("-", stdin=built[name].read_bytes())
    assert piped["errors"] == [] and piped["summary"]["objects"] == 1
    assert _findings(piped) == _findings(by_path) and piped_code == code == 1
    assert {f["file"] for f in piped["findings"]} == {"-"}
    assert {f["rule"] for f in piped["findings"]} >= {"run-as-non-root"}


def test_a_bare_tag_is_shown_with_the_archive_name_less_its_compression_suffix(built: dict[str, Path]) -> None:
    assert [w.name for w in archive.load(str(built["bare"]), display="x")] == ["app:1.4"]
    assert [w.name for w in archive.load(str(built["bare"].with_suffix(".tgz")), display="x")] == ["app:1.4"]


def test_an_untagged_image_on_stdin_is_named_stdin() -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"User": "1000"}}).encode()
    chex = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{chex}.json", "RepoTags": None, "Layers": []}]).encode()
    data = _json_tar({f"{chex}.json": config, "manifest.json": manifest})
    assert [w.name for w in archive.load_stream(io.BytesIO(zstandard.ZstdCompressor().compress(data)),
                                                display="-")] == ["stdin"]


def test_collect_takes_stdin_as_bytes_or_as_a_binary_file(built: dict[str, Path]) -> None:
    data = built["docker-zstd"].read_bytes()
    from_bytes = inputs.collect(["-"], options=inputs.Options(), stdin=data)
    from_file = inputs.collect(["-"], options=inputs.Options(), stdin=io.BytesIO(data))
    assert from_bytes.errors == from_file.errors == []
    assert _images(from_bytes.workloads) == _images(from_file.workloads) != []
    text = inputs.collect(["-"], options=inputs.Options(), stdin=io.BytesIO(b"FROM alpine:3.20\nUSER root\n"))
    assert text.errors == [] and [w.kind for w in text.workloads] == ["Dockerfile"]


def test_a_cut_or_corrupt_compressed_stream_is_an_input_error_naming_the_problem(built: dict[str, Path]) -> None:
    data = built["oci-gzip"].read_bytes()
    cut = inputs.collect(["-"], options=inputs.Options(), stdin=data[: len(data) // 2])
    assert [e.file for e in cut.errors] == ["-"] and "gzip data is corrupt or cut short" in cut.errors[0].message
    not_tar = inputs.collect(["-"], options=inputs.Options(), stdin=gzip.compress(os.urandom(4096)))
    assert [e.message for e in not_tar.errors] == ["not an image archive: gzip data that is not a tar archive"]


def test_a_source_tarball_named_on_the_command_line_is_an_input_error_listing_its_first_members(
        tmp_path: Path) -> None:
    source = _source_tarball(tmp_path / "src.tar.zst", "zstd")
    with pytest.raises(InputError, match=r"neither manifest.json .* nor index.json .*first members: src/"):
        archive.load(str(source), display="src.tar.zst")


# ---------------------------------------------------------------- walks


def _source_tarball(path: Path, kind: str) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        folder = tarfile.TarInfo("src")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name in ("main.c", "util.c"):
            data = b"int main(void) { return 0; }\n"
            info = tarfile.TarInfo(f"src/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(COMPRESSORS[kind](buf.getvalue()))
    return path


def test_a_walk_checks_image_archives_and_skips_other_tarballs_with_the_reason(
        built: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    (repo / "dist").mkdir(parents=True)
    _source_tarball(repo / "dist" / "src.tar.gz", "gzip")
    (repo / "dist" / "random.tgz").write_bytes(gzip.compress(os.urandom(64 * 1024)))
    (repo / "dist" / "app.tar.zst").write_bytes(built["docker-zstd"].read_bytes())
    (repo / "dist" / "app-oci.tar").write_bytes(built["oci"].read_bytes())
    collected = inputs.collect([str(repo)], options=inputs.Options())
    assert collected.errors == []
    reasons = dict(collected.skipped_reasons)
    assert reasons[str(repo / "dist" / "src.tar.gz")] == \
        "a gzip-compressed tar archive, but not an image archive (first members: src/, src/main.c, src/util.c)"
    assert reasons[str(repo / "dist" / "random.tgz")] == "gzip data that is not a tar archive"
    assert sorted(w.origin.file for w in collected.workloads) == [str(repo / "dist" / "app-oci.tar"),
                                                                  str(repo / "dist" / "app.tar.zst")]
    code = main(["check", "--offline", "--format", "json", str(repo)])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["errors"] == []
    assert report["summary"]["objects"] == 2 and report["summary"]["skipped_files"] == 2


def test_sniffing_tells_image_archives_from_other_tarballs_by_their_first_members(built: dict[str, Path],
                                                                                  tmp_path: Path) -> None:
    for name in ("docker", "oci", "docker-gzip", "docker-zstd", "oci-gzip", "oci-zstd"):
        assert archive.sniff(str(built[name])) is None, name
    assert archive.sniff(str(_source_tarball(tmp_path / "s.tar.zst", "zstd"))) == \
        "a zstd-compressed tar archive, but not an image archive (first members: src/, src/main.c, src/util.c)"
    text = tmp_path / "notes.tar"
    text.write_text("not a tarball at all\n" * 100)
    assert archive.sniff(str(text)) == "neither a tar archive nor gzip or zstd data"
    (tmp_path / "z.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(b"hello" * 1000))
    assert archive.sniff(str(tmp_path / "z.tar.zst")) == "zstd data that is not a tar archive"


class _CountingFile(io.FileIO):
    read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        _CountingFile.read_bytes += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n = super().readinto(buffer)
        _CountingFile.read_bytes += n or 0
        return n


def _big_first_member_tar(out: io.RawIOBase | Any, size: int, chunk: bytes | None) -> None:
    """A tar whose first member is `size` bytes (written from `chunk` repeated, or left sparse), then a source file."""
    info = tarfile.TarInfo("data.bin")
    info.size = size
    out.write(info.tobuf(format=tarfile.GNU_FORMAT))
    if chunk is None:
        out.seek(size, os.SEEK_CUR)
    else:
        for _ in range(size // len(chunk)):
            out.write(chunk)
    out.write(tarfile.TarInfo("src/main.c").tobuf(format=tarfile.GNU_FORMAT))
    out.write(bytes(2 * tarfile.BLOCKSIZE))


def test_sniffing_a_large_tarball_reads_at_most_a_few_mib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "open", lambda path, mode: _CountingFile(path, mode.replace("b", "")), raising=False)
    plain = tmp_path / "big.tar"
    with open(plain, "wb") as fh:
        _big_first_member_tar(fh, 2 * 1024**3, None)  # sparse: 2 GiB that take no disk
    _CountingFile.read_bytes = 0
    assert archive.sniff(str(plain)) == "a tar archive, but not an image archive (first members: data.bin, src/main.c)"
    assert _CountingFile.read_bytes < 64 * 1024, "a plain tar's headers are reached by seeking"
    packed = tmp_path / "big.tar.zst"
    with open(packed, "wb") as raw, zstandard.ZstdCompressor(level=1).stream_writer(raw) as fh:
        _big_first_member_tar(fh, 16 * 1024**2, os.urandom(1024**2))  # incompressible: 16 MiB on disk
    _CountingFile.read_bytes = 0
    assert archive.sniff(str(packed)) == \
        "a zstd-compressed tar archive, but not an image archive (first members: data.bin)"
    assert _CountingFile.read_bytes <= archive.SNIFF_CAP + 1024**2


# ---------------------------------------------------------------- stream caps


def _json_tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_stream_keeps_json_members_only_up_to_its_count_and_byte_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = {f"{i:064x}.json": json.dumps({"pad": "x" * 2000, "i": i}).encode() for i in range(20)}
    monkeypatch.setattr(archive, "STREAM_KEEP_BYTES", 10_000)
    with pytest.raises(InputError, match="MiB of JSON members"):
        archive.load_stream(io.BytesIO(_json_tar(blobs)), display="-")
    monkeypatch.setattr(archive, "STREAM_KEEP_BYTES", 10**9)
    monkeypatch.setattr(archive, "STREAM_KEEP_MEMBERS", 5)
    with pytest.raises(InputError, match="more than 5 links and JSON members"):
        archive.load_stream(io.BytesIO(_json_tar(blobs)), display="-")


def test_a_stream_does_not_keep_members_that_do_not_start_like_json() -> None:
    layer = b"\x00binary layer data" * 100
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"User": "1000"}}).encode()
    chex = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{chex}.json", "RepoTags": ["x:1"], "Layers": ["l.tar"]}]).encode()
    data = _json_tar({"l.tar": layer, f"{chex}.json": config, "manifest.json": manifest})
    store = archive._StreamStore(archive._tar_stream(io.BytesIO(data), head=b"", display="-"), "-")
    assert store.has("l.tar") and set(store._data) == {f"{chex}.json", "manifest.json"}
    [image] = archive.load_stream(io.BytesIO(data), display="-")
    assert image.name == "x:1" and image.containers[0].image_config.user == "1000"


# ---------------------------------------------------------------- constant memory

_PEAK_RSS_HELPER = textwrap.dedent("""
    import hashlib, io, json, os, resource, subprocess, sys, tarfile, tempfile

    LAYER = 200 * 1024 * 1024
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"User": "1000"},
                         "rootfs": {"type": "layers", "diff_ids": []}, "history": [{"created_by": "big"}]}).encode()
    chex = hashlib.sha256(config).hexdigest()
    lhex = hashlib.sha256(b"not verified: only the metadata is read").hexdigest()
    manifest = json.dumps([{"Config": chex + ".json", "RepoTags": ["example.com/big:1"],
                            "Layers": [lhex + ".tar"]}]).encode()

    def header(name, size):
        info = tarfile.TarInfo(name)
        info.size = size
        return info.tobuf(format=tarfile.PAX_FORMAT)

    def pad(size):
        return bytes(-size % tarfile.BLOCKSIZE)

    out = tempfile.TemporaryFile()
    child = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=out)
    # As skopeo and docker save write it: the layer first, then the config, manifest.json last.
    child.stdin.write(header(lhex + ".tar", LAYER))
    for _ in range(LAYER // (1024 * 1024)):
        child.stdin.write(os.urandom(1024 * 1024))
    for name, data in ((chex + ".json", config), ("manifest.json", manifest)):
        child.stdin.write(header(name, len(data)) + data + pad(len(data)))
    child.stdin.write(bytes(2 * tarfile.BLOCKSIZE))
    child.stdin.close()
    code = child.wait()
    out.seek(0)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(json.dumps({"code": code, "peak_kib": peak_kib, "report": json.loads(out.read())}))
""")


def test_a_200_mib_archive_on_stdin_is_streamed_in_under_100_mib_of_memory() -> None:
    # A fresh helper process, so that the peak RSS of its children is the CLI's alone.
    command = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "admission"]
    proc = subprocess.run([sys.executable, "-c", _PEAK_RSS_HELPER, *command, "check", "--offline", "--format", "json",
                           "-"], capture_output=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout)
    report = result["report"]
    assert report["errors"] == [] and report["summary"]["objects"] == 1
    assert {f["object"]["name"] for f in report["findings"]} <= {"example.com/big:1"} and result["code"] in (0, 1)
    peak_mib = result["peak_kib"] / 1024
    print(f"peak RSS of `admission-cli check -` on a 200 MiB archive: {peak_mib:.1f} MiB")
    assert peak_mib < 100, f"peak RSS {peak_mib:.1f} MiB"
